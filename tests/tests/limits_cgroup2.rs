//! Issue 17 on a pure cgroup2 machine: this host's controllers are bound to v1 (the hybrid
//! layout), so tests/tests/limits.rs sees the v1 path; here the qemu image (warden as process
//! 1, cgroup2 alone at /sys/fs/cgroup, svscan and its supervisors in the root cgroup) shows
//! the cgroup2 one: supervise enables the controllers in the root's `cgroup.subtree_control`,
//! writes `memory.max`, `pids.max` and `cpu.max` to the service's own cgroup, the child is born
//! in it, the OOM kill is read from `memory.events`, and a refused value stops the start.
//!
//! Needs what tests/tests/boot.rs needs (qemu-system-x86, a kernel in /boot, busybox-static).

#[path = "../../xtask/src/boot/mod.rs"]
mod boot;

use boot::image::{self, Flavour, Paths};
use boot::qemu::{self, Guest};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn static_target() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.ancestors().nth(3).unwrap().join("static")
}

const BOOT: Duration = Duration::from_secs(120);
const CMD: Duration = Duration::from_secs(30);

fn run(guest: &mut Guest, command: &str) -> String {
    guest.run(command, CMD).unwrap_or_else(|e| panic!("{e}"))
}

/// Reruns `command` until its output contains `wanted`, with a deadline.
fn until(guest: &mut Guest, command: &str, wanted: &str, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let out = run(guest, command);
        if out.contains(wanted) {
            return out;
        }
        assert!(
            Instant::now() < deadline,
            "`{command}` did not print {wanted:?} within {timeout:?}; last output:\n{out}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// A command that makes service dir `name` in /tmp with `run` and `files`, then moves it into
/// the scan dir.
fn add_service(name: &str, run_body: &str, files: &[(&str, &str)]) -> String {
    let mut cmd = format!("mkdir -p /tmp/{name} && printf '#!/bin/sh\\n%s\\n' '{run_body}' > /tmp/{name}/run && chmod 755 /tmp/{name}/run");
    for (file, text) in files {
        cmd.push_str(&format!(" && printf '%s\\n' '{text}' > /tmp/{name}/{file}"));
    }
    cmd.push_str(&format!(
        " && mv /tmp/{name} /etc/service/{name} && echo added-$((1+1))"
    ));
    cmd
}

/// The service's cgroup directory, from its extended status.
fn cgroup(name: &str) -> String {
    format!("/sys/fs/cgroup$(sed -n 's/^cgroup //p' /etc/service/{name}/supervise/warden)")
}

#[test]
fn issue_17_limits_on_pure_cgroup2() {
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
        qemu::command(&image, &image.initramfs, "", false),
        Some(std::env::temp_dir().join("warden-limits-cgroup2-console.log")),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    guest
        .expect("warden# ", BOOT)
        .unwrap_or_else(|e| panic!("{e}"));
    run(&mut guest, "stty cols 1000 2>/dev/null; true");
    let mounts = run(&mut guest, "grep ' /sys/fs/cgroup ' /proc/mounts");
    assert!(mounts.contains("cgroup2"), "{mounts}");

    // A string that doubles until the OOM killer stops it; once, so it is not restarted.
    for (name, body, files) in [
        (
            "hog",
            "a=xxxxxxxxxxxxxxxx; while :; do a=$a$a; done",
            &[
                ("memory.max", "16M"),
                ("memory.swap.max", "0"),
                ("down", ""),
            ][..],
        ),
        (
            "bomb",
            "i=0; while [ $i -lt 50 ]; do sleep 1000 & i=$((i+1)); done; exec sleep 1000",
            &[("pids.max", "10")][..],
        ),
        (
            "spin",
            "while :; do :; done",
            &[("cpu.max", "20000 100000")][..],
        ),
        ("bad", "exec sleep 1000", &[("memory.max", "lots")][..]),
    ] {
        let added = run(&mut guest, &add_service(name, body, files));
        assert!(added.contains("added-2"), "{added}");
    }
    until(
        &mut guest,
        "NO_COLOR=1 svctl status hog; echo",
        "hog: down",
        Duration::from_secs(30),
    );
    run(&mut guest, "svctl once hog");
    let status = until(
        &mut guest,
        "svctl status --json hog; echo",
        "killed by the OOM killer (memory.max 16M)",
        Duration::from_secs(60),
    );
    assert!(status.contains("\"oom\":\"memory.max 16M\""), "{status}");
    let events = run(&mut guest, &format!("cat {}/memory.events", cgroup("hog")));
    assert!(events.contains("oom_kill 1"), "{events}");
    let max = run(&mut guest, &format!("cat {}/memory.max", cgroup("hog")));
    assert!(max.contains("16777216"), "{max}");

    // pids.max: the bomb is held at 10 tasks, the kernel counts the refused forks.
    let events = until(
        &mut guest,
        &format!("cat {}/pids.events", cgroup("bomb")),
        "max ",
        Duration::from_secs(30),
    );
    // (The shell gives up at the first fork refused; supervise then stops what it left and
    // starts it again, so pids.current may be anything up to the limit when looked at.)
    assert!(!events.contains("max 0"), "{events}");
    let limit = run(&mut guest, &format!("cat {}/pids.max", cgroup("bomb")));
    assert!(limit.lines().any(|l| l.trim() == "10"), "{limit}");
    let current = run(
        &mut guest,
        &format!("echo \"current=$(cat {}/pids.current)\"", cgroup("bomb")),
    );
    let n: u32 = current
        .split("current=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{current}"));
    assert!(n <= 10, "pids.current {n}");

    // cpu.max: 20 % of a CPU over 3 s, from cpu.stat's usage_usec.
    let dir = cgroup("spin");
    let usage = run(
        &mut guest,
        &format!(
            "a=$(sed -n 's/^usage_usec //p' {dir}/cpu.stat); sleep 3; \
             b=$(sed -n 's/^usage_usec //p' {dir}/cpu.stat); echo \"used=$(( (b - a) / 1000 ))ms\""
        ),
    );
    let used: u64 = usage
        .split("used=")
        .nth(1)
        .and_then(|s| s.split("ms").next())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| panic!("{usage}"));
    assert!(
        used < 900,
        "the loop used {used} ms of 3 s under cpu.max 20 %"
    );
    assert!(used > 100, "the loop used {used} ms of 3 s");

    // A value the kernel refuses: not started, the message names the file and the cause.
    let bad = until(
        &mut guest,
        "NO_COLOR=1 svctl status bad; echo",
        "Invalid argument",
        Duration::from_secs(30),
    );
    assert!(bad.contains("/etc/service/bad/memory.max"), "{bad}");
    assert!(bad.contains("bad: down"), "{bad}");

    guest.send("busybox poweroff -f").unwrap();
    let code = guest
        .wait_exit(Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(code, Some(0));
}
