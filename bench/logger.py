#!/usr/bin/env python3
"""logger against svlogd -t, s6-log t and multilog t, side by side in one run.

Input: 1,000,000 lines of 100 bytes, numbered, fed through a pipe by `cat`. Each tool rotates
at 1,000,000 bytes and keeps 20 archives, writing to tmpfs (/dev/shm) and to ext4 (/var/tmp).
Measured per run: wall time from start to exit after end of input, the tool's CPU time and
peak RSS (GNU time, i.e. wait4 of the tool). Every timed run checks that the kept files hold the newest lines, contiguous
and in order; one more run per tool and medium keeps every archive and checks that the output
holds exactly the 1,000,000 input lines, in order.

Then svlogd mode (issue 15): warden's logger run as `svlogd` (a link named svlogd to the same
binary) beside Debian's /usr/bin/svlogd, the same command line (`svlogd -tt DIR`) and the same
`config` (`s1000000`, `n20`), the same input through `cat`, both media, the two tools
alternating in every round; medians and the ratio, target at least 3x. The same checks of the
kept lines, and a keep-all run (`n1000`) per tool and medium.

    bench/run logger [--runs N] [--svlogd-only]   (or: python3 bench/logger.py [RUNS])
"""

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

LINES = 1_000_000
LINE_LEN = 100
SIZE = 1_000_000
KEEP = 20

def options(argv):
    runs, svlogd_only = 5, False
    args = iter(argv)
    for arg in args:
        if arg == "--runs":
            runs = int(next(args, "5"))
        elif arg.startswith("--runs="):
            runs = int(arg.split("=", 1)[1])
        elif arg == "--svlogd-only":
            svlogd_only = True
        elif arg.isdigit():
            runs = int(arg)
        else:
            sys.exit(f"bench/logger: unknown option {arg} (--runs N, --svlogd-only)")
    return runs, svlogd_only


RUNS, SVLOGD_ONLY = options(sys.argv[1:])
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIME = "/usr/bin/time"
MEDIA = [("tmpfs", "/dev/shm"), ("ext4", "/var/tmp")]


def build_logger():
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "logger"], cwd=ROOT, check=True)
    path = os.path.join(target, "release", "logger")
    if not os.path.exists(path):
        sys.exit(f"bench/logger: {path} missing after the build")
    return path


def make_input(path):
    pad = b"x" * (LINE_LEN - 12)
    with open(path, "wb") as f:
        chunk = []
        for n in range(LINES):
            chunk.append(b"%010d %s\n" % (n, pad))
            if len(chunk) == 10000:
                f.write(b"".join(chunk))
                chunk = []
        f.write(b"".join(chunk))


def commands(logger, directory, keep):
    """Each tool's command line and any setup its directory needs."""
    def svlogd_setup():
        with open(os.path.join(directory, "config"), "w") as f:
            f.write(f"s{SIZE}\nn{keep}\n")
    return {
        "logger": ([logger, "-s", str(SIZE), "-n", str(keep), directory], None),
        "s6-log": (["s6-log", f"s{SIZE}", f"n{keep}", "t", directory], None),
        "multilog": (["multilog", "t", f"s{SIZE}", f"n{keep}", directory], None),
        "svlogd": (["svlogd", "-t", directory], svlogd_setup),
        # svlogd mode: both read the same config and command line; only the binary differs.
        "warden svlogd": ([svlogd_link(logger), "-tt", directory], svlogd_setup),
        "Debian svlogd": (["/usr/bin/svlogd", "-tt", directory], svlogd_setup),
    }


def svlogd_link(logger):
    """A link named `svlogd` to the logger (the name selects svlogd mode), made once."""
    link = os.path.join(os.path.dirname(logger), "svlogd-mode", "svlogd")
    if not os.path.islink(link) or os.readlink(link) != logger:
        os.makedirs(os.path.dirname(link), exist_ok=True)
        if os.path.lexists(link):
            os.unlink(link)
        os.symlink(logger, link)
    return link


def run_once(tool, logger, input_path, base, keep):
    directory = tempfile.mkdtemp(prefix=f"bench-{tool}-", dir=base)
    argv, setup = commands(logger, directory, keep)[tool]
    if setup:
        setup()
    # GNU time forks the tool from its own small process: wait4 on a child that python
    # spawned would report python's own peak RSS (vfork and exec keep the hiwater mark).
    usage_path = directory + ".usage"
    argv = [TIME, "-f", "%U %S %M", "-o", usage_path] + argv
    read, write = os.pipe()
    start = time.monotonic()
    child = subprocess.Popen(argv, stdin=read, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    feeder = subprocess.Popen(["cat", input_path], stdout=write)
    os.close(read)
    os.close(write)
    child.wait()
    wall = time.monotonic() - start
    err = child.stderr.read().decode(errors="replace")
    feeder.wait()
    if child.returncode != 0:
        sys.exit(f"bench/logger: {tool} exited {child.returncode}: {err}")
    with open(usage_path) as f:
        user, system, rss_kb = f.read().split()[-3:]
    os.unlink(usage_path)
    lines = output_lines(directory)
    shutil.rmtree(directory)
    return {
        "wall": wall,
        "cpu": float(user) + float(system),
        "rss_kb": int(rss_kb),
        "lines": lines,
    }


def output_lines(directory):
    """The numbers of the logged lines, files in order (archives by name, then current)."""
    names = sorted(n for n in os.listdir(directory) if n.startswith("@"))
    names.append("current")
    numbers = []
    for name in names:
        path = os.path.join(directory, name)
        if not os.path.exists(path):
            continue
        with open(path, "rb") as f:
            for line in f:
                # Every tool writes "@" + 24 hex digits + " " before the line; svlogd -tt
                # writes "YYYY-MM-DD_HH:MM:SS.xxxxx ", as long.
                numbers.append(int(line[26:36]))
    return numbers


def check_tail(tool, numbers):
    if not numbers or numbers[-1] != LINES - 1:
        return f"{tool}: last line is not the last input line"
    first = numbers[0]
    if numbers != list(range(first, LINES)):
        return f"{tool}: kept lines are not contiguous"
    return None


def check_all(tool, numbers):
    if numbers != list(range(LINES)):
        return f"{tool}: {len(numbers)} lines out, {LINES} in, or out of order"
    return None


def svlogd_mode(logger, input_path, gigabytes, problems):
    """warden's logger as `svlogd -tt` against Debian's svlogd -tt, same config, both media."""
    tools = ["warden svlogd", "Debian svlogd"]
    report = [
        "## svlogd mode: `svlogd -tt DIR`, config `s1000000` `n20`",
        "",
        "warden's logger run through a link named `svlogd` against Debian's /usr/bin/svlogd, "
        f"the same command line, config and input; the two alternate in each of {RUNS} rounds.",
        "",
        "| medium | tool | lines/s | MB/s | CPU s per GB | peak RSS | all lines out |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    ratios = []
    for medium, base in MEDIA:
        results = {tool: [] for tool in tools}
        for _ in range(RUNS):
            for tool in tools:
                r = run_once(tool, logger, input_path, base, KEEP)
                problem = check_tail(tool, r["lines"])
                if problem:
                    problems.append(f"svlogd mode, {medium}: {problem}")
                results[tool].append(r)
        complete = {}
        for tool in tools:
            r = run_once(tool, logger, input_path, base, 1000)
            problem = check_all(tool, r["lines"])
            complete[tool] = "yes" if problem is None else "NO"
            if problem:
                problems.append(f"svlogd mode, {medium}: {problem}")
        walls = {}
        for tool in tools:
            wall = statistics.median(r["wall"] for r in results[tool])
            cpu = statistics.median(r["cpu"] for r in results[tool])
            rss = statistics.median(r["rss_kb"] for r in results[tool])
            walls[tool] = wall
            report.append(
                f"| {medium} | {tool} | {LINES / wall:,.0f} | {LINES * LINE_LEN / wall / 1e6:,.1f} | "
                f"{cpu / gigabytes:.2f} | {rss / 1024:.1f} MiB | {complete[tool]} |"
            )
        ratio = walls["Debian svlogd"] / walls["warden svlogd"]
        ratios.append((medium, ratio, [r["wall"] for r in results["warden svlogd"]],
                       [r["wall"] for r in results["Debian svlogd"]]))
    report.append("")
    for medium, ratio, ours, theirs in ratios:
        verdict = "meets" if ratio >= 3 else "MISSES"
        report.append(
            f"- {medium}: warden's svlogd {ratio:.2f}x the throughput of Debian's svlogd "
            f"({verdict} the 3x target); wall s per round, warden "
            + " ".join(f"{w:.3f}" for w in ours) + ", Debian " + " ".join(f"{w:.3f}" for w in theirs)
        )
    report.append("")
    return report


def main():
    for tool in ("s6-log", "multilog", "svlogd", TIME):
        if shutil.which(tool) is None:
            sys.exit(f"bench/logger: {tool} missing: apt-get install s6 daemontools runit time")
    logger = build_logger()
    tools = ["logger", "s6-log", "multilog", "svlogd"]
    with tempfile.TemporaryDirectory(dir="/dev/shm") as scratch:
        input_path = os.path.join(scratch, "input")
        make_input(input_path)
        gigabytes = LINES * LINE_LEN / 1e9
        report = [
            "# logger benchmark",
            "",
            f"{LINES:,} lines of {LINE_LEN} bytes through a pipe (`cat` → tool), rotation at "
            f"{SIZE:,} bytes, {KEEP} archives kept; median of {RUNS} runs, tools interleaved. "
            f"Kernel {os.uname().release}, {os.cpu_count()} CPUs, "
            f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
            "",
        ]
        problems = []
        summary = {}
        for medium, base in [] if SVLOGD_ONLY else MEDIA:
            results = {tool: [] for tool in tools}
            for _ in range(RUNS):
                for tool in tools:
                    r = run_once(tool, logger, input_path, base, KEEP)
                    problem = check_tail(tool, r["lines"])
                    if problem:
                        problems.append(f"{medium}: {problem}")
                    results[tool].append(r)
            complete = {}
            for tool in tools:
                r = run_once(tool, logger, input_path, base, 1000)
                problem = check_all(tool, r["lines"])
                complete[tool] = "yes" if problem is None else "NO"
                if problem:
                    problems.append(f"{medium}: {problem}")
            rows = {}
            for tool in tools:
                wall = statistics.median(r["wall"] for r in results[tool])
                cpu = statistics.median(r["cpu"] for r in results[tool])
                rss = statistics.median(r["rss_kb"] for r in results[tool])
                rows[tool] = (wall, cpu, rss)
            fastest_peer = min(rows[t][0] for t in tools if t != "logger")
            s6_cpu = rows["s6-log"][1]
            report += [
                f"## {medium} ({base})",
                "",
                "| tool | lines/s | MB/s | CPU s per GB | peak RSS | vs fastest peer | all lines out |",
                "|---|---:|---:|---:|---:|---:|---|",
            ]
            for tool in tools:
                wall, cpu, rss = rows[tool]
                report.append(
                    f"| {tool} | {LINES / wall:,.0f} | {LINES * LINE_LEN / wall / 1e6:,.1f} | "
                    f"{cpu / gigabytes:.2f} | {rss / 1024:.1f} MiB | {fastest_peer / wall:.2f}x | "
                    f"{complete[tool]} |"
                )
            ratio = fastest_peer / rows["logger"][0]
            cpu_ratio = rows["logger"][1] / s6_cpu
            summary[medium] = (ratio, cpu_ratio)
            report += [
                "",
                f"logger: {ratio:.2f}x the throughput of the fastest peer; "
                f"CPU per GB {cpu_ratio:.2f} of s6-log's.",
                "",
            ]
        report += svlogd_mode(logger, input_path, gigabytes, problems)
        if problems:
            report += ["## Problems", ""] + [f"- {p}" for p in problems] + [""]
        else:
            report += ["Every run: the kept files hold the newest lines, contiguous and in order; "
                       "the keep-all runs hold every input line exactly once, in order.", ""]
    text = "\n".join(report)
    print(text)
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    with open(os.path.join(ROOT, "bench", "results", "logger.md"), "w") as f:
        f.write(text)
    if problems:
        sys.exit(1)


if __name__ == "__main__":
    main()
