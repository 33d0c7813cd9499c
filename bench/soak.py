#!/usr/bin/env python3
"""Chaos soak: a tree of 50 services under warden's svscan, SIGKILLs at random moments.

  bench/run soak [--minutes N] [--seed S] [--keep]     (10 minutes by default)

The binaries are built in release mode (target/release, or $CARGO_TARGET_DIR/release). The
soak runs in `unshare --pid --fork --mount --propagation private --mount-proc`, where this
script is process 1: it restarts svscan when svscan is killed (as init would), reaps the
orphans the kernel hands it, and when it exits the kernel kills whatever is left. The
supervisors' cgroups are made in a cgroup of the soak's own, removed at the end.

The tree: 50 services; 10 of them (w00..w09) write numbered lines through log/ (the default
logger), 40 sleep. A driver, one action at a time, at random moments (0-600 ms apart):
SIGKILL to svscan, a supervisor (of a service or of a logger), a logger or a service, picked
at random by pid among the processes of this tree, or `svctl down/up/restart` of a random
service. After each action it measures how long until everything that should run runs again:
svscan (its control FIFO open), every supervisor (its `ok` FIFO open) and every service that
is wanted up (`status` in state run with a live pid that is not the one killed).

At the end (svscan told to shut down, which drains the loggers) it checks:
  - every numbered line is in its log: each run of a writer numbers its lines 1, 2, 3...
    and records its progress beside; no number may be missing below the highest logged,
    nor below the recorded progress; duplicates are counted and compared with the bound of
    one 64 KiB pipe buffer per SIGKILL of that writer's logger;
  - no zombie lingered (sampled every second; one seen twice 1 s apart is reported);
  - every kill was followed by everything back up within 1 s (the worst case is reported);
  - svscan's and the supervisors' fd counts and RSS: medians of the first minute against
    the last (samples taken when the tree is settled).
Prints a table and writes bench/results/soak.md; exits 1 if a check failed.
"""

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVICES = 50
WRITERS = 10
PIPE_BUFFER = 64 * 1024
RECOVERY_LIMIT = 1.0
RECOVERY_TIMEOUT = 30.0
COOLDOWN = 1.5
LINES_PER_TICK = 5
TICK = 0.05  # 100 lines/s per writer: the default logger's 10 archives of 1 MB keep 10 min

WRITER = r'''
import os, sys, time
name = sys.argv[1]
run = "%d.%d" % (os.getpid(), time.time_ns())
progress = os.open(os.path.join(sys.argv[2], run), os.O_WRONLY | os.O_CREAT, 0o644)
n = 0
while True:
    for _ in range(LINES):
        n += 1
        os.write(1, ("%s %s %d\n" % (name, run, n)).encode())
        os.pwrite(progress, b"%12d" % n, 0)
    time.sleep(TICK)
'''.replace("LINES", str(LINES_PER_TICK)).replace("TICK", str(TICK))


def build():
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "svscan", "-p", "supervise",
                    "-p", "logger", "-p", "svctl"], cwd=ROOT, check=True)
    bindir = os.path.join(target, "release")
    for name in ("svscan", "supervise", "logger", "svctl"):
        if not os.path.exists(os.path.join(bindir, name)):
            sys.exit(f"soak: {bindir}/{name} is missing after the build")
    return bindir


# --- /proc ----------------------------------------------------------------------------------

def stat_of(pid):
    """(comm, state, ppid) of a process, or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return None
    comm = s[s.index("(") + 1:s.rindex(")")]
    rest = s[s.rindex(")") + 2:].split()
    return comm, rest[0], int(rest[1])


def pids():
    return [int(e) for e in os.listdir("/proc") if e.isdigit()]


def cwd_of(pid):
    try:
        return os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return None


def fd_count(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def pidfd_count(pid):
    n = 0
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == "anon_inode:[pidfd]":
                    n += 1
            except OSError:
                pass
    except OSError:
        return None
    return n


def rss_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def alive(pid):
    s = stat_of(pid)
    return s is not None and s[1] != "Z"


def fifo_has_reader(path):
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:
        return False
    os.close(fd)
    return True


def status_of(svdir):
    """(state, pid) from supervise/status: state 0 down, 1 run, 2 finish."""
    try:
        with open(os.path.join(svdir, "supervise/status"), "rb") as f:
            b = f.read()
    except OSError:
        return None
    if len(b) < 20:
        return None
    return b[19], int.from_bytes(b[12:16], "little")


# --- the soak -------------------------------------------------------------------------------

class Soak:
    def __init__(self, args, bindir, base):
        self.args = args
        self.bindir = bindir
        self.base = base
        self.scandir = os.path.join(base, "service")
        self.progress = os.path.join(base, "progress")
        self.rng = random.Random(args.seed)
        self.lock = threading.Lock()
        self.svscan = None
        self.svscan_starts = 0
        self.stopping = False
        self.wanted_down = set()
        self.kills = {"svscan": 0, "supervise": 0, "logger": 0, "service": 0}
        self.svctl = {"down": 0, "up": 0, "restart": 0}
        self.svctl_failures = []
        self.logger_kills = {}
        self.recoveries = []  # (seconds, what)
        self.slow = []
        self.stuck = []
        self.samples = []  # (t, svscan fds, svscan rss, [supervisor fds], [supervisor rss])
        self.exited = {}
        self.last_action = {}  # svdir (or "svscan") -> monotonic time of its last action
        self.lingering = set()
        self.t0 = None

    # The tree.
    def make_tree(self):
        os.makedirs(self.scandir)
        os.makedirs(self.progress)
        writer = os.path.join(self.base, "writer.py")
        with open(writer, "w") as f:
            f.write(WRITER)
        for i in range(SERVICES):
            name = f"w{i:02d}" if i < WRITERS else f"s{i:02d}"
            d = os.path.join(self.scandir, name)
            os.makedirs(d)
            if i < WRITERS:
                os.makedirs(os.path.join(self.progress, name))
                os.makedirs(os.path.join(d, "log"))  # no log/run: the default logger
                body = f'exec python3 {writer} {name} {self.progress}/{name}'
            else:
                body = "exec sleep 100000"
            with open(os.path.join(d, "run"), "w") as f:
                f.write("#!/bin/sh\n" + body + "\n")
            os.chmod(os.path.join(d, "run"), 0o755)
        self.names = sorted(os.listdir(self.scandir))
        self.svdirs = [os.path.join(self.scandir, n) for n in self.names]
        self.svdirs += [os.path.join(self.scandir, n, "log") for n in self.names
                        if n.startswith("w")]

    def start_svscan(self):
        out = open(os.path.join(self.base, "svscan.log"), "ab")
        self.svscan = subprocess.Popen(
            [os.path.join(self.bindir, "svscan"), self.scandir], stdin=subprocess.DEVNULL,
            stdout=out, stderr=out, cwd=self.base)
        out.close()
        self.svscan_starts += 1

    # Process 1's duties: reap everything, and restart svscan when it dies. Exit statuses
    # of our own children (svctl) are kept for whoever waits for them.
    def reaper(self):
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                pid, status = 0, 0
            if pid == 0:
                time.sleep(0.005)
                continue
            with self.lock:
                self.exited[pid] = status
                if self.svscan is not None and pid == self.svscan.pid:
                    self.svscan.returncode = status
                    if self.stopping:
                        self.svscan = None
                    else:
                        self.start_svscan()

    def svctl_cmd(self, *words):
        """Runs svctl; (exit code, stderr)."""
        err = tempfile.TemporaryFile()
        with self.lock:
            proc = subprocess.Popen([os.path.join(self.bindir, "svctl"), "-d", self.scandir,
                                     *words], stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.monotonic() + 30
        while proc.pid not in self.exited and time.monotonic() < deadline:
            time.sleep(0.002)
        with self.lock:
            status = self.exited.pop(proc.pid, None)
        proc.returncode = 0
        err.seek(0)
        text = err.read().decode(errors="replace").strip()
        err.close()
        if status is None:
            return None, "svctl did not exit within 30 s"
        return os.waitstatus_to_exitcode(status), text

    # Who is who in the tree.
    def processes(self):
        """{kind: [(pid, svdir)]} for svscan, supervise, logger and service processes."""
        out = {"svscan": [], "supervise": [], "logger": [], "service": []}
        prefix = self.scandir + "/"
        for pid in pids():
            if pid == 1:
                continue
            s = stat_of(pid)
            if s is None or s[1] == "Z":
                continue
            comm, cwd = s[0], cwd_of(pid)
            if comm == "svscan":
                out["svscan"].append((pid, None))
            elif cwd and cwd.startswith(prefix):
                kind = {"supervise": "supervise", "logger": "logger"}.get(comm, "service")
                if kind == "service" and comm not in ("sleep", "python3"):
                    continue  # a `run` still in sh
                out[kind].append((pid, cwd))
        return out

    def wanted_up(self, svdir):
        return svdir not in self.wanted_down

    def down_services(self, killed=frozenset()):
        """What is not as it should be: svscan, supervisors, services wanted up."""
        bad = []
        if self.svscan is None or not fifo_has_reader(
                os.path.join(self.scandir, ".svscan/control")):
            bad.append("svscan")
        for d in self.svdirs:
            if not fifo_has_reader(os.path.join(d, "supervise/ok")):
                bad.append(f"supervise {os.path.relpath(d, self.scandir)}")
                continue
            if not self.wanted_up(d):
                continue
            st = status_of(d)
            if st is None or st[0] != 1 or st[1] == 0 or st[1] in killed or not alive(st[1]):
                bad.append(os.path.relpath(d, self.scandir))
        return bad

    def wait_recovered(self, what, killed=frozenset()):
        start = time.monotonic()
        late = None
        while True:
            bad = self.down_services(killed)
            took = time.monotonic() - start
            if not bad:
                self.recoveries.append((took, what))
                if took > RECOVERY_LIMIT:
                    self.slow.append((round(took, 3), what, late))
                return took
            if late is None and took > RECOVERY_LIMIT:
                late = ", ".join(bad[:3]) + f" (load {os.getloadavg()[0]:.1f})"
            if took > RECOVERY_TIMEOUT:
                self.stuck.append((what, bad[:5]))
                self.recoveries.append((took, what))
                return took
            time.sleep(0.005)

    def sample(self):
        """fds and RSS of svscan and every supervisor, when all is up and nothing is wanted
        down (a supervisor of a down service holds fewer fds). svscan's pidfds are counted
        apart: it holds one for each supervisor it adopted, so their number depends on how
        long ago it was last restarted, not on leaks."""
        if self.wanted_down:
            return
        procs = self.processes()
        if len(procs["svscan"]) != 1 or len(procs["supervise"]) != len(self.svdirs):
            return
        sv = procs["svscan"][0][0]
        sup = [p for p, _ in procs["supervise"]]
        fds = [fd_count(p) for p in sup]
        rss = [rss_kb(p) for p in sup]
        sv_fds, sv_pidfds, sv_rss = fd_count(sv), pidfd_count(sv), rss_kb(sv)
        if None in fds or None in rss or None in (sv_fds, sv_pidfds, sv_rss):
            return
        self.samples.append((time.monotonic() - self.t0, sv_fds - sv_pidfds, sv_rss, fds, rss,
                             sv_pidfds))

    def dump_fds(self, name):
        """What each supervisor and svscan holds, for a look at a growth (--keep)."""
        out = {}
        for kind in ("svscan", "supervise"):
            for pid, d in self.processes()[kind]:
                fds = {}
                try:
                    for fd in os.listdir(f"/proc/{pid}/fd"):
                        try:
                            fds[fd] = os.readlink(f"/proc/{pid}/fd/{fd}")
                        except OSError:
                            pass
                except OSError:
                    continue
                out[f"{kind} {os.path.relpath(d, self.scandir) if d else ''} {pid}"] = fds
        with open(os.path.join(self.base, name), "w") as f:
            json.dump(out, f, indent=1, sort_keys=True)

    def zombie_watch(self):
        seen_before = set()
        while not self.stopping:
            now = set()
            for pid in pids():
                s = stat_of(pid)
                if s and s[1] == "Z" and s[2] != 1:
                    now.add((pid, s[0], s[2]))
            for z in now & seen_before:
                parent = stat_of(z[2])
                self.lingering.add((z[0], z[1], parent[0] if parent else "?"))
            seen_before = now
            time.sleep(1.0)

    # The driver's actions.
    def cooled(self, key):
        """Not touched in the last COOLDOWN s: supervise (and svscan for supervisors) throttle
        a restart after a run shorter than 1 s, by design; that is not what is measured."""
        return time.monotonic() - self.last_action.get(key, -1e9) >= COOLDOWN

    def kill(self, kind):
        procs = self.processes()[kind]
        if kind == "svscan":
            procs = [(p, "svscan") for p, _ in procs if self.cooled("svscan")]
        else:
            procs = [(p, d) for p, d in procs if d in self.svdirs and self.cooled(d)]
        if kind in ("service", "logger"):
            procs = [(p, d) for p, d in procs if self.wanted_up(d)]
        if not procs:
            return None
        pid, d = self.rng.choice(procs)
        killed = {pid}
        if kind == "supervise":
            # Its service runs on, orphaned, until the next supervisor stops it and starts a
            # new run: wait for that one.
            st = status_of(d)
            if st and st[1]:
                killed.add(st[1])
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return None
        self.last_action[d] = time.monotonic()
        self.kills[kind] += 1
        if kind == "logger":
            writer = os.path.basename(os.path.dirname(d))
            self.logger_kills[writer] = self.logger_kills.get(writer, 0) + 1
        where = "" if d == "svscan" else os.path.relpath(d, self.scandir)
        return f"SIGKILL {kind} {where}".strip(), killed, d

    def control(self):
        choices = [d for d in self.svdirs if self.cooled(d)]
        down = [d for d in choices if d in self.wanted_down]
        if down and self.rng.random() < 0.5:
            choices = down
        if not choices:
            return None
        d = self.rng.choice(choices)
        name = os.path.relpath(d, self.scandir)
        if d in self.wanted_down:
            verb = "up"
        else:
            verb = self.rng.choice(["down", "up", "restart", "restart"])
        killed = set()
        st = status_of(d)
        if verb == "restart" and st and st[1]:
            killed.add(st[1])  # back up means a new run
        code, err = self.svctl_cmd(verb, name)
        if code != 0:
            self.svctl_failures.append(f"svctl {verb} {name}: exit {code}: {err}")
        self.last_action[d] = time.monotonic()
        self.svctl[verb] += 1
        if verb == "down":
            self.wanted_down.add(d)
        else:
            self.wanted_down.discard(d)
        return f"svctl {verb} {name}", killed, d

    def run(self):
        self.make_tree()
        with self.lock:
            self.start_svscan()
        threading.Thread(target=self.reaper, daemon=True).start()
        self.t0 = time.monotonic()
        first = self.wait_recovered("start")
        print(f"soak: {len(self.svdirs)} supervised dirs up in {first:.3f} s; "
              f"{self.args.minutes} min of chaos", flush=True)
        self.recoveries.clear()
        self.slow.clear()
        # The supervisors and services just started: let them age past the restart throttle.
        time.sleep(COOLDOWN)
        self.dump_fds("fds-first.json")
        threading.Thread(target=self.zombie_watch, daemon=True).start()
        end = self.t0 + self.args.minutes * 60
        last_sample = 0
        last_report = time.monotonic()
        actions = [("svscan", 1), ("supervise", 6), ("logger", 5), ("service", 8),
                   ("svctl", 4)]
        kinds = [k for k, w in actions for _ in range(w)]
        while time.monotonic() < end:
            time.sleep(self.rng.uniform(0, 0.6))
            kind = self.rng.choice(kinds)
            done = self.control() if kind == "svctl" else self.kill(kind)
            if done is None:
                continue
            what, killed, key = done
            self.wait_recovered(what, killed)
            self.last_action[key] = time.monotonic()
            now = time.monotonic()
            if now - last_sample >= 5:
                n = len(self.samples)
                self.sample()
                if len(self.samples) > n:
                    last_sample = now
            if now - last_report >= 60:
                worst = max((r[0] for r in self.recoveries), default=0)
                print(f"soak: {int(now - self.t0)} s: {sum(self.kills.values())} kills, "
                      f"{sum(self.svctl.values())} svctl, worst recovery {worst:.3f} s",
                      flush=True)
                last_report = now
        self.duration = time.monotonic() - self.t0
        # Everything up again, then stop the writers first so the logs hold every run whole.
        for d in list(self.wanted_down):
            self.svctl_cmd("up", os.path.relpath(d, self.scandir))
        self.wanted_down.clear()
        self.wait_recovered("final up")
        self.sample()
        self.dump_fds("fds-last.json")
        self.shutdown()

    def shutdown(self):
        self.stopping = True
        with open(os.path.join(self.scandir, ".svscan/control"), "wb") as f:
            f.write(b"t")
        deadline = time.monotonic() + 120
        while self.svscan is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        self.shutdown_ok = self.svscan is None
        time.sleep(0.5)
        self.left_running = []
        for pid in pids():
            if pid != 1 and alive(pid):
                s = stat_of(pid)
                self.left_running.append((pid, s[0] if s else "?", cwd_of(pid)))
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass

    # The verdict.
    def check_logs(self):
        lines = {}
        for i in range(WRITERS):
            name = f"w{i:02d}"
            main = os.path.join(self.scandir, name, "log", "main")
            files = sorted(f for f in os.listdir(main) if f.startswith("@")) + ["current"]
            for fname in files:
                path = os.path.join(main, fname)
                if not os.path.exists(path):
                    continue
                with open(path, "rb") as f:
                    for raw in f:
                        parts = raw.split()
                        if len(parts) != 4:
                            continue
                        _, who, run, n = parts
                        key = (who.decode(), run.decode())
                        lines.setdefault(key, []).append(int(n))
        total = dups = dup_bytes = missing = 0
        dup_by_writer = {}
        missing_examples = []
        runs = 0
        for i in range(WRITERS):
            name = f"w{i:02d}"
            pdir = os.path.join(self.progress, name)
            for run in os.listdir(pdir):
                runs += 1
                with open(os.path.join(pdir, run), "rb") as f:
                    recorded = int(f.read().strip() or 0)
                seen = lines.get((name, run), [])
                total += len(seen)
                distinct = set(seen)
                top = max(distinct, default=0)
                gap = [n for n in range(1, max(top, recorded) + 1) if n not in distinct]
                missing += len(gap)
                if gap and len(missing_examples) < 5:
                    missing_examples.append(f"{name} run {run}: {gap[:5]} (of {top})")
                d = len(seen) - len(distinct)
                dups += d
                size = len(f"{name} {run} {top}\n")
                dup_by_writer[name] = dup_by_writer.get(name, 0) + d * size
                dup_bytes += d * size
        over = {w: (b, self.logger_kills.get(w, 0) * PIPE_BUFFER)
                for w, b in dup_by_writer.items()
                if b > self.logger_kills.get(w, 0) * PIPE_BUFFER}
        return {"lines": total, "runs": runs, "missing": missing,
                "missing_examples": missing_examples, "duplicates": dups,
                "duplicate_bytes": dup_bytes, "over_bound": over}

    def memory(self):
        if not self.samples:
            return None
        span = min(60.0, self.duration / 2)
        first = [s for s in self.samples if s[0] <= span] or self.samples[:1]
        last = [s for s in self.samples if s[0] >= self.duration - span] or self.samples[-1:]

        def med(group, f):
            return statistics.median(f(s) for s in group)
        out = {}
        for label, f in [("svscan fds (pidfds of adopted supervisors apart)", lambda s: s[1]),
                         ("svscan pidfds of adopted supervisors", lambda s: s[5]),
                         ("svscan RSS KiB", lambda s: s[2]),
                         ("supervise fds (sum)", lambda s: sum(s[3])),
                         ("supervise fds (max)", lambda s: max(s[3])),
                         ("supervise RSS KiB (mean)", lambda s: sum(s[4]) / len(s[4])),
                         ("supervise RSS KiB (max)", lambda s: max(s[4]))]:
            out[label] = (med(first, f), med(last, f))
        return out


def fmt_row(cells):
    return "| " + " | ".join(str(c) for c in cells) + " |"


def report(soak, logs, mem):
    rec = [r[0] for r in soak.recoveries]
    worst = max(soak.recoveries, default=(0, "none"))
    kills = sum(soak.kills.values())
    failures = []
    if logs["missing"]:
        failures.append(f"{logs['missing']} numbered lines missing: {logs['missing_examples']}")
    if logs["over_bound"]:
        failures.append(f"duplicates over one pipe buffer per logger kill: {logs['over_bound']}")
    if soak.lingering:
        failures.append(f"zombies that lingered: {sorted(soak.lingering)[:5]}")
    if soak.slow:
        failures.append(f"{len(soak.slow)} recoveries over {RECOVERY_LIMIT} s: "
                        f"{sorted(soak.slow, reverse=True)[:5]}")
    if soak.stuck:
        failures.append(f"not back after {RECOVERY_TIMEOUT} s: {soak.stuck[:3]}")
    if not soak.shutdown_ok:
        failures.append("svscan did not exit after shutdown")
    if soak.left_running:
        failures.append(f"left running after shutdown: {soak.left_running[:5]}")
    flat = []
    if mem:
        for label, (a, b) in mem.items():
            # The sum grows by one per supervisor at its service's first stop (cgroup.events
            # is opened then and kept): a bounded step, not a leak; the max would show one.
            if "fds" in label and not label.startswith("svscan pidfds") and \
                    "(sum)" not in label and b > a:
                flat.append(f"{label} {a} -> {b}")
            if "RSS" in label and b > a * 1.10 + 64:
                flat.append(f"{label} {a:.0f} -> {b:.0f}")
    if flat:
        failures.append("not flat: " + "; ".join(flat))
    load = os.getloadavg()
    out = [f"Chaos soak, {soak.duration / 60:.1f} min, seed {soak.args.seed}, "
           f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} on {os.cpu_count()} CPUs "
           f"({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})", "",
           fmt_row(["what", "figure"]), fmt_row(["---", "---"]),
           fmt_row(["services (of them writing through log/)", f"{SERVICES} ({WRITERS})"]),
           fmt_row(["SIGKILLs: svscan / supervise / logger / service",
                    " / ".join(str(soak.kills[k]) for k in
                               ("svscan", "supervise", "logger", "service"))]),
           fmt_row(["svctl down / up / restart",
                    " / ".join(str(soak.svctl[k]) for k in ("down", "up", "restart"))]),
           fmt_row(["numbered lines logged (writer runs)", f"{logs['lines']} ({logs['runs']})"]),
           fmt_row(["lines missing", logs["missing"]]),
           fmt_row(["duplicate lines (bytes; bound: 64 KiB x logger kills)",
                    f"{logs['duplicates']} ({logs['duplicate_bytes']} B; "
                    f"bound {soak.kills['logger'] * PIPE_BUFFER} B)"]),
           fmt_row(["zombies that lingered (seen twice 1 s apart)", len(soak.lingering)]),
           fmt_row(["back up after an action: median / p99 / worst",
                    f"{statistics.median(rec) * 1000:.0f} ms / "
                    f"{sorted(rec)[int(len(rec) * 0.99) - 1] * 1000 if rec else 0:.0f} ms / "
                    f"{worst[0] * 1000:.0f} ms ({worst[1]})" if rec else "-"]),
           fmt_row(["recoveries over 1 s", len(soak.slow)]),
           fmt_row(["svscan restarts by the harness", soak.svscan_starts - 1])]
    if mem:
        for label, (a, b) in mem.items():
            out.append(fmt_row([f"{label}: first minute -> last minute",
                                f"{a:.0f} -> {b:.0f}"]))
    out.append("")
    out.append("Result: " + ("PASS" if not failures else "FAIL"))
    for f in failures:
        out.append(f"  - {f}")
    if soak.svctl_failures:
        out.append(f"  (svctl errors, not counted: {soak.svctl_failures[:3]})")
    return "\n".join(out) + "\n", not failures


def make_cgroup():
    """A cgroup v2 of the soak's own, with this process in it; None without cgroup2."""
    try:
        with open("/proc/self/mountinfo") as f:
            mounts = [l.split(" - ")[0].split()[4] for l in f
                      if " - " in l and l.split(" - ")[1].startswith("cgroup2 ")]
    except OSError:
        return None
    if not mounts:
        return None
    with open("/proc/self/cgroup") as f:
        own = next((l[3:].strip() for l in f if l.startswith("0::")), "/")
    path = os.path.join(mounts[0], own.lstrip("/"), f"warden-soak-{os.getppid()}-{time.time_ns()}")
    try:
        os.mkdir(path)
        with open(os.path.join(path, "cgroup.procs"), "w") as f:
            f.write("0")
    except OSError as e:
        print(f"soak: warning: no cgroup of its own ({e}); supervise makes its cgroups beside",
              file=sys.stderr)
        return None
    return path


def remove_cgroup(path):
    if not path:
        return
    parent = os.path.dirname(path)
    with open(os.path.join(parent, "cgroup.procs"), "w") as f:
        f.write("0")
    deadline = time.monotonic() + 10
    while os.path.exists(path) and time.monotonic() < deadline:
        for dirpath, dirs, _ in sorted(os.walk(path), key=lambda w: -w[0].count("/")):
            try:
                os.rmdir(dirpath)
            except OSError:
                pass
        time.sleep(0.05)
    if os.path.exists(path):
        print(f"soak: warning: could not remove {path}", file=sys.stderr)


def inner(args):
    cgroup = make_cgroup()
    base = tempfile.mkdtemp(prefix="warden-soak-")
    bindir = os.environ["SOAK_BINDIR"]
    soak = Soak(args, bindir, base)
    try:
        soak.run()
        logs = soak.check_logs()
        mem = soak.memory()
        text, ok = report(soak, logs, mem)
        print(text, end="")
        os.makedirs(os.path.join(ROOT, "bench/results"), exist_ok=True)
        with open(os.path.join(ROOT, "bench/results/soak.md"), "w") as f:
            f.write(text)
        with open(os.path.join(base, "recoveries.json"), "w") as f:
            json.dump(soak.recoveries, f)
    finally:
        for pid in pids():
            if pid != 1:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        while True:
            try:
                os.waitpid(-1, 0)
            except ChildProcessError:
                break
        remove_cgroup(cgroup)
        if args.keep:
            print(f"soak: tree kept in {base} (svscan.log there)")
        else:
            shutil.rmtree(base, ignore_errors=True)
    sys.exit(0 if ok else 1)


def main():
    p = argparse.ArgumentParser(prog="bench/run soak")
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--keep", action="store_true", help="keep the tree and its logs")
    p.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.seed is None:
        args.seed = random.randrange(1 << 32)
    if args.inner:
        return inner(args)
    if os.geteuid() != 0:
        sys.exit("soak: run as root (a pid and mount namespace of its own, cgroups)")
    bindir = build()
    cmd = ["unshare", "--pid", "--fork", "--mount", "--propagation", "private", "--mount-proc",
           sys.executable, os.path.abspath(__file__), "--inner", "--minutes", str(args.minutes),
           "--seed", str(args.seed)] + (["--keep"] if args.keep else [])
    env = dict(os.environ, SOAK_BINDIR=bindir, PATH=bindir + ":" + os.environ.get("PATH", ""))
    sys.exit(subprocess.run(cmd, env=env).returncode)


if __name__ == "__main__":
    main()
