#!/usr/bin/env python3
"""warden's svscan against runit's runsvdir, s6-svscan and daemontools' svscan, in one run.

  bench/run svscan        (or: python3 bench/svscan.py [--quick])

Measures, on this machine:
  1. pickup latency: a prepared service dir is renamed into the running scanner's directory;
     time until its `run` has executed (it creates a marker file). s6-svscan only scans on
     demand, so it is measured without a nudge (timeout) and with `s6-svscanctl -a` right
     after the rename. runsvdir and daemontools poll every 5 s: fewer samples, medians quoted;
  2. 1000 services up: from the scanner's start until all 1000 `run`s have executed (each
     writes a line to a FIFO the harness reads), against the floor: this harness spawning the
     same 1000 run scripts itself. Each measurement runs on a fresh tmpfs when we are root (as
     /run, where real trees keep their state), and the scanners take turns over 7 rounds;
     medians quoted;
  3. idle cost of that tree of 1000 over 10 s: CPU time and wakeups (voluntary + nonvoluntary
     context switches) of the scanner and every supervisor;
  4. memory of the tree: sum of Pss (smaps_rollup) of the scanner and its supervisors, and of
     the whole tree with the 1000 `sleep` services.
warden is built static non-PIE, release. Prints a table and writes bench/results/svscan.md.
"""

import os
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
N = 200 if QUICK else 1000
IDLE_SECONDS = 3 if QUICK else 10
FAST_SAMPLES = 5 if QUICK else 15
ROUNDS = 1 if QUICK else 7
SLOW_SAMPLES = 2 if QUICK else 5
RUSTFLAGS = "-C target-feature=+crt-static -C relocation-model=static"


def build():
    env = dict(os.environ, CARGO_TARGET_DIR=TARGET, RUSTFLAGS=RUSTFLAGS)
    subprocess.run(
        ["cargo", "build", "--quiet", "--release", "-p", "supervise", "-p", "svscan",
         "-p", "logger"],
        cwd=ROOT, env=env, check=True,
    )
    return os.path.join(TARGET, "release", "svscan")


def run_script(path, body):
    with open(path, "w") as f:
        f.write("#!/bin/sh\n" + body + "\n")
    os.chmod(path, 0o755)


def make_service(parent, name, marker_dir):
    d = os.path.join(parent, name)
    os.makedirs(d)
    # Shell builtins only, so the run costs one sh and one sleep for every scanner alike.
    run_script(os.path.join(d, "run"), f': > "{marker_dir}/${{PWD##*/}}"\nexec sleep 1000000')
    return d


# --- process tree helpers -------------------------------------------------------------------

def children_map():
    kids = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        rest = stat.rsplit(") ", 1)[-1].split()
        kids.setdefault(int(rest[1]), []).append(int(entry))
    return kids


def tree(root):
    kids = children_map()
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(kids.get(pid, []))
    return out


def comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def cost(pid):
    """(cpu ticks, context switches) of one process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(") ", 1)[-1].split()
        ticks = int(fields[11]) + int(fields[12])
        switches = 0
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                    switches += int(line.split()[1])
        return ticks, switches
    except OSError:
        return 0, 0


def pss_kb(pid):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def kill_all(pids):
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def wait_until(cond, timeout, step=0.0005):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step)
    return cond()


# --- the scanners ---------------------------------------------------------------------------

class Scanner:
    """One scanner on one scan dir: how to start it, nudge it and tear it down."""

    def __init__(self, name, argv, scandir, stop):
        self.name, self.argv, self.scandir, self.stop_how = name, argv, scandir, stop
        self.proc = None
        self.seen = set()

    def start(self):
        self.err = open(os.path.join(os.path.dirname(self.scandir), f"{self.name}.err"), "ab")
        self.proc = subprocess.Popen(self.argv + [self.scandir], stdin=subprocess.DEVNULL,
                                     stdout=self.err, stderr=self.err, start_new_session=True)

    def snapshot(self):
        self.seen.update(tree(self.proc.pid))

    def stop(self):
        self.snapshot()
        pid = self.proc.pid
        if self.stop_how == "warden":
            with open(os.path.join(self.scandir, ".svscan/control"), "wb") as f:
                f.write(b"t")
        elif self.stop_how == "s6":
            subprocess.run(["s6-svscanctl", "-t", self.scandir])
        elif self.stop_how == "runit":
            os.kill(pid, signal.SIGHUP)  # TERM to every runsv (= stop, then exit), then exit
        elif self.stop_how == "daemontools":
            os.kill(pid, signal.SIGTERM)
            dirs = [os.path.join(self.scandir, d) for d in os.listdir(self.scandir)
                    if not d.startswith(".")]
            for i in range(0, len(dirs), 200):
                subprocess.run(["svc", "-dx"] + dirs[i:i + 200], stderr=subprocess.DEVNULL)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pass
        survivors = [p for p in self.seen if os.path.exists(f"/proc/{p}")]
        wait_until(lambda: not any(os.path.exists(f"/proc/{p}") and comm(p) != ""
                                   for p in survivors), 20, 0.05)
        kill_all(self.seen)
        self.err.close()


# --- measurements ---------------------------------------------------------------------------

def pickup(make, nudge=None, samples=5, timeout=8.0):
    base = tempfile.mkdtemp(prefix="bench-svscan-")
    try:
        sc = make(base)
        stage = os.path.join(base, "stage")
        markers = os.path.join(base, "markers")
        os.makedirs(stage)
        os.makedirs(markers)
        sc.start()
        time.sleep(0.5)
        times = []
        for i in range(samples):
            name = f"p{i}"
            src = make_service(stage, name, markers)
            marker = os.path.join(markers, name)
            t0 = time.monotonic()
            os.rename(src, os.path.join(sc.scandir, name))
            if nudge:
                subprocess.run(nudge + [sc.scandir])
            if wait_until(lambda: os.path.exists(marker), timeout):
                times.append(time.monotonic() - t0)
            else:
                times.append(None)
                break
            # Decorrelate from a polling scanner's period.
            time.sleep(0.37 * (i % 3))
        sc.stop()
        return times
    finally:
        shutil.rmtree(base, ignore_errors=True)


class FreshDir:
    """A directory for one measurement, on a tmpfs of its own when we may mount one: every
    scanner then starts from the same empty filesystem (as /run is at boot, where real trees
    keep their supervise/ state), not from one aged by the runs before it."""

    def __init__(self, base_root):
        self.path = tempfile.mkdtemp(prefix="bench-svscan-", dir=base_root)
        self.mounted = os.geteuid() == 0 and subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs", self.path]).returncode == 0

    def remove(self):
        if self.mounted:
            subprocess.run(["umount", "--lazy", self.path])
        shutil.rmtree(self.path, ignore_errors=True)


class Arrivals:
    """Counts `run`s that have started: each writes one line to a FIFO the harness reads,
    blocking, so counting costs nothing while the scanner works."""

    def __init__(self, base):
        self.path = os.path.join(base, "arrivals")
        os.mkfifo(self.path)
        self.fd = os.open(self.path, os.O_RDWR | os.O_NONBLOCK)
        self.count = 0

    def wait_for(self, n, timeout):
        import select
        deadline = time.monotonic() + timeout
        while self.count < n:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.fd], [], [], left)[0]:
                return False
            try:
                self.count += os.read(self.fd, 65536).count(b"\n")
            except BlockingIOError:
                pass
        return True

    def close(self):
        os.close(self.fd)


def make_counted_service(parent, name, arrivals):
    d = os.path.join(parent, name)
    os.makedirs(d)
    run_script(os.path.join(d, "run"), f'echo >> "{arrivals.path}"\nexec sleep 1000000')
    return d


def many(make, base_root, measure_idle):
    """Start with N services in place: time to all up; with measure_idle, idle cost and memory."""
    fresh = FreshDir(base_root)
    base = fresh.path
    arrivals = None
    try:
        sc = make(base)
        arrivals = Arrivals(base)
        for i in range(N):
            make_counted_service(sc.scandir, f"s{i:04d}", arrivals)
        t0 = time.monotonic()
        sc.start()
        up = time.monotonic() - t0 if arrivals.wait_for(N, 120) else None
        result = {"up": up}
        if measure_idle:
            time.sleep(2)
            pids = [p for p in tree(sc.proc.pid)]
            supervision = [p for p in pids if comm(p) != "sleep"]
            before = {p: cost(p) for p in supervision}
            time.sleep(IDLE_SECONDS)
            after = {p: cost(p) for p in supervision}
            ticks = sum(after[p][0] - before[p][0] for p in supervision)
            result.update({
                "cpu_ms": ticks * 1000 / os.sysconf("SC_CLK_TCK"),
                "wakeups": sum(after[p][1] - before[p][1] for p in supervision),
                "pss_supervision": sum(pss_kb(p) for p in supervision),
                "pss_tree": sum(pss_kb(p) for p in pids),
                "processes": len(supervision),
            })
        sc.stop()
        return result
    finally:
        if arrivals:
            arrivals.close()
        fresh.remove()


def floor(base_root):
    """The harness spawning the same N run scripts itself: the least any scanner can take."""
    fresh = FreshDir(base_root)
    procs = []
    arrivals = None
    try:
        arrivals = Arrivals(fresh.path)
        dirs = [make_counted_service(fresh.path, f"s{i:04d}", arrivals) for i in range(N)]
        t0 = time.monotonic()
        for d in dirs:
            procs.append(subprocess.Popen(["./run"], cwd=d, stdin=subprocess.DEVNULL))
        arrivals.wait_for(N, 120)
        return time.monotonic() - t0
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()
        if arrivals:
            arrivals.close()
        fresh.remove()


def ms(x):
    return "never" if x is None else f"{x * 1000:.1f} ms"


def med(times):
    done = [t for t in times if t is not None]
    if not done:
        return None
    if len(done) < len(times):
        return None
    return statistics.median(done)


def main():
    svscan = build()
    os.environ["PATH"] = "/usr/bin:/bin:/usr/sbin:/sbin"
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))

    def maker(label, argv, stop):
        def make(base):
            d = os.path.join(base, "service")
            os.makedirs(d, exist_ok=True)
            return Scanner(label, argv, d, stop)
        return make

    makers = {
        "warden svscan": maker("warden", [svscan], "warden"),
        "runit runsvdir": maker("runit", ["runsvdir"], "runit"),
        "s6-svscan": maker("s6", ["s6-svscan", "-c", str(N + 100)], "s6"),
        "daemontools svscan": maker("daemontools", ["/usr/bin/svscan"], "daemontools"),
    }

    rows = {}
    print("pickup latency...", file=sys.stderr)
    rows["warden svscan"] = {"pickup": pickup(makers["warden svscan"], samples=FAST_SAMPLES)}
    rows["s6-svscan"] = {"pickup": pickup(makers["s6-svscan"], samples=1, timeout=5.0)}
    rows["s6-svscan + s6-svscanctl -a"] = {
        "pickup": pickup(makers["s6-svscan"], nudge=["s6-svscanctl", "-a"],
                         samples=FAST_SAMPLES)}
    rows["runit runsvdir"] = {"pickup": pickup(makers["runit runsvdir"], samples=SLOW_SAMPLES)}
    rows["daemontools svscan"] = {
        "pickup": pickup(makers["daemontools svscan"], samples=SLOW_SAMPLES)}

    base_root = tempfile.mkdtemp(prefix="bench-svscan-root-")
    many_labels = ["warden svscan", "runit runsvdir", "s6-svscan", "daemontools svscan"]
    floors, ups = [], {label: [] for label in many_labels}
    try:
        # Rounds interleaved, so that a slow spell of the machine falls on every scanner alike.
        for round_ in range(ROUNDS):
            print(f"{N} services, round {round_ + 1}/{ROUNDS}: floor...", file=sys.stderr)
            floors.append(floor(base_root))
            for label in many_labels:
                print(f"{N} services, round {round_ + 1}/{ROUNDS}: {label}...", file=sys.stderr)
                result = many(makers[label], base_root, measure_idle=round_ == 0)
                ups[label].append(result.pop("up"))
                rows[label].update(result)
    finally:
        shutil.rmtree(base_root, ignore_errors=True)
    floor_s = statistics.median(floors)
    for label in many_labels:
        rows[label]["up"] = med(ups[label])
        rows[label]["ups"] = ups[label]

    lines = []
    lines.append(f"svscan benchmark, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
                 f"{os.cpu_count()} CPUs, N = {N}")
    lines.append("")
    lines.append("| scanner | pickup median (samples) | "
                 f"{N} services up | idle CPU /{IDLE_SECONDS}s | idle wakeups /{IDLE_SECONDS}s"
                 f" | Pss scanner+supervisors | Pss whole tree |")
    lines.append("|---|---|---|---|---|---|---|")
    order = ["warden svscan", "s6-svscan", "s6-svscan + s6-svscanctl -a", "runit runsvdir",
             "daemontools svscan"]
    for label in order:
        r = rows[label]
        p = r["pickup"]
        if med(p) is not None:
            pick = f"{ms(med(p))} ({len(p)} samples, min {ms(min(p))}, max {ms(max(p))})"
        else:
            pick = f"never within {5 if label == 's6-svscan' else 8} s"
        if "up" in r:
            up = "did not finish" if r["up"] is None else f"{r['up']:.2f} s"
            lines.append(
                f"| {label} | {pick} | {up} | {r['cpu_ms']:.0f} ms | {r['wakeups']} | "
                f"{r['pss_supervision'] / 1024:.1f} MB ({r['processes']} procs) | "
                f"{r['pss_tree'] / 1024:.1f} MB |")
        else:
            lines.append(f"| {label} | {pick} | | | | | |")
    lines.append(f"| floor: the harness spawning the {N} runs itself | | {floor_s:.2f} s | | | | |")
    w = rows["warden svscan"]
    peers = [rows[l]["up"] for l in ["runit runsvdir", "s6-svscan", "daemontools svscan"]
             if rows[l].get("up")]
    lines.append("")
    lines.append(f"warden {N} up / floor: {w['up'] / floor_s:.2f}x; fastest peer / warden: "
                 f"{min(peers) / w['up']:.2f}x" if peers and w.get("up") else "")
    lines.append(f"{N} up, every round (s): floor {[round(t, 2) for t in floors]}; " + "; ".join(
        f"{l}: {[None if t is None else round(t, 2) for t in ups[l]]}" for l in many_labels))
    lines.append(f"raw pickup samples (ms): " + "; ".join(
        f"{l}: {[round(t * 1000, 1) if t else None for t in rows[l]['pickup']]}" for l in order))
    text = "\n".join(lines) + "\n"
    print(text)
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    with open(os.path.join(ROOT, "bench", "results", "svscan.md"), "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
