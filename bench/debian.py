#!/usr/bin/env python3
"""bench/run debian [--rounds N] [--flavours warden,systemd,runit,sysvinit]

The same Debian 12 image (docs/debian.md) booted under qemu TCG with each init, interleaved:
qemu start -> ssh answers on the forwarded port (the server's "SSH-" banner, measured from the
host), `poweroff` over ssh -> qemu exit, and memory in use after boot (MemTotal - MemAvailable,
read over ssh once ssh answers). Medians of N rounds (5). Writes bench/results/debian.md.
Every wait is bounded; qemu is killed by its pid on any failure.
"""
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INITS = {
    "warden": "/usr/lib/warden/init",
    "systemd": "/lib/systemd/systemd",
    "runit": "/sbin/runit-init",
    "sysvinit": "/sbin/init",
}


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
                   "loglevel=4 net.ifnames=0",
        "-drive", f"file={disk},if=virtio,format=raw",
        "-netdev", f"user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:{port}-:22",
        "-device", "virtio-net-pci,netdev=net0",
        "-display", "none", "-serial", "stdio", "-monitor", "none",
    ]
    started = time.monotonic()
    qemu = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    try:
        deadline = started + 300
        while not banner(port):
            if qemu.poll() is not None:
                raise RuntimeError(f"{flavour}: qemu exited before ssh answered")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{flavour}: no ssh within 300 s")
            time.sleep(0.1)
        to_ssh = time.monotonic() - started
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
        return to_ssh, down, mem
    finally:
        if qemu.poll() is None:
            qemu.kill()
            qemu.wait()
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
    try:
        for r in range(rounds):
            for f in flavours:
                res = boot_once(f, images[f], work)
                print(f"round {r + 1} {f}: ssh {res[0]:.1f} s, poweroff {res[1]:.1f} s, "
                      f"memory {res[2]:.0f} MiB", flush=True)
                results[f].append(res)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    lines = [
        f"| Debian 12 under qemu TCG (median of {rounds}, interleaved; {when}) "
        "| qemu start → ssh answers | poweroff → qemu exit | memory in use after boot |",
        "|---|---|---|---|",
    ]
    for f in flavours:
        med = [statistics.median(x[i] for x in results[f]) for i in range(3)]
        lines.append(f"| {f} | {med[0]:.1f} s | {med[1]:.1f} s | {med[2]:.0f} MiB |")
    table = "\n".join(lines)
    print(table)
    os.makedirs(os.path.join(ROOT, "bench/results"), exist_ok=True)
    with open(os.path.join(ROOT, "bench/results/debian.md"), "w") as out:
        out.write(table + "\n")


if __name__ == "__main__":
    main()
