#!/usr/bin/env python3
"""svctl against runit's sv and s6's s6-svc/s6-svstat, side by side in one run.

1. `-w` latency: wall time of `CLIENT -w 10 up` on a down service (and of `down` on an up
   one), until the client returns. That is the supervisor's start/stop plus the time the
   client takes to notice. sv polls every 420 ms; svctl waits on warden's supervise/event/
   FIFO (inotify under runsv); s6-svc on s6's event fifodir. Also the round trip: `-w down`
   then at once `-w up`.
2. `status` of one service: wall time of one invocation (mostly process start-up).

Writes bench/results/svctl.md. Needs `cargo build -p svctl -p supervise` (debug is what the
tests use; pass --release to use target/release).
"""

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROFILE = "release" if "--release" in sys.argv else "debug"
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
SVCTL = os.path.join(TARGET, PROFILE, "svctl")
SUPERVISE = os.path.join(TARGET, PROFILE, "supervise")
ROUNDS = 15
STATUS_ROUNDS = 100


def service(root, name, notify=False):
    d = os.path.join(root, name)
    os.makedirs(d)
    with open(os.path.join(d, "run"), "w") as f:
        if notify:
            # Ready at once: what is measured is how fast the client sees the readiness.
            f.write("#!/bin/sh\necho >&3\nexec sleep 100000 3>&-\n")
            with open(os.path.join(d, "notification-fd"), "w") as n:
                n.write("3\n")
        else:
            f.write("#!/bin/sh\nexec sleep 100000\n")
    os.chmod(os.path.join(d, "run"), 0o755)
    open(os.path.join(d, "down"), "w").close()
    return d


def wait_for(path, timeout=10):
    end = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > end:
            raise RuntimeError(f"{path} did not appear")
        time.sleep(0.01)


def timed(cmd, ok=(0,)):
    t = time.monotonic()
    r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    took = time.monotonic() - t
    if r.returncode not in ok:
        raise RuntimeError(f"{cmd}: exit {r.returncode}: {r.stderr.decode()}")
    return took


SETUPS = [
    # name, supervisor argv, up argv, down argv, status argv
    ("svctl on warden supervise", [SUPERVISE],
     [SVCTL, "-w", "10", "up"], [SVCTL, "-w", "10", "down"], [SVCTL, "status"]),
    ("svctl on warden supervise, notification-fd", [SUPERVISE, "+notify"],
     [SVCTL, "-w", "10", "up"], [SVCTL, "-w", "10", "down"], [SVCTL, "status"]),
    ("svctl on runsv", ["runsv"],
     [SVCTL, "-w", "10", "up"], [SVCTL, "-w", "10", "down"], [SVCTL, "status"]),
    ("sv on runsv", ["runsv"],
     ["sv", "-w", "10", "up"], ["sv", "-w", "10", "down"], ["sv", "status"]),
    ("s6-svc on s6-supervise", ["s6-supervise"],
     ["s6-svc", "-wu", "-T", "10000", "-u"], ["s6-svc", "-wd", "-T", "10000", "-d"],
     ["s6-svstat"]),
    ("s6-svc -wU on s6-supervise, notification-fd", ["s6-supervise", "+notify"],
     ["s6-svc", "-wU", "-T", "10000", "-u"], ["s6-svc", "-wd", "-T", "10000", "-d"],
     ["s6-svstat"]),
]


def start(sup):
    """Starts one supervisor on a fresh `exec sleep` service; returns (dir, root, process)."""
    root = tempfile.mkdtemp()
    notify = "+notify" in sup
    sup = [a for a in sup if a != "+notify"]
    d = service(root, "svc", notify)
    p = subprocess.Popen(sup + [d], stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(os.path.join(d, "supervise", "status"))
    return d, root, p


def stop(sup, d, root, p):
    subprocess.run(["sv", "x", d] if sup[0] == "runsv" else
                   ["s6-svc", "-xd", d] if sup[0] == "s6-supervise" else
                   [SVCTL, "exit", d], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        p.wait(timeout=5)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
    shutil.rmtree(root, ignore_errors=True)


def bench(setups):
    """The setups take turns within each round, so a busy moment of the shared machine hits
    them all alike. Per round: `-w up`, `-w down`, then a round trip (`-w down` straight
    followed by `-w up`, as bench/supervise.py measures it)."""
    running = {}
    try:
        for name, sup, *_ in setups:
            running[name] = start(sup)
        time.sleep(0.2)
        times = {name: ([], [], []) for name, *_ in setups}

        def each(step):
            for name, _, up, down, _ in setups:
                step(name, running[name][0], up, down)

        for _ in range(ROUNDS):
            each(lambda n, d, up, down: times[n][0].append(timed(up + [d])))
            # runsv and supervise throttle a run shorter than 1 s; stay clear of it.
            time.sleep(1.1)
            each(lambda n, d, up, down: times[n][1].append(timed(down + [d])))
            each(lambda n, d, up, down: timed(up + [d]))
            time.sleep(1.1)
            each(lambda n, d, up, down: times[n][2].append(timed(down + [d]) + timed(up + [d])))
            time.sleep(1.1)
            each(lambda n, d, up, down: timed(down + [d]))
        rows = []
        for name, _, _, _, status in setups:
            d = running[name][0]
            # The service is down now: svctl status says so with LSB's 3.
            statuses = [timed(status + [d], ok=(0, 3)) for _ in range(STATUS_ROUNDS)]
            ups, downs, trips = times[name]
            rows.append((name, statistics.median(ups), statistics.median(downs),
                         statistics.median(trips), statistics.median(statuses)))
        return rows
    finally:
        for name, sup, *_ in setups:
            if name in running:
                stop(sup, *running[name])


def main():
    for tool in (SVCTL, SUPERVISE):
        if not os.path.exists(tool):
            sys.exit(f"bench/svctl.py: {tool} missing: cargo build -p svctl -p supervise")
    setups = [s for s in SETUPS if shutil.which(s[1][0]) or os.path.exists(s[1][0])]
    rows = bench(setups)
    base = rows[0]
    load = os.getloadavg()[0]
    out = [f"svctl benchmark ({PROFILE} build, {ROUNDS} rounds of up/down/round trip, "
           f"{STATUS_ROUNDS} of status; medians; load {load:.1f})", "",
           "| client on supervisor | `-w up` | `-w down` | `-w down` + `-w up` | `status` |",
           "|---|---|---|---|---|"]
    for name, u, d, r, s in rows:
        out.append(f"| {name} | {u*1000:.1f} ms ({u/base[1]:.1f}×) | "
                   f"{d*1000:.1f} ms ({d/base[2]:.1f}×) | {r*1000:.1f} ms ({r/base[3]:.1f}×) | "
                   f"{s*1000:.2f} ms ({s/base[4]:.1f}×) |")
    text = "\n".join(out) + "\n"
    print(text)
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    with open(os.path.join(ROOT, "bench", "results", "svctl.md"), "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
