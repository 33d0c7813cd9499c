#!/usr/bin/env python3
"""Boot time under qemu (TCG): warden's init + svscan against busybox init + runit's runsvdir,
on the same kernel, initramfs contents and services (cargo xtask image [--busybox-runit]).

Measured per boot:
  up        kernel start -> every service of /etc/service running: the image's `bootprobe`
            service waits until every other service's supervise/stat says "run" (runsv and
            warden's supervise both write it) and prints the start time, in ticks since boot,
            of the last started service process (its supervise/pid);
  init-up   process 1 start ("Run /init as init process" in the kernel log) -> the same;
  host-up   qemu start -> the bootprobe line arriving, on the host's clock (adds firmware,
            kernel load and the probe's own polling);
  shutdown  the power-off command typed on the console -> qemu exits by itself.
Median of N boots (default 5; BOOT_BENCH_RUNS overrides). Writes bench/results/boot.md.
"""

import os
import re
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNS = int(os.environ.get("BOOT_BENCH_RUNS", "5"))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
OUT = os.path.join(TARGET, "bench-boot")

FLAVOURS = [
    # name, xtask flag, power-off command typed on the console
    ("warden init + svscan", [], "/sbin/poweroff"),
    ("busybox init + runsvdir", ["--busybox-runit"], "busybox poweroff"),
]


def build(flag):
    out = os.path.join(OUT, "busybox-runit" if flag else "warden")
    subprocess.run(["cargo", "xtask", "image", "--out", out] + flag, cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)
    name = "initramfs-busybox-runit.cpio" if flag else "initramfs.cpio"
    return os.path.join(out, name), os.path.join(out, "disk.img")


def kernel():
    found = sorted(f for f in os.listdir("/boot") if f.startswith("vmlinuz-")
                   and os.path.isdir("/lib/modules/" + f[len("vmlinuz-"):]))
    if not found:
        sys.exit("bench/boot.py: no kernel in /boot: apt-get install linux-image-cloud-amd64")
    return "/boot/" + found[-1]


class Console:
    def __init__(self, cmd):
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL)
        self.text = ""
        self.cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        while True:
            chunk = self.proc.stdout.read1(4096)
            with self.cond:
                if not chunk:
                    self.text += "\0EOF"
                    self.cond.notify_all()
                    return
                self.text += chunk.decode("utf-8", "replace").replace("\r", "")
                self.cond.notify_all()

    def expect(self, pattern, timeout=120):
        deadline = time.monotonic() + timeout
        with self.cond:
            while pattern not in self.text:
                if "Kernel panic" in self.text or "\0EOF" in self.text:
                    raise RuntimeError("guest died waiting for %r:\n%s" % (pattern, self.text[-3000:]))
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RuntimeError("timeout waiting for %r:\n%s" % (pattern, self.text[-3000:]))
                self.cond.wait(left)
            return self.text

    def send(self, line):
        self.proc.stdin.write((line + "\n").encode())
        self.proc.stdin.flush()

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def boot_once(vmlinuz, initramfs, disk, poweroff):
    cmd = ["qemu-system-x86_64", "-accel", "tcg", "-m", "256", "-smp", "1", "-nodefaults",
           "-no-user-config", "-kernel", vmlinuz, "-initrd", initramfs, "-append",
           "console=ttyS0 rdinit=/init loglevel=4 panic=-1",
           "-drive", "file=%s,if=virtio,format=raw" % disk,
           "-display", "none", "-serial", "stdio", "-monitor", "none", "-no-reboot"]
    started = time.monotonic()
    guest = Console(cmd)
    try:
        text = guest.expect("bootprobe: all services up at uptime ")
        host_up = time.monotonic() - started
        text = guest.expect("\n", 10)
        line = text.split("bootprobe: all services up at uptime ")[-1].split("\n")[0]
        up = float(line.split()[0])
        guest.expect("warden# ")
        # When the kernel started process 1, from the kernel log (identical kernels: the
        # difference after this point is init and the supervisor).
        guest.send("dmesg | sed -n 's/^\\[ *\\([0-9.]*\\)\\] Run \\/init as init process.*/runinit=\\1=/p'")
        text = guest.expect("=\n", 30)
        found = re.search(r"runinit=([0-9.]+)=", text)
        if not found:
            raise RuntimeError("no 'Run /init' in dmesg:\n" + text[-2000:])
        init_up = up - float(found.group(1))
        guest.expect("warden# ")
        time.sleep(1)  # let the console settle: the measure starts at the typed command
        t0 = time.monotonic()
        guest.send(poweroff)
        guest.proc.wait(timeout=60)
        shutdown = time.monotonic() - t0
        return up, init_up, host_up, shutdown
    finally:
        guest.kill()


def main():
    for tool in ["qemu-system-x86_64", "busybox", "mke2fs", "runsvdir"]:
        if subprocess.run(["sh", "-c", "command -v " + tool], stdout=subprocess.DEVNULL).returncode:
            sys.exit("bench/boot.py: %s missing: apt-get install qemu-system-x86 busybox-static "
                     "e2fsprogs runit" % tool)
    vmlinuz = kernel()
    images = [build(flag) for _, flag, _ in FLAVOURS]
    samples = [[] for _ in FLAVOURS]
    # Interleaved, so that a change in the machine's load hits both alike.
    for i in range(RUNS):
        for k, (name, _, poweroff) in enumerate(FLAVOURS):
            initramfs, disk = images[k]
            subprocess.run(["mke2fs", "-q", "-F", "-t", "ext4", "-L", "wardenlog", disk, "64M"],
                           check=True)
            s = boot_once(vmlinuz, initramfs, disk, poweroff)
            print("  %-26s boot %d: up %.2f s, init-up %.2f s, host-up %.2f s, shutdown %.3f s"
                  % ((name, i + 1) + s), flush=True)
            samples[k].append(s)
    rows = [(name, [statistics.median(col) for col in zip(*samples[k])])
            for k, (name, _, _) in enumerate(FLAVOURS)]
    base = rows[1][1]
    lines = [
        "Boot under qemu TCG (%s, 256 MiB, 1 vCPU), median of %d boots; same kernel, initramfs "
        "contents and services." % (os.path.basename(vmlinuz), RUNS),
        "",
        "| image | kernel start → services up | process 1 start → services up "
        "| qemu start → bootprobe line | poweroff → qemu exit |",
        "|---|---|---|---|---|",
    ]
    for name, (up, init_up, host_up, shutdown) in rows:
        lines.append("| %s | %.2f s (%.2f×) | %.2f s (%.2f×) | %.2f s (%.2f×) | %.3f s (%.2f×) |" % (
            name, up, up / base[0], init_up, init_up / base[1], host_up, host_up / base[2],
            shutdown, shutdown / base[3]))
    lines.append("")
    lines.append("Ratios are against busybox init + runsvdir (lower is better).")
    table = "\n".join(lines)
    print(table)
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    with open(os.path.join(ROOT, "bench", "results", "boot.md"), "w") as f:
        f.write(table + "\n")


if __name__ == "__main__":
    main()
