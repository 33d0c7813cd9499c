#!/usr/bin/env python3
"""warden's supervise against runit's runsv and s6-supervise, side by side in one run.

  bench/run supervise        (or: python3 bench/supervise.py [--quick])

Measures, on this machine:
  1. memory per supervisor: N=100 supervisors, each running `sleep`; medians of Rss, Pss and
     Private (Private_Clean + Private_Dirty) from /proc/PID/smaps_rollup. warden is built three
     ways (dynamic PIE, static PIE, static non-PIE) to find the cheapest;
  2. idle wakeups: voluntary + nonvoluntary context switches of those supervisors over 10 s;
  3. control round trip: `down` then `up`, each until the client returns (svctl -w / sv -w /
     s6-svc -wd -wu);
  4. restart latency: SIGKILL of a service that has been up for over a second, to the new
     run's first action (the run script writing a byte to a FIFO the bench reads);
  5. issue 17 (service-dir limits): this tree's supervise against main's (git archive of the
     `main` branch, built the same way), the settings absent: memory per supervisor and restart
     latency, interleaved A/B; and the restart latency with every setting present (memory.max,
     memory.high, memory.swap.max, pids.max, cpu.max, cpu.weight, io.weight, user, limits,
     nice, umask, restart-limit): the cost of a start with all limits set.
Prints a table and writes it to bench/results/supervise.md.
  --issue17   only part 5.
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
TARGET = os.environ.get("CARGO_TARGET_DIR_BENCH", "/work/target-sup/bench")
QUICK = "--quick" in sys.argv
N = 20 if QUICK else 100
ROUNDS = 5 if QUICK else 20
IDLE_SECONDS = 3 if QUICK else 10

VARIANTS = {
    "dynamic PIE": "",
    "static PIE": "-C target-feature=+crt-static",
    "static non-PIE": "-C target-feature=+crt-static -C relocation-model=static",
}


def build(only=None):
    """Builds supervise once per variant (and svctl), each in a target dir of its own."""
    bins = {}
    for name, flags in VARIANTS.items():
        if only and name not in only:
            continue
        target = os.path.join(TARGET, name.replace(" ", "-"))
        env = dict(os.environ, CARGO_TARGET_DIR=target, RUSTFLAGS=flags)
        subprocess.run(
            ["cargo", "build", "--quiet", "--release", "-p", "supervise"],
            cwd=ROOT, env=env, check=True,
        )
        bins[name] = os.path.join(target, "release", "supervise")
    svctl = None
    target = os.path.join(TARGET, "dynamic-PIE")
    env = dict(os.environ, CARGO_TARGET_DIR=target, RUSTFLAGS="")
    if subprocess.run(["cargo", "build", "--quiet", "--release", "-p", "svctl"],
                      cwd=ROOT, env=env).returncode == 0:
        svctl = os.path.join(target, "release", "svctl")
    # Freshly written binaries sit dirty in the page cache and their mapped pages would count
    # as private; written back, they are shared clean pages like any installed binary's.
    os.sync()
    return bins, svctl


class Fleet:
    """N supervisors of one kind, each over a service dir running `run_body`."""

    def __init__(self, argv0, n, run_body, root, files=None):
        self.argv0 = argv0
        self.dirs = []
        self.procs = []
        for i in range(n):
            d = os.path.join(root, f"s{i}")
            os.makedirs(d)
            with open(os.path.join(d, "run"), "w") as f:
                f.write("#!/bin/sh\n" + run_body + "\n")
            os.chmod(os.path.join(d, "run"), 0o755)
            for name, text in (files or {}).items():
                with open(os.path.join(d, name), "w") as f:
                    f.write(text)
            self.dirs.append(d)
        for d in self.dirs:
            self.procs.append(subprocess.Popen(
                argv0 + [d], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, start_new_session=True))

    def wait_up(self, timeout=30):
        deadline = time.monotonic() + timeout
        for d in self.dirs:
            while service_pid(d) == 0:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{d} did not come up under {self.argv0}")
                time.sleep(0.01)

    def stop(self):
        pids = [service_pid(d) for d in self.dirs]
        for p in self.procs:
            try:
                p.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for pid in pids:
            if pid:
                try:
                    os.killpg(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass


def service_pid(d):
    """The service's pid from runit's supervise/pid or s6's 35-byte status, else 0."""
    try:
        with open(os.path.join(d, "supervise", "pid")) as f:
            return int(f.read().strip() or 0)
    except (FileNotFoundError, ValueError):
        pass
    try:
        with open(os.path.join(d, "supervise", "status"), "rb") as f:
            b = f.read()
        if len(b) >= 35:
            flags = b[34]
            pid = int.from_bytes(b[24:32], "big")
            return 0 if flags & 2 else pid
    except FileNotFoundError:
        pass
    return 0


def smaps(pid):
    out = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 2 and parts[0].endswith(":"):
                try:
                    out[parts[0][:-1]] = int(parts[1])
                except ValueError:
                    pass
    return out


def ctxt(pid):
    total = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                total += int(line.split()[1])
    return total


def memory_and_idle(kinds):
    """Memory and idle context switches of N supervisors per kind, all alive at once."""
    results = {}
    fleets = {}
    tmp = tempfile.mkdtemp(prefix="bench-supervise-")
    try:
        for name, argv0 in kinds.items():
            fleets[name] = Fleet(argv0, N, "exec sleep 1000000",
                                 os.path.join(tmp, name.replace(" ", "-")))
        for fleet in fleets.values():
            fleet.wait_up()
        time.sleep(1)  # let every supervisor finish its start-up writes
        before = {name: [ctxt(p.pid) for p in f.procs] for name, f in fleets.items()}
        time.sleep(IDLE_SECONDS)
        for name, fleet in fleets.items():
            after = [ctxt(p.pid) for p in fleet.procs]
            rolls = [smaps(p.pid) for p in fleet.procs]
            results[name] = {
                "rss": statistics.median(r["Rss"] for r in rolls),
                "pss": statistics.median(r["Pss"] for r in rolls),
                "private": statistics.median(
                    r.get("Private_Clean", 0) + r.get("Private_Dirty", 0) for r in rolls),
                "wakeups": sum(a - b for a, b in zip(after, before[name])),
            }
    finally:
        for fleet in fleets.values():
            fleet.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return results


def round_trips(cases):
    """Median seconds of `down` then `up`, each until the client returns, per case. The cases
    take turns round by round, so a busy moment of the machine hits them all alike."""
    tmp = tempfile.mkdtemp(prefix="bench-rt-")
    fleets = {}
    try:
        for label, (argv0, down, up) in cases.items():
            fleets[label] = Fleet(argv0, 1, "exec sleep 1000000",
                                  os.path.join(tmp, label.replace(" ", "-")))
        for fleet in fleets.values():
            fleet.wait_up()
        time.sleep(1.1)
        times = {label: [] for label in cases}
        for _ in range(ROUNDS):
            for label, (_, down, up) in cases.items():
                d = fleets[label].dirs[0]
                t0 = time.monotonic()
                subprocess.run(down + [d], check=True, stdout=subprocess.DEVNULL)
                subprocess.run(up + [d], check=True, stdout=subprocess.DEVNULL)
                times[label].append(time.monotonic() - t0)
            # Past the 1 s quick-death rule of all three, so no throttle is measured.
            time.sleep(1.05)
        return {label: statistics.median(t) for label, t in times.items()}
    finally:
        for fleet in fleets.values():
            fleet.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def raw_state(d):
    """'up', 'down' or None from runit's 20-byte or s6's 35-byte status file."""
    try:
        with open(os.path.join(d, "supervise", "status"), "rb") as f:
            b = f.read()
    except FileNotFoundError:
        return None
    if len(b) == 20:
        pid = int.from_bytes(b[12:16], "little")
        return "up" if pid and b[19] == 1 else ("down" if not pid and b[19] == 0 else None)
    if len(b) >= 35:
        pid = int.from_bytes(b[24:32], "big")
        finishing = b[34] & 2
        return "up" if pid and not finishing else ("down" if not pid and not finishing else None)
    return None


def raw_round_trips(kinds):
    """The supervisor's own share: the bench writes `d` (then `u`) to supervise/control and
    re-reads the status file until it says down (then up). No client process is involved."""
    tmp = tempfile.mkdtemp(prefix="bench-raw-")
    fleets = {}
    try:
        for name, argv0 in kinds.items():
            fleets[name] = Fleet(argv0, 1, "exec sleep 1000000", os.path.join(tmp, name))
        for fleet in fleets.values():
            fleet.wait_up()
        time.sleep(1.1)
        times = {name: [] for name in kinds}
        for _ in range(ROUNDS):
            for name in kinds:
                d = fleets[name].dirs[0]
                fd = os.open(os.path.join(d, "supervise", "control"), os.O_WRONLY | os.O_NONBLOCK)
                t0 = time.monotonic()
                for byte, goal in ((b"d", "down"), (b"u", "up")):
                    os.write(fd, byte)
                    deadline = time.monotonic() + 5
                    while raw_state(d) != goal:
                        if time.monotonic() > deadline:
                            raise RuntimeError(f"{name}: not {goal} within 5 s")
                times[name].append(time.monotonic() - t0)
                os.close(fd)
            time.sleep(1.05)
        return {name: statistics.median(t) for name, t in times.items()}
    finally:
        for fleet in fleets.values():
            fleet.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def restart_latencies(kinds):
    """Median seconds from SIGKILL of a service up for over a second to its new run's first
    byte on a FIFO, per kind; kinds take turns round by round."""
    tmp = tempfile.mkdtemp(prefix="bench-restart-")
    fleets, readers, keep = {}, {}, []
    try:
        for name, argv0 in kinds.items():
            fifo = os.path.join(tmp, name + ".fifo")
            os.mkfifo(fifo)
            readers[name] = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
            keep.append(os.open(fifo, os.O_WRONLY))  # never EOF between runs
            fleets[name] = Fleet(argv0, 1, f"printf x > {fifo}\nexec sleep 1000000",
                                 os.path.join(tmp, name))

        def next_byte(name, timeout):
            p = select.poll()
            p.register(readers[name], select.POLLIN)
            if not p.poll(timeout * 1000):
                raise RuntimeError(f"{name}: no start within {timeout}s")
            os.read(readers[name], 1)

        for name in kinds:
            next_byte(name, 10)
        times = {name: [] for name in kinds}
        for _ in range(ROUNDS):
            time.sleep(1.3)  # up for over a second: no throttle anywhere
            for name in kinds:
                pid = service_pid(fleets[name].dirs[0])
                t0 = time.monotonic()
                os.kill(pid, signal.SIGKILL)
                next_byte(name, 10)
                times[name].append(time.monotonic() - t0)
        return {name: statistics.median(t) for name, t in times.items()}
    finally:
        for fleet in fleets.values():
            fleet.stop()
        for fd in list(readers.values()) + keep:
            os.close(fd)
        shutil.rmtree(tmp, ignore_errors=True)


def build_main():
    """main's supervise, from `git archive` of the main branch, built as this tree's dynamic
    PIE; None when there is no main branch."""
    for ref in ("main", "origin/main"):
        if subprocess.run(["git", "rev-parse", "--verify", "--quiet", ref], cwd=ROOT,
                          stdout=subprocess.DEVNULL).returncode == 0:
            break
    else:
        return None, None
    commit = subprocess.run(["git", "rev-parse", "--short", ref], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout.strip()
    src = os.path.join(TARGET, "main-src")
    shutil.rmtree(src, ignore_errors=True)
    os.makedirs(src)
    archive = subprocess.Popen(["git", "archive", ref], cwd=ROOT, stdout=subprocess.PIPE)
    subprocess.run(["tar", "-x", "-C", src], stdin=archive.stdout, check=True)
    archive.wait()
    target = os.path.join(TARGET, "main")
    env = dict(os.environ, CARGO_TARGET_DIR=target, RUSTFLAGS="")
    subprocess.run(["cargo", "build", "--quiet", "--release", "-p", "supervise"],
                   cwd=src, env=env, check=True)
    os.sync()
    return os.path.join(target, "release", "supervise"), commit


# Every issue 17 setting, at values that hold nothing back (what is measured is the cost of
# reading, checking and writing them at each start, not of a limit biting).
ALL_LIMITS = {
    "memory.max": "1G\n",
    "memory.high": "1G\n",
    "memory.swap.max": "max\n",
    "pids.max": "1000\n",
    "cpu.max": "max 100000\n",
    "cpu.weight": "100\n",
    "io.weight": "default 100\n",
    "user": "nobody\n",
    "limits": "nofile 1024\ncore 0\nstack 8M\n",
    "nice": "0\n",
    "umask": "022\n",
    "restart-limit": "100 1m\n",
}


def restart_latencies_with(cases):
    """As restart_latencies, for cases of (argv, files in the service dir); the cases take
    turns round by round (interleaved A/B)."""
    tmp = tempfile.mkdtemp(prefix="bench-restart17-")
    os.chmod(tmp, 0o755)  # the `user` case runs as nobody: it must reach run and the FIFO
    fleets, readers, keep = {}, {}, []
    try:
        for i, (name, (argv0, files)) in enumerate(cases.items()):
            fifo = os.path.join(tmp, f"c{i}.fifo")
            os.mkfifo(fifo)
            os.chmod(fifo, 0o666)
            readers[name] = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
            keep.append(os.open(fifo, os.O_WRONLY))
            fleets[name] = Fleet(argv0, 1, f"printf x > {fifo}\nexec sleep 1000000",
                                 os.path.join(tmp, f"c{i}"), files)

        def next_byte(name, timeout):
            p = select.poll()
            p.register(readers[name], select.POLLIN)
            if not p.poll(timeout * 1000):
                raise RuntimeError(f"{name}: no start within {timeout}s")
            os.read(readers[name], 1)

        for name in cases:
            next_byte(name, 10)
        times = {name: [] for name in cases}
        for r in range(ROUNDS17):
            time.sleep(1.1)
            # The order turns too, so no case always comes first after the pause.
            names = list(cases)
            names = names[r % len(names):] + names[:r % len(names)]
            for name in names:
                pid = service_pid(fleets[name].dirs[0])
                t0 = time.monotonic()
                os.kill(pid, signal.SIGKILL)
                next_byte(name, 10)
                times[name].append(time.monotonic() - t0)
        medians = {name: statistics.median(t) for name, t in times.items()}
        # Paired: each case against the first one in the same round, the median of those
        # ratios; a busy moment of the machine hits both sides of a pair alike.
        first = list(cases)[0]
        paired = {name: statistics.median(a / b for a, b in zip(t, times[first]))
                  for name, t in times.items()}
        return medians, paired, times
    finally:
        for fleet in fleets.values():
            fleet.stop()
        for fd in list(readers.values()) + keep:
            os.close(fd)
        shutil.rmtree(tmp, ignore_errors=True)


ROUNDS17 = 10 if QUICK else 100
REPLICAS = 2 if QUICK else 4
CGROUP_KEYS = ("memory.max", "memory.high", "memory.swap.max", "pids.max", "cpu.max",
               "cpu.weight", "io.weight")


def issue17(this_bin):
    """Part 5: this tree against main, settings absent; and all settings present."""
    main_bin, commit = build_main()
    if main_bin is None:
        return ["## Issue 17: settings absent vs main", "", "(no main branch to compare with)", ""]
    # Memory: both fleets alive at once, three times, the order of their starts swapped.
    mems = {"main": [], "this": []}
    for rep in range(3):
        order = [("main", main_bin), ("this", this_bin)]
        if rep % 2:
            order.reverse()
        got = memory_and_idle({name: [path] for name, path in order})
        for name, _ in order:
            mems[name].append(got[name])
    pss = {n: statistics.median(m["pss"] for m in ms) for n, ms in mems.items()}
    private = {n: statistics.median(m["private"] for m in ms) for n, ms in mems.items()}
    # Each build over REPLICAS service dirs of its own: one supervisor alone shows a bias of
    # its own (up to 10 % between two of the same binary here), which the replicas average out.
    cases = {}
    for i in range(REPLICAS):
        cases[f"main #{i}"] = ([main_bin], {})
        cases[f"absent #{i}"] = ([this_bin], {})
    cases["all settings"] = ([this_bin], ALL_LIMITS)
    cases["no cgroup settings"] = ([this_bin], {k: v for k, v in ALL_LIMITS.items()
                                                if k not in CGROUP_KEYS})
    medians, _, times = restart_latencies_with(cases)

    def pooled(prefix):
        return statistics.median(t for name, ts in times.items() if name.startswith(prefix)
                                 for t in ts)

    rl = {
        "main": pooled("main #"),
        "this, settings absent": pooled("absent #"),
        "this, all settings": medians["all settings"],
        "this, no cgroup settings": medians["no cgroup settings"],
    }
    # Per round: the mean of this build's replicas over the mean of main's.
    rounds = len(times["main #0"])
    ratios = []
    for r in range(rounds):
        a = statistics.mean(times[f"absent #{i}"][r] for i in range(REPLICAS))
        m = statistics.mean(times[f"main #{i}"][r] for i in range(REPLICAS))
        ratios.append(a / m)
    paired = {"this, settings absent": statistics.median(ratios)}
    lines = [
        f"## Issue 17: settings absent vs main ({commit}), and a start with all of them",
        "",
        f"Memory: {N} supervisors of each build alive at once, medians, three repetitions. "
        f"Restart latency: {ROUNDS17} rounds, every case interleaved, each build over "
        f"{REPLICAS} service dirs (their samples pooled).",
        "",
        "| supervise | Pss kB | Private kB | restart latency ms |",
        "|---|---|---|---|",
        f"| main | {pss['main']:.0f} | {private['main']:.0f} | {rl['main'] * 1000:.2f} |",
        f"| this, settings absent | {pss['this']:.0f} | {private['this']:.0f} | "
        f"{rl['this, settings absent'] * 1000:.2f} |",
        f"| this, all settings | | | {rl['this, all settings'] * 1000:.2f} |",
        f"| this, user, limits, nice, umask, restart-limit only | | | "
        f"{rl['this, no cgroup settings'] * 1000:.2f} |",
        "",
        f"Ratios this/main with the settings absent: Pss {pss['this'] / pss['main']:.3f}, "
        f"Private {private['this'] / private['main']:.3f}, restart latency "
        f"{rl['this, settings absent'] / rl['main']:.3f} (median of the per-round ratios: "
        f"{paired['this, settings absent']:.3f}). A start with all settings costs "
        f"{(rl['this, all settings'] - rl['this, settings absent']) * 1000:.2f} ms more "
        f"({rl['this, all settings'] / rl['this, settings absent']:.2f}x); without the cgroup "
        f"files, {(rl['this, no cgroup settings'] - rl['this, settings absent']) * 1000:.2f} ms. "
        "Where the controllers are v1 (hybrid layout), the child's join of the v1 cgroups "
        "costs the kernel an RCU grace period; on cgroup2 the child is born in its cgroup.",
        "",
    ]
    return lines


def main():
    if "--issue17" in sys.argv:
        bins, _ = build(only=["dynamic PIE"])
        text = "\n".join(["# supervise benchmark, issue 17 part", ""] +
                         issue17(bins["dynamic PIE"]))
        print(text)
        os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
        with open(os.path.join(ROOT, "bench", "results", "supervise-issue17.md"), "w") as f:
            f.write(text)
        return
    for tool in ("runsv", "sv", "s6-supervise", "s6-svc"):
        if not shutil.which(tool):
            sys.exit(f"bench/supervise.py: {tool} is missing (apt-get install runit s6)")
    bins, svctl = build()
    kinds = {"runsv": ["runsv"], "s6-supervise": ["s6-supervise"]}
    for variant, path in bins.items():
        kinds[f"warden ({variant})"] = [path]
    mem = memory_and_idle(kinds)
    sizes = {name: os.path.getsize(shutil.which(argv[0]) or argv[0]) for name, argv in kinds.items()}

    best = min(bins, key=lambda v: mem[f"warden ({v})"]["private"])
    warden = [bins[best]]
    if svctl:
        warden_client = ("svctl -w 5", [svctl, "-w", "5", "down"], [svctl, "-w", "5", "up"])
    else:
        warden_client = ("sv -w 5 (svctl not built)", ["sv", "-w", "5", "down"],
                         ["sv", "-w", "5", "up"])
    sv_w = (["sv", "-w", "5", "down"], ["sv", "-w", "5", "up"])
    rt_cases = {
        "warden": (warden, warden_client[1], warden_client[2]),
        "warden with sv": (warden,) + sv_w,
        "runsv": (["runsv"],) + sv_w,
        "s6-supervise": (["s6-supervise"], ["s6-svc", "-T", "5000", "-wd", "-d"],
                         ["s6-svc", "-T", "5000", "-wu", "-u"]),
    }
    rt_medians = round_trips(rt_cases)
    clients = {"warden": warden_client[0], "warden with sv": "sv -w 5", "runsv": "sv -w 5",
               "s6-supervise": "s6-svc -wd / -wu"}
    rt = {label: (clients[label], t) for label, t in rt_medians.items()}
    three = {"warden": warden, "runsv": ["runsv"], "s6-supervise": ["s6-supervise"]}
    raw = raw_round_trips(three)
    rl = restart_latencies(three)

    lines = [
        f"# supervise benchmark ({N} supervisors, {ROUNDS} rounds, idle {IDLE_SECONDS} s)",
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {os.uname().release}, "
        f"{os.cpu_count()} CPUs. Medians over the supervisors / rounds.",
        "",
        "## Memory per supervisor and idle wakeups",
        "",
        "| supervisor | binary size | Rss kB | Pss kB | Private kB | context switches, all "
        f"{N} over {IDLE_SECONDS} s |",
        "|---|---|---|---|---|---|",
    ]
    for name in kinds:
        m = mem[name]
        lines.append(f"| {name} | {sizes[name] // 1024} KiB | {m['rss']:.0f} | {m['pss']:.0f} | "
                     f"{m['private']:.0f} | {m['wakeups']} |")
    w = mem[f"warden ({best})"]
    lines += [
        "",
        f"Cheapest warden build: {best}. Pss ratio warden/runsv: "
        f"{w['pss'] / mem['runsv']['pss']:.2f}; warden/s6-supervise: "
        f"{w['pss'] / mem['s6-supervise']['pss']:.2f}. Private ratio warden/runsv: "
        f"{w['private'] / mem['runsv']['private']:.2f}.",
        "",
        "## Control round trip (down then up, until the client returns)",
        "",
        "| supervisor | client | median ms |",
        "|---|---|---|",
    ]
    for name, (client, t) in rt.items():
        lines.append(f"| {name} | {client} | {t * 1000:.1f} |")
    lines += [
        "",
        f"Ratio warden ({rt['warden'][0]}) / s6-svc -w: "
        f"{rt['warden'][1] / rt['s6-supervise'][1]:.2f}.",
        "",
        "Without client processes (the bench writes `d` then `u` to supervise/control and "
        "re-reads the status file until it says down, then up):",
        "",
        "| supervisor | median ms |",
        "|---|---|",
    ]
    for name, t in raw.items():
        lines.append(f"| {name} | {t * 1000:.2f} |")
    lines += [
        "",
        f"Ratio warden / s6-supervise: {raw['warden'] / raw['s6-supervise']:.2f}; "
        f"warden / runsv: {raw['warden'] / raw['runsv']:.2f}.",
        "",
        "## Restart latency (SIGKILL to the new run's first action)",
        "",
        "| supervisor | median ms |",
        "|---|---|",
    ]
    for name, t in rl.items():
        lines.append(f"| {name} | {t * 1000:.2f} |")
    lines += ["", f"Ratio warden / runsv: {rl['warden'] / rl['runsv']:.2f}; "
                  f"warden / s6-supervise: {rl['warden'] / rl['s6-supervise']:.2f}.", ""]
    lines += issue17(bins["dynamic PIE"])
    text = "\n".join(lines)
    print(text)
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    with open(os.path.join(ROOT, "bench", "results", "supervise.md"), "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
