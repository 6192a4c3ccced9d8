"""Measure the targets bench/run started, print the report and end with the RESULT line.

Per target: wrk (bench/post.lua, one thread) at concurrency 1 and 16 after a short warm-up, in ROUNDS
interleaved rounds (direct, raw, bare, tollgate, litellm, then again): each figure is from the round with the
most req/s (undisturbed rounds first), which damps the noise of anything else running on a 2-core machine;
a measurement whose best round still shared the CPU with other processes is retried while BENCH_RETRY_SECONDS
last. Then ~50 sequential
streaming requests per target, timed to their first body chunk. Alongside: the server's CPU time per request
(the process and its children, from /proc) and how much CPU other processes took meanwhile. Last, memory:
MEMORY_STREAMS streaming requests held open at once through one target (Tollgate) against a slow simulated
upstream; the server's RSS (the process and its children) before, during (the most while all are open) and
after (a few seconds after the last one closed).

Environment: BENCH_TARGETS = space-separated "name|url|api key|model|server pid";
BENCH_DURATION (s per measurement, 4), BENCH_WARMUP (s, 2), BENCH_ROUNDS (3), BENCH_STREAMS (50),
BENCH_RETRY_SECONDS (60); BENCH_MEMORY_STREAMS (1000; 0 skips the memory measurement), BENCH_MEMORY_TARGET
(tollgate);
BENCH_REPORT: a file that gets the whole report, the RESULT line included, which stdout then leaves out
(bench/run prints it last).
"""
import asyncio
import http.client
import importlib.metadata
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

HERE = Path(__file__).resolve().parent
DURATION = float(os.environ.get("BENCH_DURATION", 4))
WARMUP = float(os.environ.get("BENCH_WARMUP", 2))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", 3))
STREAMS = int(os.environ.get("BENCH_STREAMS", 50))
RETRY_SECONDS = float(os.environ.get("BENCH_RETRY_SECONDS", 60))
MEMORY_STREAMS = int(os.environ.get("BENCH_MEMORY_STREAMS", 1000))
MEMORY_TARGET = os.environ.get("BENCH_MEMORY_TARGET", "tollgate")
SLOW_STREAM = "[[sim:tokens=60]] [[sim:chunk_delay_ms=200]] Count slowly."  # ~12 s per stream
BUSY = 0.25  # cores used by other processes above which a measurement counts as disturbed
CLK_TCK = os.sysconf("SC_CLK_TCK")
NAN = float("nan")
ORDER = ("direct", "raw", "bare", "tollgate", "litellm")
LABELS = {"direct": "direct (simulator)", "raw": "raw ASGI relay (aiohttp, no Django)",
          "bare": "bare relay (Django view + aiohttp)", "tollgate": "**Tollgate**", "litellm": "LiteLLM proxy 1.108.0"}
SERVER_PIDS: list[str] = []
REPORT = open(os.environ["BENCH_REPORT"], "a") if os.environ.get("BENCH_REPORT") else None


def log(line: str = "", result: bool = False) -> None:
    if REPORT:
        REPORT.write(line + "\n")
        REPORT.flush()
    if not (result and REPORT):
        print(line, flush=True)


# --- CPU accounting from /proc ---------------------------------------------------------------------------
def proc_table() -> dict[str, tuple[str, int, str]]:
    """pid → (ppid, utime + stime in ticks, command name) for every process."""
    table = {}
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                head, tail = (p / "stat").read_text().rsplit(")", 1)
            except OSError:
                continue
            fields = tail.split()
            table[p.name] = (fields[1], int(fields[11]) + int(fields[12]), head.split("(", 1)[1])
    return table


def cpu_seconds(pid: str, table=None) -> float:
    """CPU time of a process and all its descendants (granian runs its worker as a child)."""
    table = table or proc_table()
    seen, total, todo = set(), 0, [pid]
    while todo:
        cur = todo.pop()
        if cur in seen or cur not in table:
            continue
        seen.add(cur)
        total += table[cur][1]
        todo += [child for child, (ppid, _, _) in table.items() if ppid == cur]
    return total / CLK_TCK


def busy_seconds() -> float:
    """CPU time the whole machine spent busy (all cores), from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(fields) - fields[3] - fields[4]) / CLK_TCK  # minus idle and iowait


def own_seconds() -> float:
    """CPU time of what this benchmark runs or drives: its servers, Redis and PostgreSQL (where part of
    Tollgate's work lands), wrk (a finished child) and this script."""
    table = proc_table()
    services = sum(t for _, t, comm in table.values() if comm in ("redis-server", "postgres")) / CLK_TCK
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return (sum(cpu_seconds(pid, table) for pid in SERVER_PIDS) + services
            + me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime)


def rss_mb(pid: str) -> float:
    """Resident memory of a process and all its descendants, in MB."""
    table, total, todo, seen = proc_table(), 0, [pid], set()
    while todo:
        cur = todo.pop()
        if cur in seen or cur not in table:
            continue
        seen.add(cur)
        try:
            status = Path(f"/proc/{cur}/status").read_text()
        except OSError:
            continue
        total += next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
        todo += [child for child, (ppid, _, _) in table.items() if ppid == cur]
    return total / 1024


# --- the measurements --------------------------------------------------------------------------------
def wrk(target: dict, conns: int, seconds: float) -> dict:
    env = dict(os.environ, BENCH_KEY=target["key"], BENCH_MODEL=target["model"])
    cmd = ["wrk", "-t1", f"-c{conns}", f"-d{seconds:g}s", "--timeout", "10s", "-s", str(HERE / "post.lua"),
           target["url"]]
    cpu0, busy0, own0 = cpu_seconds(target["pid"]), busy_seconds(), own_seconds()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    cpu1, busy1, own1 = cpu_seconds(target["pid"]), busy_seconds(), own_seconds()
    r = json.loads(next(line[4:] for line in out.splitlines() if line.startswith("WRK ")))
    secs = r["duration_us"] / 1e6
    r.update(rps=r["requests"] / secs, p50=r["p50_us"] / 1000, p99=r["p99_us"] / 1000,
             errors=r["non2xx"] + r["socket_errors"],
             cpu_us=(cpu1 - cpu0) / max(r["requests"], 1) * 1e6,
             others=max(0.0, ((busy1 - busy0) - (own1 - own0)) / secs))  # cores used by everything else
    return r


def stream_ttfb(target: dict, n: int) -> float:
    """Median ms from sending a streaming request to its first body chunk; sequential, one connection."""
    url = urlsplit(target["url"])
    body = json.dumps({"model": target["model"], "stream": True, "max_tokens": 16,
                       "messages": [{"role": "user", "content": "Say hello in one short sentence."}]}).encode()
    headers = {"Content-Type": "application/json", "Authorization": "Bearer " + target["key"]}
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    samples = []
    for i in range(n + 5):  # the first 5 warm up
        t0 = time.perf_counter()
        conn.request("POST", url.path, body=body, headers=headers)
        resp = conn.getresponse()
        first = resp.read1(65536)
        t1 = time.perf_counter()
        whole = first + resp.read()
        if resp.status != 200 or b"[DONE]" not in whole:
            raise RuntimeError(f"HTTP {resp.status}: {whole[:200]!r}")
        if i >= 5:
            samples.append((t1 - t0) * 1000)
    conn.close()
    return statistics.median(samples)


def stream_memory(target: dict, n: int) -> dict:
    """RSS of the target's server before, during and after n slow streams held open at once."""
    import aiohttp  # the gateway's own dependency, in the same venv

    body = json.dumps({"model": target["model"], "stream": True, "max_tokens": 64,
                       "messages": [{"role": "user", "content": SLOW_STREAM}]})
    headers = {"Content-Type": "application/json", "Authorization": "Bearer " + target["key"]}
    result = {"before": rss_mb(target["pid"]), "during": 0.0, "opened": 0, "failed": 0}

    async def run():
        all_open, one_ended, settled = asyncio.Event(), asyncio.Event(), [0]

        def settle(opened: bool) -> None:  # each stream opens (or fails to) once; when all have, sample
            settled[0] += 1
            result["opened"] += opened
            if settled[0] == n:
                all_open.set()

        async def one(client):
            opened = False
            try:
                async with client.post(target["url"], data=body, headers=headers) as resp:
                    first = await resp.content.readany()
                    opened = resp.status == 200 and bool(first)
                    settle(opened)
                    rest = await resp.read()
                    if not opened or b"[DONE]" not in first + rest:
                        result["failed"] += 1
            except Exception:
                result["failed"] += 1
                if not opened:
                    settle(False)
            finally:
                if opened:
                    one_ended.set()

        timeout = aiohttp.ClientTimeout(total=120)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=timeout) as client:
            tasks = [asyncio.create_task(one(client)) for _ in range(n)]
            await asyncio.wait_for(all_open.wait(), 90)
            while not one_ended.is_set() and not all(t.done() for t in tasks):  # the most RSS while all are open
                result["during"] = max(result["during"], rss_mb(target["pid"]))
                await asyncio.sleep(0.2)
            await asyncio.gather(*tasks)

    asyncio.run(run())
    time.sleep(3)  # let the server drop what the streams held
    result["after"] = rss_mb(target["pid"])
    return result


# --- report --------------------------------------------------------------------------------------------------
def fmt(x, digits=2):
    return "nan" if x != x else f"{x:.{digits}f}"


def versions() -> str:
    pkgs = ("Django", "asgiref", "granian", "aiohttp", "uvloop")
    found = [f"{p} {importlib.metadata.version(p)}" for p in pkgs]
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split(" [")[0]
    return ", ".join(found + [wrk_version.strip() or "wrk"]) + f", Python {sys.version.split()[0]}"


def main() -> int:
    targets = []
    for spec in os.environ["BENCH_TARGETS"].split():
        name, url, key, model, pid = spec.split("|")
        targets.append({"name": name, "url": url, "key": key, "model": model, "pid": pid})
    SERVER_PIDS.extend(sorted({t["pid"] for t in targets}))
    log(f"stack: {versions()}")
    log(f"wrk -t1: warm-up {WARMUP:g} s, then {DURATION:g} s at c=1 and at c=16, {ROUNDS} interleaved rounds "
        f"(best kept); non-streaming POST; stream TTFB = median of {STREAMS} sequential requests\n")
    best: dict[str, dict] = {t["name"]: {} for t in targets}

    def run(t, c, label):
        r = wrk(t, c, DURATION)
        flag = f"   !! {r['errors']} errors" if r["errors"] else ""
        log(f"  {label:<8} {t['name']:<9} c={c:<3}{r['rps']:8.0f} req/s   p50 {r['p50']:8.3f} ms   "
            f"p99 {r['p99']:8.3f} ms   server CPU {r['cpu_us']:6.0f} µs/req   other load {r['others']:.2f} cores{flag}")
        rank = lambda x: (x["others"] <= BUSY, x["rps"])  # noqa: E731 - undisturbed first, then fastest
        if c not in best[t["name"]] or rank(r) > rank(best[t["name"]][c]):
            best[t["name"]][c] = r

    for rnd in range(1, ROUNDS + 1):
        for t in targets:
            if rnd == 1:
                wrk(t, 16, WARMUP)
            for c in (1, 16):
                run(t, c, f"round {rnd}")
    deadline = time.monotonic() + RETRY_SECONDS
    while time.monotonic() + DURATION < deadline:
        disturbed = [(t, c) for t in targets for c in (1, 16) if best[t["name"]][c]["others"] > BUSY]
        if not disturbed:
            break
        time.sleep(1)
        for t, c in disturbed:
            if time.monotonic() + DURATION < deadline:
                run(t, c, "retry")
    for t in targets:
        try:
            best[t["name"]]["ttfb"] = stream_ttfb(t, STREAMS)
            log(f"  stream     {t['name']:<9} TTFB p50 {best[t['name']]['ttfb']:.3f} ms")
        except Exception as exc:  # report the rest even if one target cannot stream
            best[t["name"]]["ttfb"] = NAN
            log(f"  stream     {t['name']:<9} failed: {exc}")

    memory = None
    mem_target = next((t for t in targets if t["name"] == MEMORY_TARGET), None)
    if MEMORY_STREAMS and mem_target:
        try:
            memory = stream_memory(mem_target, MEMORY_STREAMS)
            log(f"  memory     {MEMORY_TARGET:<9} {MEMORY_STREAMS} open streams: RSS before {memory['before']:.1f} MB, "
                f"during {memory['during']:.1f} MB, after {memory['after']:.1f} MB "
                f"({memory['opened']} opened, {memory['failed']} failed)")
        except Exception as exc:
            log(f"  memory     {MEMORY_TARGET:<9} failed: {exc}")

    def get(name, c, key):
        return best[name][c][key] if name in best else NAN

    d1, d16 = best["direct"][1], best["direct"][16]
    rows = ["| target | req/s c=1 | p50 c=1 | p99 c=1 | req/s c=16 | p50 c=16 | p99 c=16 | added p50 c=1 "
            "| added p99 c=16 | stream TTFB p50 | server CPU / req |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name in ORDER:
        if name not in best:
            rows.append(f"| {LABELS[name]} | unavailable |  |  |  |  |  |  |  |  |  |")
            log(f"  {name}: unavailable")
            continue
        r1, r16 = best[name][1], best[name][16]
        add1 = "—" if name == "direct" else f"+{r1['p50'] - d1['p50']:.2f} ms"
        add99 = "—" if name == "direct" else f"+{r16['p99'] - d16['p99']:.2f} ms"
        rows.append(f"| {LABELS[name]} | {r1['rps']:,.0f} | {r1['p50']:.2f} ms | {r1['p99']:.2f} ms "
                    f"| {r16['rps']:,.0f} | {r16['p50']:.2f} ms | {r16['p99']:.2f} ms | {add1} | {add99} "
                    f"| {fmt(best[name]['ttfb'])} ms | {r16['cpu_us']:,.0f} µs |")
    log("\nOne worker each, 127.0.0.1, simulated upstream, wrk; added = target − direct; server CPU at c=16:\n")
    log("\n".join(rows))
    kept = [(n, c, best[n][c]) for n in ORDER if n in best for c in (1, 16)]
    errors = {f"{n} c={c}": r["errors"] for n, c, r in kept if r["errors"]}
    if errors:
        log(f"\nWARNING: non-2xx or socket errors in the kept rounds: {errors}")
    busy = {f"{n} c={c}": round(r["others"], 2) for n, c, r in kept if r["others"] > BUSY}
    if busy:
        log(f"\nWARNING: other processes used CPU during these measurements (cores of 2): {busy}. "
            "The figures are then low and noisy; rerun on a quiet machine.")

    if memory:
        log(f"\nMemory, {MEMORY_STREAMS} concurrent streams open through {LABELS[MEMORY_TARGET]} on one worker "
            f"(slow simulated upstream, ~12 s each), server RSS: before {memory['before']:.1f} MB, during "
            f"{memory['during']:.1f} MB, after {memory['after']:.1f} MB"
            + (f"; {memory['failed']} streams failed" if memory["failed"] else ""))

    tg, bare, ll = get("tollgate", 16, "rps"), get("bare", 16, "rps"), get("litellm", 16, "rps")
    ratio = lambda a, b: NAN if a != a or b != b or not b else a / b  # noqa: E731
    cpu_ratio = ratio(get("tollgate", 16, "cpu_us"), get("bare", 16, "cpu_us"))
    log()
    log(f"RESULT tollgate_rps={fmt(tg, 1)} bare_rps={fmt(bare, 1)} litellm_rps={fmt(ll, 1)} "
        f"rps_ratio={fmt(ratio(tg, ll))} bare_ratio={fmt(ratio(tg, bare))} "
        f"overhead_p50_ms={fmt(get('tollgate', 1, 'p50') - d1['p50'], 3)} "
        f"overhead_p99_c16_ms={fmt(get('tollgate', 16, 'p99') - d16['p99'], 3)} "
        f"cpu_ratio_vs_bare={fmt(cpu_ratio)} "
        f"rss_{MEMORY_STREAMS}_streams_mb={fmt(memory['during'] if memory else NAN, 1)}",
        result=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
