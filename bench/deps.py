#!/usr/bin/env python3
"""Dependencies: warden's svscan against the critical-path floor and runit's `sv start` idiom.

  bench/run deps          (or: python3 bench/deps.py [--quick] [--rounds N])

The graph: 10 layers of 20 services; each service of a layer needs 2 services of the layer
above (i and i+1, mod 20); each becomes ready 20 ms after its start. Every run script says
`start NAME` on a FIFO the harness reads as its first act, and `ready NAME` when it is
ready; the harness stamps each line as it reads it (one reader, blocked in select).

  - warden: `needs/` files and `notification-fd` 3: svscan holds each service until both of
    its needs notified readiness.
  - floor: this harness starts each run script itself the moment both of its dependencies
    said ready (the critical path: no supervisor in between).
  - layer floor: the floor as the issue defines it, and as the team measured dinit and s6-rc
    against: this harness starts each layer once every service of the layer above is ready.
    Slower than the floor, by the spread of readiness within a layer.
  - runit idiom: runsvdir on the same graph written as runit users write it, `sv start A B ||
    exit 1` at the top of `run` with a `check` that passes once the service is ready (sv
    polls it); a dependency not up yet makes run fail, runsv restarts it a second later.

Figures: time from the scanner's start (the harness's first start, for the floor) until all
200 are ready, medians over the rounds: warden and the two floors interleaved (forward, then
backward, half a second between runs), runit's rounds after them (they slowed whatever ran
next); the ratio to the floor of the same round;
the time from a service's last dependency being ready to its start (median and p90 over all
services with dependencies); and, for warden, the shutdown of the 200 in reverse dependency
order (TERM to svscan until the last process of the tree is gone). Then the same hop on an
idle machine: a chain of 20, each needing the one before, so one service starts at a time and
the latency is the mechanism's own, not the wait for a CPU the other services hold (floor and
warden, the same rounds). Each run gets a fresh
tmpfs when we are root (see fresh_dir). Measured on the same graph by the team (one run, not
repeated here): dinit 0.22.1 1.1-1.2x the layer floor, s6-rc 0.5.4.1 5-6x. Writes
bench/results/deps.md.
"""

import os
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR_BENCH", "/work/target-scan/bench")
QUICK = "--quick" in sys.argv
ROUNDS = next((int(a.split("=", 1)[1]) for a in sys.argv if a.startswith("--rounds=")),
              1 if QUICK else 3)
LAYERS, WIDTH = (4, 10) if QUICK else (10, 20)
READY_AFTER = "0.02"
RUSTFLAGS = "-C target-feature=+crt-static -C relocation-model=static"
DEADLINE = 120
CHAIN = 5 if QUICK else 20
# Between two runs: the one before has torn down (its processes reaped, its tmpfs gone).
SETTLE = 0.5


def build():
    env = dict(os.environ, CARGO_TARGET_DIR=TARGET, RUSTFLAGS=RUSTFLAGS)
    subprocess.run(["cargo", "build", "--quiet", "--release", "-p", "supervise", "-p", "svscan",
                    "-p", "svctl"], cwd=ROOT, env=env, check=True)
    return os.path.join(TARGET, "release")


def use_graph(layers, width):
    """Switches the graph every function here builds and measures: `layers` of `width`."""
    global LAYERS, WIDTH
    LAYERS, WIDTH = layers, width


def name(layer, i):
    return f"l{layer:02d}s{i:02d}"


def needs_of(layer, i):
    if layer == 0:
        return []
    return sorted({name(layer - 1, i), name(layer - 1, (i + 1) % WIDTH)})


def services():
    for layer in range(LAYERS):
        for i in range(WIDTH):
            yield name(layer, i), needs_of(layer, i)


def script(path, body):
    with open(path, "w") as f:
        f.write("#!/bin/sh\n" + body + "\n")
    os.chmod(path, 0o755)


def make_tree(parent, fifo, flavour):
    """The graph as service dirs for `flavour`: warden, floor or runit."""
    scan = os.path.join(parent, "service")
    os.makedirs(scan)
    for svc, needs in services():
        d = os.path.join(scan, svc)
        os.makedirs(d)
        say = f'echo "start {svc}" > {fifo}\n'
        if flavour == "warden":
            with open(os.path.join(d, "notification-fd"), "w") as f:
                f.write("3\n")
            if needs:
                os.makedirs(os.path.join(d, "needs"))
                for n in needs:
                    open(os.path.join(d, "needs", n), "w").close()
            body = (f"{say}sleep {READY_AFTER}\necho >&3\nexec 3>&-\n"
                    f'echo "ready {svc}" > {fifo}\nexec sleep 1000000')
        elif flavour == "floor":
            body = (f"{say}sleep {READY_AFTER}\n"
                    f'echo "ready {svc}" > {fifo}\nexec sleep 1000000')
        else:
            start = f"sv start {' '.join(needs)} >/dev/null || exit 1\n" if needs else ""
            script(os.path.join(d, "check"), "[ -e ready ]")
            body = (f"rm -f ready\n{start}{say}sleep {READY_AFTER}\n: > ready\n"
                    f'echo "ready {svc}" > {fifo}\nexec sleep 1000000')
        script(os.path.join(d, "run"), body)
    return scan


class Reader:
    """Stamps each line the services write on the FIFO."""

    def __init__(self, fifo):
        self.fd = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)
        self.buf = b""
        self.start = {}
        self.ready = {}

    def pump(self, timeout):
        r, _, _ = select.select([self.fd], [], [], timeout)
        if not r:
            return []
        now = time.monotonic()
        try:
            self.buf += os.read(self.fd, 65536)
        except BlockingIOError:
            return []
        *lines, self.buf = self.buf.split(b"\n")
        events = []
        for line in lines:
            kind, _, svc = line.decode().partition(" ")
            table = self.start if kind == "start" else self.ready
            table.setdefault(svc, now)
            events.append((kind, svc))
        return events

    def close(self):
        os.close(self.fd)


def latencies(reader):
    out = []
    for svc, needs in services():
        if needs and svc in reader.start and all(n in reader.ready for n in needs):
            out.append(reader.start[svc] - max(reader.ready[n] for n in needs))
    return out


def kill_tree(root):
    """KILL every process whose cwd is inside root (the tree and its services)."""
    for _ in range(50):
        pids = []
        for p in os.listdir("/proc"):
            if p.isdigit():
                try:
                    if os.readlink(f"/proc/{p}/cwd").startswith(root):
                        pids.append(int(p))
                except OSError:
                    pass
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.05)


def tree_pids(root):
    out = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                if os.readlink(f"/proc/{p}/cwd").startswith(root):
                    with open(f"/proc/{p}/stat") as f:
                        if f.read().rsplit(") ", 1)[1][0] != "Z":
                            out.append(int(p))
            except (OSError, IndexError):
                pass
    return out


def wait_all_ready(reader, total, t0, on_event=None):
    while len(reader.ready) < total:
        if time.monotonic() - t0 > DEADLINE:
            raise RuntimeError(f"only {len(reader.ready)} of {total} ready after {DEADLINE}s")
        for kind, svc in reader.pump(1.0):
            if on_event:
                on_event(kind, svc)
    return max(reader.ready.values()) - t0


def run_warden(bindir, work):
    fifo = os.path.join(work, "fifo")
    os.mkfifo(fifo)
    scan = make_tree(work, fifo, "warden")
    reader = Reader(fifo)
    total = LAYERS * WIDTH
    t0 = time.monotonic()
    svscan = subprocess.Popen([os.path.join(bindir, "svscan"), scan], cwd=work,
                              stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        up = wait_all_ready(reader, total, t0)
        lat = latencies(reader)
        time.sleep(0.5)
        t1 = time.monotonic()
        svscan.send_signal(signal.SIGTERM)
        svscan.wait(timeout=DEADLINE)
        while tree_pids(scan) and time.monotonic() - t1 < DEADLINE:
            time.sleep(0.005)
        down = time.monotonic() - t1
        return up, lat, down
    finally:
        if svscan.poll() is None:
            svscan.kill()
            svscan.wait()
        kill_tree(work)
        reader.close()


def run_floor(work, by_layer=False):
    """The same scripts started by the harness in dependency order: each service as soon as
    both its dependencies are ready, or (`by_layer`, the issue's definition of the floor and
    the one the team measured dinit and s6-rc against) each layer once the whole layer
    above is ready."""
    fifo = os.path.join(work, "fifo")
    os.mkfifo(fifo)
    scan = make_tree(work, fifo, "floor")
    reader = Reader(fifo)
    graph = dict(services())
    dependents = {}
    for svc, needs in graph.items():
        for n in needs:
            dependents.setdefault(n, []).append(svc)
    procs = []
    devnull = os.open("/dev/null", os.O_RDWR)

    def start(svc):
        procs.append(subprocess.Popen(["./run"], cwd=os.path.join(scan, svc), stdin=devnull,
                                      stdout=devnull, stderr=devnull, start_new_session=True))

    layers = {}
    for svc in graph:
        layers.setdefault(svc[:3], []).append(svc)

    def on_event(kind, svc):
        if kind != "ready":
            return
        if by_layer:
            if all(s in reader.ready for s in layers[svc[:3]]):
                for d in layers.get(f"l{int(svc[1:3]) + 1:02d}", []):
                    if d not in started:
                        started.add(d)
                        start(d)
            return
        for d in dependents.get(svc, []):
            if d not in started and all(n in reader.ready for n in graph[d]):
                started.add(d)
                start(d)

    started = set()
    t0 = time.monotonic()
    try:
        for svc, needs in graph.items():
            if not needs:
                started.add(svc)
                start(svc)
        up = wait_all_ready(reader, len(graph), t0, on_event)
        return up, latencies(reader)
    finally:
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except OSError:
                pass
            p.wait()
        os.close(devnull)
        kill_tree(work)
        reader.close()


def run_runit(work):
    fifo = os.path.join(work, "fifo")
    os.mkfifo(fifo)
    scan = make_tree(work, fifo, "runit")
    reader = Reader(fifo)
    t0 = time.monotonic()
    env = dict(os.environ, SVDIR=scan)
    runsvdir = subprocess.Popen(["runsvdir", scan], cwd=work, env=env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        up = wait_all_ready(reader, LAYERS * WIDTH, t0)
        return up, latencies(reader)
    finally:
        runsvdir.send_signal(signal.SIGHUP)  # runsvdir: HUP tells every runsv to stop
        try:
            runsvdir.wait(timeout=10)
        except subprocess.TimeoutExpired:
            runsvdir.kill()
            runsvdir.wait()
        kill_tree(work)
        reader.close()


def fresh_dir(flavour):
    """A directory for one run, on a tmpfs of its own when we may mount one (as /run is at
    boot, where real trees keep their supervise/ state). On an ext4 without a journal, as
    this machine's /, each inode made is slowed by a scan over the recently deleted ones
    (ext4's recently_deleted): the status files supervise and runsv write by rename in one
    round made the next round slower, warden's from 450 to 1013 ms over four rounds."""
    work = tempfile.mkdtemp(prefix=f"warden-bench-deps-{flavour}-")
    mounted = os.geteuid() == 0 and subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs", work]).returncode == 0
    return work, mounted


def one_run(flavour, bindir):
    """One run of the current graph by `flavour` in a fresh dir, removed after: (all ready,
    latencies, shutdown time or None)."""
    work, mounted = fresh_dir(flavour)
    try:
        if flavour == "warden":
            return run_warden(bindir, work)
        if flavour == "floor":
            return (*run_floor(work), None)
        if flavour == "layer-floor":
            return (*run_floor(work, by_layer=True), None)
        return (*run_runit(work), None)
    finally:
        kill_tree(work)
        if mounted:
            subprocess.run(["umount", "--lazy", work])
        shutil.rmtree(work, ignore_errors=True)


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def p90(xs):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(0.9 * len(xs)))] if xs else float("nan")


def main():
    if not shutil.which("runsvdir") or not shutil.which("sv"):
        sys.exit("bench deps: runit's runsvdir and sv are needed (apt-get install runit)")
    bindir = build()
    flavours = ("warden", "floor", "layer-floor", "runit")
    results = {f: [] for f in flavours}
    lat = {f: [] for f in flavours}
    downs = []
    # warden and the floors interleaved, in turn first and last (forward, then backward), each
    # run on a settled machine; runit's rounds after them. Its 5-6 s of 400 processes polling
    # slowed whatever ran next: with runit in the rounds, warden, which always came after it,
    # measured 1.02-1.22x the layer floor from run to run.
    order = [f for f in flavours if f != "runit"]
    runs = [(r, f) for r in range(ROUNDS) for f in (order if r % 2 == 0 else order[::-1])]
    runs += [(r, "runit") for r in range(ROUNDS)]
    for r, flavour in runs:
        time.sleep(SETTLE)
        up, l, down = one_run(flavour, bindir)
        if down is not None:
            downs.append(down)
        results[flavour].append(up)
        lat[flavour].extend(l)
        print(f"round {r + 1} {flavour}: all {LAYERS * WIDTH} ready in {up * 1000:.0f} ms",
              file=sys.stderr)
    # The same hop on an idle machine: a chain in which one service starts at a time, so the
    # figure is the mechanism's own latency, not the wait for a CPU the other services hold.
    graph = (LAYERS, WIDTH)
    use_graph(CHAIN, 1)
    chain = {"warden": [], "floor": []}
    for r in range(ROUNDS):
        for flavour in ("warden", "floor") if r % 2 == 0 else ("floor", "warden"):
            time.sleep(SETTLE)
            chain[flavour].extend(one_run(flavour, bindir)[1])
    use_graph(*graph)
    ratio = [w / f for w, f in zip(results["warden"], results["floor"])]
    layer_ratio = [w / f for w, f in zip(results["warden"], results["layer-floor"])]
    # runit's rounds run after the others: the ratio of the medians.
    runit_ratio = [med(results["runit"]) / med(results["warden"])]
    n = LAYERS * WIDTH
    lines = [
        f"Dependencies: {LAYERS} layers of {WIDTH} ({n} services), each needing 2 of the layer "
        f"above, each ready {int(float(READY_AFTER) * 1000)} ms after its start; "
        f"{ROUNDS} rounds, medians (warden and the floors interleaved, runit's rounds after "
        f"them).",
        "",
        "| | all ready | vs floor | vs layer floor | start after last dependency ready "
        "(median / p90) |",
        "|---|---|---|---|---|",
        f"| floor (harness, each service once its 2 dependencies are ready) | "
        f"{med(results['floor']) * 1000:.0f} ms | 1.00x | "
        f"{med(results['floor']) / med(results['layer-floor']):.2f}x | "
        f"{med(lat['floor']) * 1000:.2f} / {p90(lat['floor']) * 1000:.2f} ms |",
        f"| layer floor (harness, each layer once the layer above is ready) | "
        f"{med(results['layer-floor']) * 1000:.0f} ms | "
        f"{med(results['layer-floor']) / med(results['floor']):.2f}x | 1.00x | "
        f"{med(lat['layer-floor']) * 1000:.2f} / {p90(lat['layer-floor']) * 1000:.2f} ms |",
        f"| warden svscan (`needs/`, notification-fd) | {med(results['warden']) * 1000:.0f} ms | "
        f"{med(ratio):.2f}x | {med(layer_ratio):.2f}x | {med(lat['warden']) * 1000:.2f} / "
        f"{p90(lat['warden']) * 1000:.2f} ms |",
        f"| runit idiom (`sv start` in run, `check`) | {med(results['runit']) * 1000:.0f} ms | "
        f"{med(results['runit']) / med(results['floor']):.2f}x | "
        f"{med(results['runit']) / med(results['layer-floor']):.2f}x | "
        f"{med(lat['runit']) * 1000:.2f} / {p90(lat['runit']) * 1000:.2f} ms |",
        "",
        f"runit idiom / warden: {med(runit_ratio):.1f}x. warden's shutdown of the {n} in "
        f"reverse dependency order (TERM to svscan until the last process is gone): "
        f"{med(downs) * 1000:.0f} ms.",
        "",
        f"The same hop on an idle machine, a chain of {CHAIN} (each needing the one before, "
        f"one service starting at a time), start after the dependency is ready, median / p90: "
        f"floor {med(chain['floor']) * 1000:.2f} / {p90(chain['floor']) * 1000:.2f} ms, "
        f"warden {med(chain['warden']) * 1000:.2f} / {p90(chain['warden']) * 1000:.2f} ms.",
        "",
        "The team's one run on the same graph, against the layer floor (the issue's "
        "definition): dinit 0.22.1 1.1-1.2x, s6-rc 0.5.4.1 5-6x (`s6-rc-init` + "
        "`s6-rc -u change`). Ratios to the floors are medians of the per-round ratios; runit's, "
        "the ratio of the medians.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    with open(os.path.join(ROOT, "bench", "results", "deps.md"), "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
