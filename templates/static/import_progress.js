// The import progress page: poll the job's state every second until it is done or failed, then reload once
// (the server renders the final page: the batch link or the error).
(function () {
  var card = document.querySelector("[data-poll]");
  if (!card) return;
  var state = card.getAttribute("data-state");
  if (state === "done" || state === "failed") return;
  function poll() {
    fetch(card.getAttribute("data-poll"), {credentials: "same-origin"}).then(function (r) {
      return r.ok ? r.json() : null;
    }).then(function (job) {
      if (!job) return setTimeout(poll, 2000);
      var bar = card.querySelector("progress");
      bar.max = job.total || 1;
      bar.value = job.done || 0;
      card.querySelector("[data-testid=import-step]").textContent = job.step || "";
      if (job.state === "done" || job.state === "failed") return window.location.reload();
      setTimeout(poll, 1000);
    }).catch(function () { setTimeout(poll, 2000); });
  }
  setTimeout(poll, 1000);
})();
