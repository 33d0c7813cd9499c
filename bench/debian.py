#!/usr/bin/env python3
"""bench/run debian [--rounds N] [--flavours warden,systemd,runit,sysvinit]

The same Debian 12 image (docs/debian.md) booted under qemu TCG with each init, interleaved.
Times are taken on the host from kernel start, which is when the kernel's first line ("Linux
version ...") arrives on the serial console: `loglevel=6 earlycon=... loglevel=4` after the
image's own command line makes the early console print that banner as soon as it is set up
(the replay of the log buffer at loglevel 6; from then on loglevel 4 as before, so the rest of
the console is what a normal boot shows). From there:
- ssh: sshd answers on the forwarded port (its "SSH-" banner, polled from the host);
- all up: the image's end-of-boot line (`all-up: ...`, printed by each init's own last step:
  warden's `svctl -w check` service, systemd's unit after multi-user.target, runit's `sv check`
  service, sysvinit's rc.local) arrives on the console;
- `poweroff` over ssh -> qemu exit;
- memory in use once both happened (MemTotal - MemAvailable, read over ssh).
Medians of N rounds (5). Writes bench/results/debian.md. Every wait is bounded; qemu is
killed by its pid on any failure.
"""
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INITS = {
    "warden": "/usr/lib/warden/init",
    "systemd": "/lib/systemd/systemd",
    "runit": "/sbin/runit-init",
    "sysvinit": "/sbin/init",
}
# The marker of xtask/src/boot/debian.rs (ALL_UP) and the kernel's first line.
ALL_UP = "all-up: all enabled services up"
BANNER = "Linux version "
EARLY = "loglevel=6 earlycon=uart8250,io,0x3f8,115200 loglevel=4"


class Console:
    """qemu's serial console, read in a thread: the bytes as they come, each chunk with the
    host's monotonic time of its arrival, copied to `log` with that time."""

    def __init__(self, pipe, log):
        self.text = b""
        self.chunks = []  # (offset in text, arrival time)
        self.cond = threading.Condition()
        self.eof = False
        self.thread = threading.Thread(target=self._read, args=(pipe, log), daemon=True)
        self.thread.start()

    def _read(self, pipe, log):
        while True:
            data = os.read(pipe.fileno(), 65536)
            now = time.monotonic()
            if not data:
                break
            log.write(f"\n[{now:.3f}] " + data.decode(errors="replace"))
            with self.cond:
                self.chunks.append((len(self.text), now))
                self.text += data
                self.cond.notify_all()
        log.flush()
        with self.cond:
            self.eof = True
            self.cond.notify_all()

    def _find(self, needle):
        i = self.text.find(needle.encode())
        if i < 0:
            return None
        # The arrival of the needle's first byte: the last chunk starting at or before it
        # (not the start of its line: a getty's prompt may be on the same line, earlier).
        when = max(t for off, t in self.chunks if off <= i)
        line_end = self.text.find(b"\n", i)
        if line_end < 0:
            return None  # the rest of the line is still to come
        line = self.text[i:line_end]
        return when, line.decode(errors="replace").rstrip("\r")

    def find(self, needle):
        """(arrival time of `needle`, the rest of its line), or None."""
        with self.cond:
            return self._find(needle)

    def wait(self, needle, deadline):
        with self.cond:
            while True:
                found = self._find(needle)
                if found or self.eof or time.monotonic() > deadline:
                    return found
                self.cond.wait(timeout=0.5)

    def tail(self):
        with self.cond:
            return self.text[-4000:].decode(errors="replace")


def build(flavour):
    out = subprocess.run(
        ["cargo", "xtask", "debian", "--build-only", "--flavour", flavour],
        cwd=ROOT, check=True, stdout=subprocess.PIPE, text=True, timeout=1800,
    ).stdout
    fields = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    return fields


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def banner(port):
    """Whether sshd answers: qemu accepts the TCP connection itself, so read the banner."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.settimeout(2)
            return s.recv(4).startswith(b"SSH-")
    except OSError:
        return False


def ssh(key, port, command, timeout=30):
    return subprocess.run(
        ["ssh", "-i", key, "-p", str(port), "-o", "BatchMode=yes",
         "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
         "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=10", "root@127.0.0.1", command],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout,
    )


def boot_once(flavour, image, work):
    disk = os.path.join(work, f"{flavour}.img")
    subprocess.run(["cp", "--sparse=always", image["disk"], disk], check=True)
    port = free_port()
    log = open(os.path.join(work, f"{flavour}.console"), "w")
    cmd = [
        "qemu-system-x86_64", "-accel", "tcg", "-m", "512", "-smp", "1", "-nodefaults",
        "-no-user-config", "-kernel", image["kernel"], "-initrd", image["initrd"],
        "-append", f"root=/dev/vda rw console=ttyS0 init={INITS[flavour]} panic=-1 "
                   f"loglevel=4 net.ifnames=0 {EARLY}",
        "-drive", f"file={disk},if=virtio,format=raw",
        "-netdev", f"user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:{port}-:22",
        "-device", "virtio-net-pci,netdev=net0",
        "-display", "none", "-serial", "stdio", "-monitor", "none",
    ]
    started = time.monotonic()
    qemu = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    console = Console(qemu.stdout, log)
    try:
        deadline = started + 300
        while not banner(port):
            if qemu.poll() is not None:
                raise RuntimeError(f"{flavour}: qemu exited before ssh answered")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{flavour}: no ssh within 300 s")
            time.sleep(0.1)
        ssh_at = time.monotonic()
        up = console.wait(ALL_UP, deadline)
        if up is None:
            raise RuntimeError(f"{flavour}: no {ALL_UP!r} on the console within 300 s")
        kernel = console.find(BANNER)
        if kernel is None:
            raise RuntimeError(f"{flavour}: no {BANNER!r} on the console")
        # The guest's own figure, for comparison: its uptime when it printed the line.
        words = up[1].split()
        uptime = float(words[words.index("uptime") + 1]) if "uptime" in words else None
        mem = None
        for _ in range(20):
            r = ssh(image["key"], port, "cat /proc/meminfo")
            if r.returncode == 0:
                info = {l.split(":")[0]: int(l.split()[1]) for l in r.stdout.splitlines()
                        if len(l.split()) >= 2 and l.split()[1].isdigit()}
                mem = (info["MemTotal"] - info["MemAvailable"]) / 1024
                break
            time.sleep(1)
        if mem is None:
            raise RuntimeError(f"{flavour}: no ssh login")
        asked = time.monotonic()
        subprocess.Popen(
            ["ssh", "-i", image["key"], "-p", str(port), "-o", "BatchMode=yes",
             "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
             "-o", "LogLevel=ERROR", "root@127.0.0.1", "poweroff"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        qemu.wait(timeout=120)
        down = time.monotonic() - asked
        return {
            "ssh": ssh_at - kernel[0],
            "up": up[0] - kernel[0],
            "down": down,
            "mem": mem,
            "firmware": kernel[0] - started,
            "uptime": uptime,
        }
    except Exception:
        print(f"{flavour}: console tail:\n{console.tail()}", file=sys.stderr)
        raise
    finally:
        if qemu.poll() is None:
            qemu.kill()
            qemu.wait()
        console.thread.join(timeout=10)
        log.close()
        os.unlink(disk)


def main():
    args = sys.argv[1:]
    rounds = 5
    flavours = list(INITS)
    while args:
        a = args.pop(0)
        if a == "--rounds":
            rounds = int(args.pop(0))
        elif a == "--flavours":
            flavours = args.pop(0).split(",")
        else:
            sys.exit(f"bench/debian.py: unknown option {a}")
    images = {f: build(f) for f in flavours}
    results = {f: [] for f in flavours}
    work = tempfile.mkdtemp(prefix="warden-bench-debian-")
    load = []
    try:
        for r in range(rounds):
            for f in flavours:
                load.append(os.getloadavg()[0])
                res = boot_once(f, images[f], work)
                print(f"round {r + 1} {f}: qemu start -> kernel {res['firmware']:.1f} s; "
                      f"kernel -> ssh {res['ssh']:.1f} s, -> all up {res['up']:.1f} s "
                      f"(guest uptime {res['uptime']}); poweroff {res['down']:.1f} s, "
                      f"memory {res['mem']:.0f} MiB", flush=True)
                results[f].append(res)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())

    def med(f, k):
        return statistics.median(x[k] for x in results[f])

    lines = [
        f"| Debian 12 under qemu TCG (median of {rounds}, interleaved; {when}; "
        f"load {min(load):.1f}-{max(load):.1f}) "
        "| kernel start → ssh answers | kernel start → all services up | "
        "poweroff → qemu exit | memory in use after boot |",
        "|---|---|---|---|---|",
    ]
    for f in flavours:
        lines.append(f"| {f} | {med(f, 'ssh'):.1f} s | {med(f, 'up'):.1f} s | "
                     f"{med(f, 'down'):.1f} s | {med(f, 'mem'):.0f} MiB |")
    table = "\n".join(lines)
    note = ("qemu start → kernel start (firmware, decompression): median "
            + ", ".join(f"{f} {med(f, 'firmware'):.1f} s" for f in flavours) + ".")
    print(table)
    print(note)
    os.makedirs(os.path.join(ROOT, "bench/results"), exist_ok=True)
    with open(os.path.join(ROOT, "bench/results/debian.md"), "w") as out:
        out.write(table + "\n\n" + note + "\n")


if __name__ == "__main__":
    main()
