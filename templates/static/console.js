// Tollgate console: copy buttons, snippet tabs, confirmations. No dependencies.
(function () {
  function copyText(text, button) {
    function done() {
      var label = button.textContent;
      button.textContent = "✓";
      setTimeout(function () { button.textContent = label; }, 1200);
    }
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done);
      return;
    }
    var area = document.createElement("textarea");  // http:// on a LAN address: no Clipboard API
    area.value = text;
    area.style.position = "fixed";
    area.style.opacity = "0";
    document.body.appendChild(area);
    area.select();
    try { document.execCommand("copy"); done(); } finally { document.body.removeChild(area); }
  }

  document.addEventListener("click", function (event) {
    var copy = event.target.closest("[data-copy]");
    if (copy) {
      var source = document.querySelector(copy.getAttribute("data-copy"));
      if (source) copyText(source.textContent.trim(), copy);
      return;
    }
    var tab = event.target.closest("[data-tab]");
    if (tab) {
      var tabs = tab.parentElement.querySelectorAll("[data-tab]");
      tabs.forEach(function (other) {
        other.classList.toggle("on", other === tab);
        var panel = document.getElementById(other.getAttribute("data-tab"));
        if (panel) panel.hidden = other !== tab;
      });
    }
  });

  document.addEventListener("submit", function (event) {
    var message = event.target.getAttribute("data-confirm");
    if (message && !window.confirm(message)) event.preventDefault();
  });
})();
