#!/usr/bin/env python3
"""svctl against runit's sv and s6's s6-svc/s6-svstat, side by side in one run.

1. `-w` latency: wall time of `CLIENT -w 10 up` on a down service (and of `down` on an up
   one), until the client returns. That is the supervisor's start/stop plus the time the
   client takes to notice. sv polls every 420 ms; svctl waits on inotify; s6-svc on s6's
   event fifodir.
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


def service(root, name):
    d = os.path.join(root, name)
    os.makedirs(d)
    with open(os.path.join(d, "run"), "w") as f:
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
    ("svctl on runsv", ["runsv"],
     [SVCTL, "-w", "10", "up"], [SVCTL, "-w", "10", "down"], [SVCTL, "status"]),
    ("sv on runsv", ["runsv"],
     ["sv", "-w", "10", "up"], ["sv", "-w", "10", "down"], ["sv", "status"]),
    ("s6-svc on s6-supervise", ["s6-supervise"],
     ["s6-svc", "-wu", "-T", "10000", "-u"], ["s6-svc", "-wd", "-T", "10000", "-d"],
     ["s6-svstat"]),
]


def bench(name, sup, up, down, status):
    if not shutil.which(sup[0]) and not os.path.exists(sup[0]):
        return None
    root = tempfile.mkdtemp()
    d = service(root, "svc")
    p = subprocess.Popen(sup + [d], stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(os.path.join(d, "supervise", "status"))
        time.sleep(0.2)
        ups, downs = [], []
        for _ in range(ROUNDS):
            ups.append(timed(up + [d]))
            # runsv and supervise throttle a run shorter than 1 s; stay clear of it.
            time.sleep(1.1)
            downs.append(timed(down + [d]))
        # The service is down now: svctl status says so with LSB's 3.
        statuses = [timed(status + [d], ok=(0, 3)) for _ in range(STATUS_ROUNDS)]
        return (statistics.median(ups), statistics.median(downs),
                statistics.median(statuses))
    finally:
        subprocess.run(["sv", "x", d] if sup[0] == "runsv" else
                       ["s6-svc", "-xd", d] if sup[0] == "s6-supervise" else
                       [SVCTL, "exit", d], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        shutil.rmtree(root, ignore_errors=True)


def main():
    for tool in (SVCTL, SUPERVISE):
        if not os.path.exists(tool):
            sys.exit(f"bench/svctl.py: {tool} missing: cargo build -p svctl -p supervise")
    rows = []
    for setup in SETUPS:
        result = bench(*setup)
        if result:
            rows.append((setup[0], *result))
    base = rows[0]
    out = [f"svctl benchmark ({PROFILE} build, {ROUNDS} rounds of up/down, "
           f"{STATUS_ROUNDS} of status; medians)", "",
           "| client on supervisor | `-w up` | `-w down` | `status` |",
           "|---|---|---|---|"]
    for name, u, d, s in rows:
        out.append(f"| {name} | {u*1000:.1f} ms ({u/base[1]:.1f}×) | "
                   f"{d*1000:.1f} ms ({d/base[2]:.1f}×) | {s*1000:.2f} ms ({s/base[3]:.1f}×) |")
    text = "\n".join(out) + "\n"
    print(text)
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    with open(os.path.join(ROOT, "bench", "results", "svctl.md"), "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
