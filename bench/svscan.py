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
     the whole tree with the 1000 `sleep` services;
  5. 10,000 services (--big=N to change, --big-only for this part alone, --no-big without
     it): all up from the scanner's start against the floor (the harness starting the same
     10,000 scripts) and `s6-svscan -c 10000`, interleaved with the 1000 tree of warden and its
     floor in the same rounds (daemontools and runit stop at 1000: not run); with the 10,000
     up, warden's idle wakeups, Pss, pickup of one new service, `svctl status` of all and
     `svctl -w 10 up` of one; teardown until the last process of the tree is gone; svscan's
     and the supervisors' CPU (/proc/PID/schedstat) at the moment all were up.
Everything runs in a cgroup of the bench's own (warden-bench-svscan-*), one sub-cgroup per
tree: a tree's teardown ends when its cgroup is empty, and whatever is left at the end, even
after an error or Ctrl-C, is killed by pid and every cgroup removed, deepest first.
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
BIG = next((int(a.split("=", 1)[1]) for a in sys.argv if a.startswith("--big=")),
           2000 if QUICK else 10000)
BIG_ROUNDS = 1 if QUICK else 3
BIG_ONLY = "--big-only" in sys.argv
NO_BIG = "--no-big" in sys.argv


def build():
    env = dict(os.environ, CARGO_TARGET_DIR=TARGET, RUSTFLAGS=RUSTFLAGS)
    subprocess.run(
        ["cargo", "build", "--quiet", "--release", "-p", "supervise", "-p", "svscan",
         "-p", "logger", "-p", "svctl"],
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


def floor(base_root, n=None):
    """The harness spawning the same n run scripts itself: the least any scanner can take."""
    n = N if n is None else n
    fresh = FreshDir(base_root)
    procs = []
    arrivals = None
    try:
        arrivals = Arrivals(fresh.path)
        dirs = [make_counted_service(fresh.path, f"s{i:05d}", arrivals) for i in range(n)]
        t0 = time.monotonic()
        for d in dirs:
            procs.append(subprocess.Popen(["./run"], cwd=d, stdin=subprocess.DEVNULL))
        arrivals.wait_for(n, 600)
        return time.monotonic() - t0
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()
        if arrivals:
            arrivals.close()
        fresh.remove()


# --- the bench's own cgroup -----------------------------------------------------------------

class Cgroups:
    """A cgroup v2 of the bench's own with this process in it, and a sub-cgroup per tree:
    the tree's processes are those of its cgroup, and its teardown ends when the cgroup is
    empty. close() kills by pid whatever is left in them and removes every cgroup, deepest
    first; without cgroup2 (or not root) every method is a no-op."""

    def __init__(self):
        self.root = None
        self.parent = None
        try:
            with open("/proc/self/mountinfo") as f:
                mounts = [l.split(" - ")[0].split()[4] for l in f
                          if " - " in l and l.split(" - ")[1].startswith("cgroup2 ")]
            with open("/proc/self/cgroup") as f:
                own = next((l[3:].strip() for l in f if l.startswith("0::")), "/")
        except OSError:
            return
        if not mounts or os.geteuid() != 0:
            return
        self.parent = os.path.join(mounts[0], own.lstrip("/"))
        path = os.path.join(self.parent, f"warden-bench-svscan-{os.getpid()}")
        try:
            os.mkdir(path)
            self.root = path
            self.enter(path)
        except OSError as e:
            print(f"bench: no cgroup of its own ({e}); supervise makes its cgroups beside "
                  "this process", file=sys.stderr)
            self.close()
            self.root = None

    @staticmethod
    def enter(path):
        with open(os.path.join(path, "cgroup.procs"), "w") as f:
            f.write("0")

    def sub(self, name):
        """A fresh sub-cgroup; the caller starts its tree inside `inside(path)`."""
        if not self.root:
            return None
        path = os.path.join(self.root, name)
        os.mkdir(path)
        return path

    def inside(self, path, start):
        """Calls `start` with this process in `path`, so that what it starts is born there."""
        if not path:
            return start()
        self.enter(path)
        try:
            return start()
        finally:
            self.enter(self.root)

    @staticmethod
    def populated(path):
        try:
            with open(os.path.join(path, "cgroup.events")) as f:
                return "populated 1" in f.read()
        except OSError:
            return False

    def pids(self, path):
        out = []
        for dirpath, _, _ in os.walk(path):
            try:
                with open(os.path.join(dirpath, "cgroup.procs")) as f:
                    out.extend(int(l) for l in f if l.strip())
            except OSError:
                pass
        return [p for p in out if p != os.getpid()]

    def empty(self, path, timeout=30):
        """Kills by pid what is left in `path`, then removes its cgroups, deepest first."""
        if not path or not os.path.isdir(path):
            return
        deadline = time.monotonic() + timeout
        while True:
            kill_all(self.pids(path))
            reap()
            for dirpath, _, _ in sorted(os.walk(path), key=lambda w: -w[0].count("/")):
                try:
                    os.rmdir(dirpath)
                except OSError:
                    pass
            if not os.path.exists(path) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        if os.path.exists(path):
            print(f"bench: warning: could not remove {path}", file=sys.stderr)

    def close(self):
        if not self.parent:
            return
        try:
            self.enter(self.parent)
        except OSError:
            pass
        if self.root:
            self.empty(self.root)


def reap():
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def schedstat_ms(pid):
    """CPU time of one process so far (ms), from /proc/PID/schedstat."""
    try:
        with open(f"/proc/{pid}/schedstat") as f:
            return int(f.read().split()[0]) / 1e6
    except (OSError, ValueError, IndexError):
        return 0.0


def check_limits(n):
    """What stands in the way of n services, said before the start: pids, fds, inotify."""
    lines = []
    with open("/proc/sys/kernel/pid_max") as f:
        pid_max = int(f.read())
    with open("/proc/loadavg") as f:
        tasks = int(f.read().split()[3].split("/")[1])
    need = 2 * n + 50
    lines.append(f"limits: pid_max {pid_max}, {tasks} tasks now; a tree of {n} needs {need} "
                 f"(a supervisor and a `sleep` per service)")
    if pid_max - tasks < need:
        sys.exit(f"bench: kernel.pid_max {pid_max} leaves {pid_max - tasks} pids: too few for "
                 f"{n} services; raise it (sysctl kernel.pid_max=65536) or pass --big=N")
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    lines.append(f"limits: fds {soft}/{hard} (svscan raises its own soft limit to the hard one "
                 f"when it runs out)")
    with open("/proc/sys/fs/inotify/max_user_watches") as f:
        watches = int(f.read())
    lines.append(f"limits: inotify max_user_watches {watches} (svscan watches the scan dir, "
                 f"and only loggers waiting for a HUP or container-exit services inside it)")
    for line in lines:
        print(line, file=sys.stderr)
    return lines


def big_tree(cg, label, argv, stop, base_root, n, measure, svctl=None):
    """One tree of n services in a cgroup of its own: time to all up, then (measure) the
    rest, then the teardown until the cgroup is empty."""
    fresh = FreshDir(base_root)
    base = fresh.path
    arrivals = None
    group = None
    sc = None
    try:
        group = cg.sub(f"{label}-{n}-{time.time_ns()}")
        scandir = os.path.join(base, "service")
        os.makedirs(scandir)
        sc = Scanner(label, argv, scandir, stop)
        arrivals = Arrivals(base)
        for i in range(n):
            make_counted_service(scandir, f"s{i:05d}", arrivals)
        t0 = time.monotonic()
        cg.inside(group, sc.start)
        ok = arrivals.wait_for(n, 600)
        up = time.monotonic() - t0 if ok else None
        result = {"up": up, "scanner_cpu_ms": schedstat_ms(sc.proc.pid)}
        pids = tree(sc.proc.pid)
        supervision = [p for p in pids if comm(p) != "sleep" and p != sc.proc.pid]
        result["supervisors_cpu_ms"] = sum(schedstat_ms(p) for p in supervision)
        if measure and ok:
            time.sleep(3)
            pids = tree(sc.proc.pid)
            supervision = [p for p in pids if comm(p) != "sleep"]
            before = {p: cost(p) for p in supervision}
            time.sleep(IDLE_SECONDS)
            after = {p: cost(p) for p in supervision}
            result.update({
                "cpu_ms": sum(after[p][0] - before[p][0] for p in supervision)
                * 1000 / os.sysconf("SC_CLK_TCK"),
                "wakeups": sum(after[p][1] - before[p][1] for p in supervision),
                "pss_supervision": sum(pss_kb(p) for p in supervision),
                "pss_tree": sum(pss_kb(p) for p in pids),
                "processes": len(supervision),
            })
            if svctl:
                result.update(big_warden_extras(sc, svctl, base))
        t1 = time.monotonic()
        sc.snapshot_skipped = True
        stopped = big_stop(cg, sc, group)
        result["teardown"] = time.monotonic() - t1 if stopped else None
        return result
    finally:
        if sc and sc.proc and sc.proc.poll() is None:
            try:
                os.kill(sc.proc.pid, signal.SIGKILL)
            except OSError:
                pass
        cg.empty(group)
        if sc and getattr(sc, "err", None):
            sc.err.close()
        if arrivals:
            arrivals.close()
        fresh.remove()


def big_stop(cg, sc, group):
    """Tells the scanner to stop its tree; true once the tree's cgroup is empty (120 s)."""
    if sc.stop_how == "warden":
        with open(os.path.join(sc.scandir, ".svscan/control"), "wb") as f:
            f.write(b"t")
    else:
        subprocess.run(["s6-svscanctl", "-t", sc.scandir])
    try:
        sc.proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        pass
    if not group:
        return sc.proc.poll() is not None
    return wait_until(lambda: not cg.populated(group), 120, 0.005)


def big_warden_extras(sc, svctl, base):
    """With the big tree up: pickup of one new service, `svctl status` of all, and
    `svctl -w 10 up` of one that was down."""
    out = {}
    stage = os.path.join(base, "stage")
    markers = os.path.join(base, "markers")
    os.makedirs(stage)
    os.makedirs(markers)
    times = []
    cpu = []
    for i in range(5):
        name = f"p{i}"
        src = make_service(stage, name, markers)
        marker = os.path.join(markers, name)
        before = schedstat_ms(sc.proc.pid)
        t0 = time.monotonic()
        os.rename(src, os.path.join(sc.scandir, name))
        times.append(time.monotonic() - t0 if wait_until(lambda: os.path.exists(marker), 8)
                     else None)
        time.sleep(0.1 + 0.37 * (i % 3))
        # svscan's own CPU for one new service: what one inotify event costs it, however
        # big the tree (the new supervisor's start included).
        cpu.append(schedstat_ms(sc.proc.pid) - before)
    out["pickup"] = times
    out["pickup_cpu_ms"] = cpu
    status = []
    lines = 0
    for _ in range(3):
        t0 = time.monotonic()
        r = subprocess.run([svctl, "-d", sc.scandir, "status"], stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL)
        status.append(time.monotonic() - t0)
        lines = r.stdout.count(b"\n")
    out["status"] = status
    out["status_lines"] = lines
    ups = []
    for _ in range(3):
        subprocess.run([svctl, "-d", sc.scandir, "-w", "10", "down", "s00000"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        t0 = time.monotonic()
        r = subprocess.run([svctl, "-d", sc.scandir, "-w", "10", "up", "s00000"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ups.append(time.monotonic() - t0 if r.returncode == 0 else None)
    out["svctl_up"] = ups
    return out


def big_floor(cg, base_root, n):
    """floor() in a cgroup of its own."""
    group = cg.sub(f"floor-{n}-{time.time_ns()}")
    try:
        return cg.inside(group, lambda: floor(base_root, n))
    finally:
        cg.empty(group)


def big_part(svscan, svctl, cg, base_root):
    limits = check_limits(BIG)
    small, large = 1000, BIG
    warden = [svscan]
    s6 = ["s6-svscan", "-c", str(large)]
    rounds = []
    for round_ in range(BIG_ROUNDS):
        r = {}
        say = lambda what: print(f"{large} services, round {round_ + 1}/{BIG_ROUNDS}: {what}...",
                                 file=sys.stderr)
        say(f"floor of {small}")
        r["floor_small"] = big_floor(cg, base_root, small)
        say(f"warden {small}")
        r["warden_small"] = big_tree(cg, "warden", warden, "warden", base_root, small,
                                     measure=round_ == 0, svctl=svctl)
        say(f"floor of {large}")
        r["floor"] = big_floor(cg, base_root, large)
        say(f"warden {large}")
        r["warden"] = big_tree(cg, "warden", warden, "warden", base_root, large,
                               measure=round_ == 0, svctl=svctl)
        say(f"s6-svscan -c {large}")
        r["s6"] = big_tree(cg, "s6", s6, "s6", base_root, large, measure=round_ == 0)
        rounds.append(r)
        print(f"  round {round_ + 1}: " + "; ".join(
            f"{k} {v if isinstance(v, float) else v.get('up')}" for k, v in r.items()),
            file=sys.stderr)
    return big_table(limits, rounds, small, large)


def fmt_s(x):
    return "did not finish" if x is None else f"{x:.2f} s"


def big_table(limits, rounds, small, large):
    med_of = lambda key, field="up": med([
        (r[key] if isinstance(r[key], float) else r[key].get(field)) for r in rounds])
    floor_l, floor_s = med_of("floor"), med_of("floor_small")
    w_l, w_s, s6_l = med_of("warden"), med_of("warden_small"), med_of("s6")
    first = rounds[0]
    w, ws, s6 = first["warden"], first["warden_small"], first["s6"]
    lines = [f"svscan benchmark, {large} services, "
             f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} CPUs, "
             f"{len(rounds)} interleaved rounds, medians", ""]
    lines += [f"- {l[len('limits: '):]}" for l in limits]
    lines.append("- daemontools' svscan and runit's runsvdir stop at 1000 services: not run")
    lines.append("")
    lines.append(f"| | {large} up | teardown | idle CPU /{IDLE_SECONDS}s | idle wakeups "
                 f"/{IDLE_SECONDS}s | Pss scanner+supervisors | Pss whole tree | "
                 f"scanner CPU at all up | supervisors' CPU at all up |")
    lines.append("|---|---|---|---|---|---|---|---|---|")

    def row(label, up, r):
        def kb(field):
            return f"{r[field] / 1024:.1f} MB" if field in r else ""
        cpu = f"{r['cpu_ms']:.0f} ms" if "cpu_ms" in r else ""
        return (f"| {label} | {fmt_s(up)} | {fmt_s(med_of_teardown(label))} | {cpu} | "
                f"{r.get('wakeups', '')} | {kb('pss_supervision')} | {kb('pss_tree')} | "
                f"{r['scanner_cpu_ms']:.0f} ms | {r['supervisors_cpu_ms']:.0f} ms |")

    def med_of_teardown(label):
        key = {"warden svscan": "warden", "s6-svscan -c": "s6",
               "warden svscan, 1000": "warden_small"}[label]
        return med([r[key].get("teardown") for r in rounds])

    lines.append(row("warden svscan", w_l, w))
    lines.append(row("s6-svscan -c", s6_l, s6))
    lines.append(f"| floor: the bench starting the {large} runs itself | {fmt_s(floor_l)} "
                 "| | | | | | | |")
    lines.append(row("warden svscan, 1000", w_s, ws))
    lines.append(f"| floor of 1000 | {fmt_s(floor_s)} | | | | | | | |")
    lines.append("")
    if w_l and floor_l and w_s:
        lines.append(f"warden {large} up / floor: {w_l / floor_l:.2f}x (target 1.5x); "
                     f"s6 / warden: {s6_l / w_l:.2f}x (target > 1)" if s6_l else "")
        lines.append(f"warden {large} up / warden 1000 up: {w_l / w_s:.2f}x (target 10.5x); "
                     f"floor {large} / floor 1000: {floor_l / floor_s:.2f}x")
    if "pss_tree" in w and "pss_tree" in ws:
        lines.append(f"Pss per service (whole tree): {w['pss_tree'] / large:.1f} kB at {large}, "
                     f"{ws['pss_tree'] / small:.1f} kB at {small}; scanner+supervisors "
                     f"{w['pss_supervision'] / large:.1f} kB, {ws['pss_supervision'] / small:.1f} kB")
    if "pickup" in w:
        p = w["pickup"]
        lines.append(f"with {large} up: pickup of one new service {ms(med(p))} "
                     f"(5 samples: {[None if t is None else round(t * 1000, 1) for t in p]}; "
                     f"svscan's CPU for each: {med(w['pickup_cpu_ms']):.2f} ms median); "
                     f"`svctl status` of all {ms(med(w['status']))} "
                     f"({w['status_lines']} lines; {[round(t * 1000) for t in w['status']]}); "
                     f"`svctl -w 10 up` of one that was down {ms(med(w['svctl_up']))}")
    if "pickup" in ws:
        lines.append(f"with {small} up: pickup {ms(med(ws['pickup']))}, svscan's CPU for each "
                     f"{med(ws['pickup_cpu_ms']):.2f} ms median; `svctl status` of all "
                     f"{ms(med(ws['status']))}")
    lines.append("every round (s): " + "; ".join(
        f"{k}: {[None if v is None else round(v, 2) for v in [r[k] if isinstance(r[k], float) else r[k].get('up') for r in rounds]]}"
        for k in ["floor_small", "warden_small", "floor", "warden", "s6"]))
    lines.append("teardown every round (s): " + "; ".join(
        f"{k}: {[None if r[k].get('teardown') is None else round(r[k]['teardown'], 2) for r in rounds]}"
        for k in ["warden_small", "warden", "s6"]))
    lines.append("scanner CPU at all up, every round (ms): " + "; ".join(
        f"{k}: {[round(r[k]['scanner_cpu_ms']) for r in rounds]}"
        for k in ["warden_small", "warden", "s6"]))
    lines.append("supervisors' CPU at all up, every round (ms): " + "; ".join(
        f"{k}: {[round(r[k]['supervisors_cpu_ms']) for r in rounds]}"
        for k in ["warden_small", "warden", "s6"]))
    return "\n".join(lines) + "\n"


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
    svctl = os.path.join(os.path.dirname(svscan), "svctl")
    os.environ["PATH"] = "/usr/bin:/bin:/usr/sbin:/sbin"
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    # A TERM ends the bench as Ctrl-C does: through the finally below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    cg = Cgroups()
    before = set(os.listdir(cg.parent)) if cg.parent else set()
    text = ""
    try:
        if not BIG_ONLY:
            text += small_part(svscan)
        if not NO_BIG:
            base_root = tempfile.mkdtemp(prefix="bench-svscan-root-")
            try:
                text += ("\n" if text else "") + big_part(svscan, svctl, cg, base_root)
            finally:
                shutil.rmtree(base_root, ignore_errors=True)
    finally:
        cg.close()
        if cg.parent:
            left = [d for d in os.listdir(cg.parent) if "warden" in d and d not in before]
            if left:
                print(f"bench: warning: cgroups left in {cg.parent}: {left[:5]} "
                      f"({len(left)})", file=sys.stderr)
    print(text)
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    with open(os.path.join(ROOT, "bench", "results", "svscan.md"), "w") as f:
        f.write(text)


def small_part(svscan):
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
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
