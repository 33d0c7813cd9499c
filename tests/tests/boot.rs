//! The boot test: builds the qemu image (static binaries, initramfs, ext4 disk), boots it
//! under TCG, drives the guest's console shell and checks, from what the guest prints and
//! from the disk image afterwards, the whole life of a machine run by warden: services up,
//! `svctl down`/`up`, a service added at runtime, a killed supervisor replaced, orphans
//! reaped, `reboot`, then `poweroff` with the logs drained onto the disk, every file system
//! unmounted and qemu exiting by itself.
//!
//! Needs qemu-system-x86, a kernel in /boot (linux-image-cloud-amd64), busybox-static and
//! e2fsprogs; without them it fails with the apt-get command (.ci/run installs them).

#[path = "../../xtask/src/boot/mod.rs"]
mod boot;

use boot::image::{self, Flavour, Paths};
use boot::qemu::{self, Guest};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// `<target>/static`, next to the `<target>/debug` this test runs from.
fn static_target() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let target = exe.ancestors().nth(3).unwrap().to_path_buf();
    target.join("static")
}

/// Every service dir the image's scan dir holds: example-service-dir's and image/service's.
fn all_services() -> Vec<String> {
    let mut names = Vec::new();
    for dir in [
        workspace().join("example-service-dir"),
        workspace().join("image/service"),
    ] {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if e.path().is_dir() && !name.starts_with('.') {
                names.push(name);
            }
        }
    }
    names.sort();
    names.dedup();
    names
}

/// The services that must be up: the image's own, and the long-running examples
/// (example-service-dir's `crashy` and `with-finish` exit by design, `on-demand` is down).
fn long_running_services() -> Vec<String> {
    let wanted = ["console", "ticker", "forker", "bootprobe", "clock", "ready"];
    all_services()
        .into_iter()
        .filter(|s| wanted.contains(&s.as_str()))
        .collect()
}

const BOOT: Duration = Duration::from_secs(90);
const CMD: Duration = Duration::from_secs(30);

/// Reruns `command` in the guest until its output contains `wanted`, with a deadline.
fn until(guest: &mut Guest, command: &str, wanted: &str, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let out = guest.run(command, CMD).unwrap_or_else(|e| panic!("{e}"));
        if out.contains(wanted) {
            return out;
        }
        assert!(
            Instant::now() < deadline,
            "`{command}` did not print {wanted:?} within {timeout:?}; last output:\n{out}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn run(guest: &mut Guest, command: &str) -> String {
    guest.run(command, CMD).unwrap_or_else(|e| panic!("{e}"))
}

fn status_line<'a>(status: &'a str, name: &str) -> &'a str {
    status
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{name}:")))
        .unwrap_or_else(|| panic!("no status line for {name} in:\n{status}"))
}

fn wait_for_shell(guest: &mut Guest) {
    guest
        .expect("init: stage 1", BOOT)
        .unwrap_or_else(|e| panic!("{e}"));
    guest
        .expect("init: exec /sbin/svscan /etc/service", BOOT)
        .unwrap_or_else(|e| panic!("{e}"));
    guest
        .expect("warden# ", BOOT)
        .unwrap_or_else(|e| panic!("{e}"));
}

/// The pid of the `supervise` of a service, from ps.
fn supervise_pid(guest: &mut Guest, service: &str) -> Option<u32> {
    let out = run(
        guest,
        &format!(
            "ps -o pid,args | awk '$2 ~ /supervise$/ && $3 == \"{service}\" {{print \"pid=\" $1}}'"
        ),
    );
    out.lines()
        .filter_map(|l| l.trim().strip_prefix("pid="))
        .find_map(|p| p.trim().parse().ok())
}

#[test]
fn boot_image_runs_services_survives_supervisor_death_reboots_and_powers_off_cleanly() {
    if let Err(e) = image::ensure_tools(false) {
        panic!("{e} (.ci/run installs them)");
    }
    let out = tempfile::tempdir().unwrap();
    let paths = Paths {
        workspace: workspace(),
        examples: workspace().join("example-service-dir"),
        static_target: static_target(),
        out: out.path().to_path_buf(),
    };
    let image = image::build(&paths, Flavour::Warden).unwrap_or_else(|e| panic!("{e}"));
    let console_log = std::env::temp_dir().join("warden-boot-test-console.log");
    let started = Instant::now();
    let mut guest = Guest::start(
        qemu::command(&image, &image.initramfs, "", false),
        Some(console_log.clone()),
    )
    .unwrap_or_else(|e| panic!("{e}"));

    // 1. Every service of the scan dir comes up.
    wait_for_shell(&mut guest);
    let services = long_running_services();
    let names = services.join(" ");
    // The console is a terminal: svctl would colour its states (issue 17); lines compare as text.
    run(
        &mut guest,
        "stty cols 1000 2>/dev/null; export NO_COLOR=1; true",
    );
    let waited = run(
        &mut guest,
        &format!("svctl -w 30s up {names}; echo \"svctl-exit=$?\""),
    );
    assert!(
        waited.contains("svctl-exit=0"),
        "not all services came up:\n{waited}"
    );
    let status = run(&mut guest, "svctl status");
    for name in &services {
        let line = status_line(&status, name);
        assert!(line.contains(": up"), "{name} is not up: {line}");
    }
    // Every other service dir is supervised too (up, down or waiting to restart).
    for name in all_services() {
        let line = status_line(&status, &name);
        assert!(
            line.contains(": up") || line.contains(": down"),
            "{name} is not supervised: {line}"
        );
    }

    // The catch-all logger: what the examples without a log/ print (with-finish on stdout,
    // crashy on stderr) is in /run/warden/uncaught, and none of it on the console. The
    // patterns are bracketed so that the echo of the typed command does not match.
    until(
        &mut guest,
        "f=/run/warden/uncaught/main/current; grep -q 'with-finish: wor[k]ing' $f && \
         grep -q 'crashy: startin[g]' $f && echo both-logged-$((1+1))",
        "both-logged-2",
        Duration::from_secs(60),
    );
    let before_log = guest.transcript();
    for line in [
        "with-finish: working",
        "with-finish: finish called",
        "crashy: starting",
    ] {
        assert!(
            !before_log.contains(line),
            "{line:?} reached the console:\n{before_log}"
        );
    }
    let shown = run(&mut guest, "svctl log .uncaught -n 200");
    assert!(
        shown.contains("with-finish: working") && shown.contains("crashy: starting, and failing"),
        "svctl log .uncaught:\n{shown}"
    );
    let after_log = guest.transcript().len();

    // Stage 1 mounted the early file systems, the hook mounted the disk, the hostname is set,
    // and ctrl-alt-del now sends SIGINT to process 1 (kernel.ctrl-alt-del = 0).
    let mounts = run(&mut guest, "cat /proc/mounts");
    for (point, fstype) in [
        ("/proc", "proc"),
        ("/sys", "sysfs"),
        ("/dev", "devtmpfs"),
        ("/dev/pts", "devpts"),
        ("/dev/shm", "tmpfs"),
        ("/run", "tmpfs"),
        ("/sys/fs/cgroup", "cgroup2"),
        ("/var/log", "ext4"),
    ] {
        assert!(
            mounts.contains(&format!(" {point} {fstype} ")),
            "{point} ({fstype}) is not mounted:\n{mounts}"
        );
    }
    let misc = run(
        &mut guest,
        "echo \"host=$(hostname) cad=$(cat /proc/sys/kernel/ctrl-alt-del)\"",
    );
    assert!(misc.contains("host=warden cad=0"), "{misc}");

    // 2. svctl down / up.
    run(&mut guest, "svctl -w 10s down ticker");
    let status = run(&mut guest, "svctl status ticker");
    assert!(
        status_line(&status, "ticker").contains(": down"),
        "{status}"
    );
    run(&mut guest, "svctl -w 10s up ticker");
    let status = run(&mut guest, "svctl status ticker");
    assert!(status_line(&status, "ticker").contains(": up"), "{status}");

    // 3. A service dir dropped into the scan dir starts by itself (inotify, no svctl).
    run(
        &mut guest,
        "mkdir -p /tmp/hello && printf '#!/bin/sh\\necho hello-from-new-service > /run/hello.out\\nexec sleep 1000000\\n' > /tmp/hello/run && chmod 755 /tmp/hello/run && mv /tmp/hello /etc/service/hello",
    );
    until(
        &mut guest,
        "cat /run/hello.out 2>/dev/null",
        "hello-from-new-service",
        Duration::from_secs(20),
    );

    // 4. A supervise killed with KILL is replaced by svscan, and its service is up again.
    let old = supervise_pid(&mut guest, "forker").expect("a supervise for forker");
    run(&mut guest, &format!("kill -9 {old}"));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let new = supervise_pid(&mut guest, "forker");
        if new.is_some_and(|p| p != old) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no new supervise for forker after killing {old}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    until(
        &mut guest,
        "svctl status forker",
        "forker: up",
        Duration::from_secs(20),
    );

    // 5. The orphans forker double-forked (each `sleep 0.5`) exit and are reaped: no zombie.
    let ps = until(
        &mut guest,
        "echo \"left=$(ps -o stat,args | grep -v grep | grep -c -e '^Z' -e 'sleep 0.5')\"; ps -o stat,pid,ppid,args | grep '^Z'",
        "left=0\n",
        Duration::from_secs(20),
    );
    assert!(!ps.contains("\nZ"), "zombies left:\n{ps}");

    // 6. reboot: services stop, the machine comes back (a second boot), the log survives.
    guest.send("reboot").unwrap();
    guest
        .expect("init: stage 3: reboot", CMD)
        .unwrap_or_else(|e| panic!("{e}"));
    wait_for_shell(&mut guest);
    // The console is a terminal: svctl would colour its states (issue 17); lines compare as text.
    run(
        &mut guest,
        "stty cols 1000 2>/dev/null; export NO_COLOR=1; true",
    );
    let old_log = run(
        &mut guest,
        "grep -c 'ticker: stopping after tick' /var/log/ticker/current",
    );
    assert!(
        old_log.trim().parse::<u32>().unwrap_or(0) >= 2,
        "the ticker's lines from the first boot (down/up, reboot) are not on the disk: {old_log}"
    );
    until(
        &mut guest,
        "svctl status ticker",
        "ticker: up",
        Duration::from_secs(20),
    );

    // 7. poweroff: services stop, loggers drain, file systems are unmounted, qemu exits.
    guest.send("poweroff").unwrap();
    guest
        .expect("init: stage 3: poweroff", CMD)
        .unwrap_or_else(|e| panic!("{e}"));
    let unmounted = guest
        .expect("init: every filesystem unmounted", CMD)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(unmounted.contains("/var/log"), "{unmounted}");
    let code = guest
        .wait_exit(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        code,
        Some(0),
        "qemu should exit by itself after the power-off"
    );
    let took = started.elapsed();
    let transcript = guest.transcript();
    assert_eq!(
        transcript.matches("init: stage 1").count(),
        2,
        "exactly two boots expected"
    );
    assert!(!transcript.contains(qemu::PANIC));
    // Later, and through the second boot, the console stays free of the services' lines.
    let rest = transcript.get(after_log..).unwrap_or("");
    for line in ["with-finish: working", "crashy: starting"] {
        assert!(
            !rest.contains(line),
            "{line:?} reached the console:\n{rest}"
        );
    }
    drop(guest);

    // 8. The disk is clean and holds what the ticker logged last, during the shutdown.
    let fsck = Command::new(image::which("e2fsck").unwrap())
        .arg("-fn")
        .arg(&image.disk)
        .output()
        .unwrap();
    assert!(
        fsck.status.success(),
        "e2fsck -fn: {}{}",
        String::from_utf8_lossy(&fsck.stdout),
        String::from_utf8_lossy(&fsck.stderr)
    );
    let log = Command::new(image::which("debugfs").unwrap())
        .args(["-R", "cat /ticker/current"])
        .arg(&image.disk)
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&log.stdout);
    let last = log.lines().last().unwrap_or("");
    assert!(
        last.contains("ticker: stopping after tick"),
        "the last line on disk should be the one the ticker logged when stopped; got {last:?}"
    );
    assert!(
        log.lines()
            .filter(|l| l.contains("ticker: stopping after tick"))
            .count()
            >= 3,
        "down, reboot and poweroff each leave a last line:\n{log}"
    );
    eprintln!("boot test: {took:?} from qemu start to power-off");
}

#[test]
fn boot_with_a_missing_scan_dir_gives_an_emergency_shell_not_a_kernel_panic() {
    if let Err(e) = image::ensure_tools(false) {
        panic!("{e} (.ci/run installs them)");
    }
    let out = tempfile::tempdir().unwrap();
    let paths = Paths {
        workspace: workspace(),
        examples: workspace().join("example-service-dir"),
        static_target: static_target(),
        out: out.path().to_path_buf(),
    };
    let image = image::build(&paths, Flavour::Warden).unwrap_or_else(|e| panic!("{e}"));
    let mut guest = Guest::start(
        qemu::command(
            &image,
            &image.initramfs,
            "warden.scandir=/nonexistent",
            false,
        ),
        Some(std::env::temp_dir().join("warden-boot-test-emergency.log")),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    guest
        .expect(
            "init: fatal: unable to use scan directory /nonexistent: does not exist: \
             starting an emergency shell",
            BOOT,
        )
        .unwrap_or_else(|e| panic!("{e}"));
    // The shell answers on the console, and process 1 (init) is still there behind it.
    let out = run(
        &mut guest,
        "echo \"answer=$((6*7)) init=$(cat /proc/1/comm)\"",
    );
    assert!(out.contains("answer=42 init=init"), "{out}");
    // Leaving the shell starts another one: process 1 never exits.
    guest.send("exit").unwrap();
    guest
        .expect("init: emergency shell exited 0; starting another", CMD)
        .unwrap_or_else(|e| panic!("{e}"));
    let out = run(&mut guest, "echo \"still=$((40+2))\"");
    assert!(out.contains("still=42"), "{out}");
    guest.send("busybox poweroff -f").unwrap();
    let code = guest
        .wait_exit(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(code, Some(0));
}

/// Issue 11 item 5: an initramfs without `/dev/console` and `/dev/null`, so the kernel starts
/// init with fds 0-2 closed ("unable to open an initial console") and there is no /dev/null
/// for Rust's start to fill them from (it would abort: a kernel panic). init reaches its own
/// code, mounts devtmpfs, opens the console itself (its later messages and svscan's are on
/// the serial console), boots to the console shell, and powers off cleanly.
#[test]
fn boot_with_fds_0_to_2_closed_and_no_dev_null_opens_the_console_itself() {
    if let Err(e) = image::ensure_tools(false) {
        panic!("{e} (.ci/run installs them)");
    }
    let out = tempfile::tempdir().unwrap();
    let paths = Paths {
        workspace: workspace(),
        examples: workspace().join("example-service-dir"),
        static_target: static_target(),
        out: out.path().to_path_buf(),
    };
    let image = image::build_with(&paths, Flavour::Warden, false).unwrap_or_else(|e| panic!("{e}"));
    let mut guest = Guest::start(
        qemu::command(&image, &image.initramfs, "", false),
        Some(std::env::temp_dir().join("warden-boot-test-no-console.log")),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    guest
        .expect("unable to open an initial console", BOOT)
        .unwrap_or_else(|e| panic!("{e}"));
    // Said on fds 0-2 that init opened on /dev/console: nobody else put anything there.
    let before = guest
        .expect("init: exec /sbin/svscan /etc/service", BOOT)
        .unwrap_or_else(|e| panic!("{e}"));
    // Said before the console was open: lost, which shows the fds were closed.
    assert!(!before.contains("init: stage 1"), "{before}");
    guest
        .expect("warden# ", BOOT)
        .unwrap_or_else(|e| panic!("{e}"));
    // Process 1 (svscan now) holds the console from devtmpfs on fds 0-2.
    let out = until(
        &mut guest,
        "for fd in 0 1 2; do echo \"fd$fd=$(readlink /proc/1/fd/$fd)\"; done; \
         grep ' /dev ' /proc/mounts | cut -d' ' -f3; NO_COLOR=1 svctl status ticker",
        "ticker: up",
        Duration::from_secs(30),
    );
    for fd in 0..3 {
        assert!(out.contains(&format!("fd{fd}=/dev/console")), "{out}");
    }
    assert!(out.contains("devtmpfs"), "{out}");
    // The console fds come from devtmpfs and pin /dev to the end: stage 3 detaches it
    // lazily (docs/init.md), and unmounts the disk as always.
    guest.send("poweroff").unwrap();
    guest
        .expect("init: warning: /dev busy", CMD)
        .unwrap_or_else(|e| panic!("{e}"));
    let unmounted = guest
        .expect("init: poweroff", CMD)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        unmounted.contains("init: unmounted /var/log"),
        "{unmounted}"
    );
    let code = guest
        .wait_exit(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        code,
        Some(0),
        "qemu should exit by itself after the power-off"
    );
}
