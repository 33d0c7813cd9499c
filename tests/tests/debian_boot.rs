//! A real Debian 12 boots on warden (issue 16, must show 1): `cargo xtask debian --build-only`
//! makes (or takes from `$WARDEN_CACHE`, default /var/cache/warden) the image with mmdebstrap
//! and warden's own .deb; a copy of it boots under qemu (TCG, user network restricted to this
//! machine, the guest's ssh on a loopback port) with `init=/usr/lib/warden/init`. From the host,
//! over ssh: Debian's services (cron, rsyslog, dbus, ssh, the serial getty; their service dirs
//! as Debian ships them) are up for `svctl status` and runit's `sv status`, and the image's
//! last service says so on the console, once; util-linux's
//! `logger` reaches rsyslog's file; a killed daemon comes back; a service dir linked in starts;
//! `poweroff` ends qemu by itself within 10 s; then the disk is clean for `e2fsck -n` and holds
//! what was written before the power-off.
//!
//! Needs root (mmdebstrap unpacks as root), mmdebstrap, qemu-system-x86, openssh-client,
//! e2fsprogs, and Debian's mirror the first time (the image is cached: .ci/run's clean clone
//! reuses it).

#[path = "../../xtask/src/boot/mod.rs"]
mod boot;

use boot::debian::{self, DebianImage, Flavour};
use boot::qemu::{Guest, PANIC};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use warden_tests::{require, run};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The `<target>` dir this test runs from (`<target>/debug/deps/debian_boot-*`).
fn target() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.ancestors().nth(3).unwrap().to_path_buf()
}

/// `cargo xtask debian --build-only`: the image and the ssh key. The xtask is built in a target
/// dir of its own (the outer `cargo test` may hold the lock of this one); it puts the static
/// build, the .deb and the key in this `<target>` (CARGO_TARGET_DIR).
fn build() -> (DebianImage, PathBuf) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace())
        .args(["run", "--quiet", "--locked", "-p", "xtask", "--target-dir"])
        .arg(target().join("xtask-debian"))
        .args(["--", "debian", "--build-only", "--flavour", "warden"])
        .env("CARGO_TARGET_DIR", target());
    let started = Instant::now();
    // The first build downloads Debian (~1 min here); the later ones take it from the cache.
    let (code, out, err) = run(&mut cmd, Duration::from_secs(1200));
    assert_eq!(code, Some(0), "cargo xtask debian failed:\n{out}\n{err}");
    eprintln!("debian boot test: image ready in {:.1?}", started.elapsed());
    let field = |name: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .map(PathBuf::from)
            .unwrap_or_else(|| panic!("no {name}= in:\n{out}\n{err}"))
    };
    (
        DebianImage {
            flavour: Flavour::Warden,
            disk: field("disk"),
            kernel: field("kernel"),
            initrd: field("initrd"),
        },
        field("key"),
    )
}

struct Ssh {
    args: Vec<String>,
}

impl Ssh {
    /// Runs `command` as root in the guest, bounded: (exit code, stdout + stderr).
    fn try_run(&self, command: &str, secs: u64) -> (Option<i32>, String) {
        let mut cmd = Command::new("timeout");
        cmd.args(["-k", "5", &secs.to_string(), "ssh"])
            .args(&self.args)
            .arg(command);
        let (code, out, err) = run(&mut cmd, Duration::from_secs(secs + 15));
        (code, format!("{out}{err}"))
    }

    fn run(&self, command: &str) -> String {
        let (code, out) = self.try_run(command, 60);
        assert_eq!(code, Some(0), "`{command}` in the guest failed:\n{out}");
        out
    }

    /// Reruns `command` until its output contains `wanted`, with a deadline.
    fn until(&self, command: &str, wanted: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let (_, out) = self.try_run(command, 60);
            if out.contains(wanted) {
                return out;
            }
            assert!(
                Instant::now() < deadline,
                "`{command}` did not print {wanted:?} within {timeout:?}; last output:\n{out}"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

fn status_line<'a>(status: &'a str, name: &str) -> &'a str {
    status
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{name}:")))
        .unwrap_or_else(|| panic!("no status line for {name} in:\n{status}"))
}

/// The pid `supervise/pid` of a service gives.
fn pid_of(ssh: &Ssh, service: &str) -> u32 {
    let out = ssh.run(&format!("cat /etc/service/{service}/supervise/pid"));
    out.trim()
        .parse()
        .unwrap_or_else(|_| panic!("no pid for {service}: {out:?}"))
}

#[test]
fn debian_boots_on_warden_with_its_own_service_dirs_and_powers_off_cleanly() {
    assert!(
        rustix::process::geteuid().is_root(),
        "needs root: mmdebstrap unpacks Debian as root"
    );
    for (tool, package) in [
        ("mmdebstrap", "mmdebstrap"),
        ("qemu-system-x86_64", "qemu-system-x86"),
        ("ssh", "openssh-client"),
        ("ssh-keygen", "openssh-client"),
        ("timeout", "coreutils"),
    ] {
        require(tool, package);
    }
    let (image, key) = build();
    let work = tempfile::tempdir().unwrap();
    let disk = work.path().join("disk.img");
    debian::copy_disk(&image, &disk).unwrap_or_else(|e| panic!("{e}"));
    let port = debian::free_port().unwrap_or_else(|e| panic!("{e}"));
    let console_log = std::env::temp_dir().join("warden-debian-boot-test-console.log");
    let started = Instant::now();
    // The guest (qemu) is killed by its pid when `guest` is dropped, also on a failed assert.
    let mut guest = Guest::start(
        debian::command(&image, &disk, port, "", false),
        Some(console_log.clone()),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let boot = Duration::from_secs(300);
    guest
        .expect("init: stage 1", boot)
        .unwrap_or_else(|e| panic!("{e}"));
    guest
        .expect("init: exec /usr/lib/warden/svscan /etc/service", boot)
        .unwrap_or_else(|e| panic!("{e}"));
    let ssh = Ssh {
        args: debian::ssh_args(&key, port),
    };

    // 1. ssh on the forwarded port accepts a login with the key.
    let deadline = Instant::now() + boot;
    loop {
        let (code, out) = ssh.try_run("true", 30);
        if code == Some(0) {
            break;
        }
        let transcript = guest.transcript();
        assert!(!transcript.contains(PANIC), "kernel panic:\n{transcript}");
        assert!(
            Instant::now() < deadline,
            "no ssh login within {boot:?} (last: {out}); console in {}",
            console_log.display()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let to_ssh = started.elapsed();
    eprintln!("debian boot test: qemu start -> ssh login: {to_ssh:.1?}");
    // The image's end of boot (bench/run debian times it): its last service, `svctl -w check`
    // on every other one of /etc/service, says on the console that all are up.
    guest
        .expect(debian::ALL_UP, boot)
        .unwrap_or_else(|e| panic!("{e}"));

    // 2. Debian's services are up, for warden's svctl and for runit's sv.
    let services = debian::SERVICES;
    let names = services.join(" ");
    let waited = ssh.run(&format!("svctl -w 60s up {names}; echo svctl-exit=$?"));
    assert!(waited.contains("svctl-exit=0"), "not all up:\n{waited}");
    // All of them up: exit 0 (the whole tree also holds dbus.dep-fixer, which Debian's run
    // script takes down by itself after its one job: `svctl status` alone exits 3 for it).
    let status = ssh.run(&format!("svctl status {names}"));
    for name in services {
        let line = status_line(&status, name);
        assert!(line.contains(": up"), "{name} is not up: {line}\n{status}");
    }
    let paths: Vec<String> = services
        .iter()
        .map(|s| format!("/etc/service/{s}"))
        .collect();
    let sv = ssh.run(&format!("sv status {}", paths.join(" ")));
    for name in services {
        assert!(
            sv.contains(&format!("run: /etc/service/{name}: (pid ")),
            "sv status does not show {name} running:\n{sv}"
        );
    }
    // The daemons themselves, not just their run scripts.
    let ps = ssh.run("ps -eo args");
    for daemon in [
        "cron -f",
        "/usr/sbin/rsyslogd -n",
        "dbus-daemon --system",
        "sshd -D",
        "/sbin/getty -L ttyS0",
    ] {
        assert!(ps.contains(daemon), "{daemon} is not running:\n{ps}");
    }
    assert!(
        ssh.run("cat /proc/1/cmdline | tr '\\0' ' '")
            .starts_with("/usr/lib/warden/svscan /etc/service"),
        "process 1 is not warden's svscan"
    );

    // 3. util-linux's logger reaches rsyslog's file through /dev/log.
    let which = ssh.run("logger --version; readlink -f \"$(command -v logger)\"");
    assert!(
        which.contains("util-linux") && which.contains("/usr/bin/logger"),
        "{which}"
    );
    let token = format!("warden-debian-test-{}", std::process::id());
    ssh.run(&format!("logger -t debian-boot-test {token}"));
    ssh.until(
        "cat /var/log/syslog",
        &format!("debian-boot-test: {token}"),
        Duration::from_secs(30),
    );

    // 4. A daemon killed is started again by its supervise.
    let old = pid_of(&ssh, "cron");
    ssh.run(&format!("kill -9 {old}"));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, out) = ssh.try_run("svctl status cron; cat /etc/service/cron/supervise/pid", 30);
        let new = out
            .lines()
            .last()
            .and_then(|l| l.trim().parse::<u32>().ok());
        if out.contains("cron: up") && new.is_some_and(|p| p != old) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "cron was not restarted after kill -9 {old}:\n{out}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    ssh.until("ps -eo args", "cron -f", Duration::from_secs(30));

    // 5. A service dir linked into the scan dir (the Debian way) starts by itself.
    ssh.run(
        "mkdir -p /etc/sv/hello && printf '#!/bin/sh\\necho started > /run/hello.out\\nexec sleep 1000000\\n' \
         > /etc/sv/hello/run && chmod 755 /etc/sv/hello/run && ln -s /etc/sv/hello /etc/service/hello",
    );
    ssh.until(
        "svctl status hello; cat /run/hello.out",
        "started",
        Duration::from_secs(30),
    );
    let status = ssh.run("svctl status hello");
    assert!(status_line(&status, "hello").contains(": up"), "{status}");

    // The last service ran once, and stays down: told `once` before it waited, its supervise
    // did not start it again; its line is on the console once.
    let last = format!("/etc/service/{}", debian::ALL_UP_SERVICE);
    let sv = ssh.run(&format!("sv status {last}"));
    assert!(
        sv.starts_with(&format!("down: {last}: ")),
        "{last} should be down after its one run:\n{sv}"
    );
    let said = guest.transcript().matches(debian::ALL_UP).count();
    assert_eq!(said, 1, "{:?} on the console {said} times", debian::ALL_UP);

    // 6. Files written before the power-off (no sync: stage 3's job), then poweroff.
    ssh.run(&format!("echo {token} > /root/before-poweroff"));
    let before = guest.transcript().len();
    let asked = Instant::now();
    // The connection may die with the machine: its status does not matter.
    let _ = ssh.try_run("poweroff", 20);
    let code = guest
        .wait_exit(Duration::from_secs(10).saturating_sub(asked.elapsed()))
        .unwrap_or_else(|e| panic!("{e}"));
    let shutdown = asked.elapsed();
    eprintln!("debian boot test: poweroff -> qemu exit: {shutdown:.1?}");
    assert_eq!(code, Some(0), "qemu should exit by itself after poweroff");
    let transcript = guest.transcript();
    let tail = transcript.get(before..).unwrap_or("");
    assert!(
        tail.contains("init: stage 3: poweroff"),
        "no stage 3 on the console:\n{tail}"
    );
    assert!(!transcript.contains(PANIC), "{transcript}");
    drop(guest);

    // 7. The disk: clean, with the file and the logged line.
    let (code, out, err) = run(
        Command::new(boot::image::which("e2fsck").unwrap())
            .args(["-f", "-n"])
            .arg(&disk),
        Duration::from_secs(120),
    );
    assert_eq!(code, Some(0), "e2fsck -n: not clean:\n{out}\n{err}");
    for (file, wanted) in [
        ("/root/before-poweroff", token.clone()),
        ("/var/log/syslog", format!("debian-boot-test: {token}")),
    ] {
        let (code, out, err) = run(
            Command::new(boot::image::which("debugfs").unwrap())
                .args(["-R", &format!("cat {file}")])
                .arg(&disk),
            Duration::from_secs(60),
        );
        assert_eq!(code, Some(0), "debugfs: {err}");
        assert!(
            out.contains(&wanted),
            "{file} on the disk lacks {wanted:?}:\n{out}"
        );
    }
    eprintln!(
        "debian boot test: {:.1?} from qemu start to the end; console in {}",
        started.elapsed(),
        console_log.display()
    );
}
