//! Debian's real runit and daemontools clients (`sv`, `svstat`, `svok`, `svc`) against a warden
//! `supervise` give the same answers as against runit's `runsv`: every scenario runs on a
//! runsv-supervised copy and a warden-supervised copy of the same service, and the outputs are
//! compared with pids and seconds masked.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};
use warden::status::{RunState, Status};
use warden::svdir::{Liveness, ServiceDir};
use warden_tests::{alive, bin, require, run, script, wait_until, Spawned};

const WAIT: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Runsv,
    Warden,
}

/// One supervised copy of the service `svc` in a scan dir of its own.
struct Supervised {
    kind: Kind,
    scandir: PathBuf,
    svc: PathBuf,
    child: Option<Spawned>,
}

impl Supervised {
    fn start(kind: Kind, root: &Path, setup: &dyn Fn(&Path)) -> Supervised {
        let scandir = root.join(format!("{kind:?}").to_lowercase());
        let svc = scandir.join("svc");
        std::fs::create_dir_all(&svc).unwrap();
        setup(&svc);
        let program = match kind {
            Kind::Runsv => PathBuf::from("runsv"),
            Kind::Warden => bin("supervise"),
        };
        let child = Spawned::new(
            Command::new(program)
                .arg(&svc)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        );
        let s = Supervised {
            kind,
            scandir,
            svc,
            child: Some(child),
        };
        wait_until(&format!("{kind:?} to take over"), WAIT, || {
            ServiceDir::new(&s.svc).liveness() == Ok(Liveness::Running) && s.status().is_some()
        });
        s
    }

    fn status(&self) -> Option<Status> {
        ServiceDir::new(&self.svc).status().ok()
    }

    fn wait_state(&self, what: &str, cond: impl Fn(&Status) -> bool) {
        wait_until(&format!("{:?}: {what}", self.kind), WAIT, || {
            self.status().is_some_and(|s| cond(&s))
        });
    }

    /// Runs a client tool from the scan dir with `SVDIR` set; returns "code|stdout|stderr"
    /// with every number masked.
    fn tool(&self, program: &str, args: &[&str]) -> String {
        let (code, out, err) = run(
            Command::new(program)
                .args(args)
                .current_dir(&self.scandir)
                .env("SVDIR", &self.scandir),
            WAIT,
        );
        mask(&format!("{code:?}|{out}|{err}"))
    }

    fn raw_tool(&self, program: &str, args: &[&str]) -> (Option<i32>, String) {
        let (code, out, _) = run(
            Command::new(program)
                .args(args)
                .current_dir(&self.scandir)
                .env("SVDIR", &self.scandir),
            WAIT,
        );
        (code, out)
    }

    fn supervisor_exit(&mut self) -> Option<i32> {
        self.child
            .as_mut()
            .map(|c| c.wait_exit(WAIT))
            .and_then(|s| s.code())
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        // Stop the service through the supervisor so nothing is left running, then make sure.
        let service_pid = self.status().map(|s| s.pid).unwrap_or(0);
        let _ = ServiceDir::new(&self.svc).send(b"dx");
        if let Some(child) = &mut self.child {
            let deadline = std::time::Instant::now() + WAIT;
            while std::time::Instant::now() < deadline {
                if child.child.try_wait().ok().flatten().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        if service_pid > 0 && alive(service_pid as i32) {
            warden_tests::kill_group(service_pid as i32);
        }
        // A warden supervise that had to be killed leaves its cgroup: the test removes it.
        if let Some(mut child) = self.child.take() {
            let _ = child.child.kill();
            let _ = child.child.wait();
        }
        warden_tests::remove_cgroups_under(&self.svc, Duration::from_secs(2));
    }
}

/// Replaces every run of digits with `N`: pids and seconds differ between the two runs.
fn mask(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_number = false;
    for c in text.chars() {
        if c.is_ascii_digit() {
            if !in_number {
                out.push('N');
            }
            in_number = true;
        } else {
            in_number = false;
            out.push(c);
        }
    }
    out
}

/// Both supervisors, on two copies of the service made by `setup`.
fn both(setup: &dyn Fn(&Path)) -> (tempfile::TempDir, Supervised, Supervised) {
    require("runsv", "runit");
    require("sv", "runit");
    require("svstat", "daemontools");
    let root = tempfile::tempdir().unwrap();
    let a = Supervised::start(Kind::Runsv, root.path(), setup);
    let b = Supervised::start(Kind::Warden, root.path(), setup);
    (root, a, b)
}

fn sleeper(svc: &Path) {
    script(&svc.join("run"), "exec sleep 1000");
}

fn is_run(s: &Status) -> bool {
    s.state == RunState::Run && s.pid != 0
}

fn is_down(s: &Status) -> bool {
    s.state == RunState::Down && s.pid == 0
}

/// The same client commands on both copies give the same masked output.
fn same(a: &Supervised, b: &Supervised, program: &str, args: &[&str]) -> String {
    let left = a.tool(program, args);
    let right = b.tool(program, args);
    assert_eq!(left, right, "`{program} {}` differs", args.join(" "));
    left
}

#[test]
fn running_service_reads_the_same() {
    let (_root, a, b) = both(&sleeper);
    a.wait_state("run", is_run);
    b.wait_state("run", is_run);
    let status = same(&a, &b, "sv", &["status", "svc"]);
    assert_eq!(status, "Some(N)|run: svc: (pid N) Ns\n|");
    same(&a, &b, "svstat", &["svc"]);
    same(&a, &b, "svok", &["svc"]);
    let check = same(&a, &b, "sv", &["-w", "5", "check", "svc"]);
    assert!(check.starts_with("Some(N)|ok: run: svc"), "{check}");
    // Uptime agrees with the clock: just started, so 0 or 1 seconds on both.
    for s in [&a, &b] {
        let (code, out) = s.raw_tool("sv", &["status", "svc"]);
        assert_eq!(code, Some(0));
        assert!(out.ends_with(" 0s\n") || out.ends_with(" 1s\n"), "{out}");
    }
}

#[test]
fn status_timestamp_agrees_with_the_clock() {
    let before = SystemTime::now();
    let (_root, a, b) = both(&sleeper);
    a.wait_state("run", is_run);
    b.wait_state("run", is_run);
    let after = SystemTime::now();
    for s in [&a, &b] {
        let stamp = s.status().unwrap().stamp.to_system_time();
        let slack = Duration::from_secs(1);
        assert!(
            stamp + slack >= before && stamp <= after + slack,
            "{:?}: status stamp {stamp:?} outside [{before:?}, {after:?}]",
            s.kind
        );
        // `date +%s` and the label's Unix seconds agree within a second.
        let (_, date, _) = run(Command::new("date").arg("+%s"), WAIT);
        let now: i64 = date.trim().parse().unwrap();
        let label = s.status().unwrap().stamp.unix_secs();
        assert!((now - label).abs() <= 1 + after.duration_since(before).unwrap().as_secs() as i64);
    }
}

#[test]
fn down_and_up_read_the_same() {
    let (_root, a, b) = both(&sleeper);
    a.wait_state("run", is_run);
    b.wait_state("run", is_run);
    let down = same(&a, &b, "sv", &["-w", "5", "down", "svc"]);
    assert_eq!(down, "Some(N)|ok: down: svc: Ns, normally up\n|");
    same(&a, &b, "sv", &["status", "svc"]);
    same(&a, &b, "svstat", &["svc"]);
    same(&a, &b, "sv", &["-w", "5", "check", "svc"]);
    let up = same(&a, &b, "sv", &["-w", "5", "up", "svc"]);
    assert_eq!(up, "Some(N)|ok: run: svc: (pid N) Ns\n|");
    same(&a, &b, "sv", &["-w", "5", "up", "svc"]);
}

#[test]
fn daemontools_svc_down_and_up_read_the_same() {
    require("svc", "daemontools");
    let (_root, a, b) = both(&sleeper);
    a.wait_state("run", is_run);
    b.wait_state("run", is_run);
    same(&a, &b, "svc", &["-d", "svc"]);
    a.wait_state("down", is_down);
    b.wait_state("down", is_down);
    let svstat = same(&a, &b, "svstat", &["svc"]);
    assert_eq!(svstat, "Some(N)|svc: down N seconds, normally up\n|");
    same(&a, &b, "svc", &["-u", "svc"]);
    a.wait_state("run", is_run);
    b.wait_state("run", is_run);
    let svstat = same(&a, &b, "svstat", &["svc"]);
    assert_eq!(svstat, "Some(N)|svc: up (pid N) N seconds\n|");
}

#[test]
fn normally_down_service_reads_the_same() {
    let (_root, a, b) = both(&|svc| {
        sleeper(svc);
        std::fs::write(svc.join("down"), "").unwrap();
    });
    let status = same(&a, &b, "sv", &["status", "svc"]);
    assert_eq!(status, "Some(N)|down: svc: Ns\n|");
    same(&a, &b, "svstat", &["svc"]);
    let up = same(&a, &b, "sv", &["-w", "5", "up", "svc"]);
    assert_eq!(up, "Some(N)|ok: run: svc: (pid N) Ns, normally down\n|");
    same(&a, &b, "svstat", &["svc"]);
    same(&a, &b, "sv", &["-w", "5", "down", "svc"]);
    same(&a, &b, "sv", &["status", "svc"]);
}

#[test]
fn paused_service_reads_the_same() {
    let (_root, a, b) = both(&sleeper);
    a.wait_state("run", is_run);
    b.wait_state("run", is_run);
    same(&a, &b, "sv", &["pause", "svc"]);
    a.wait_state("paused", |s| s.paused);
    b.wait_state("paused", |s| s.paused);
    let status = same(&a, &b, "sv", &["status", "svc"]);
    assert_eq!(status, "Some(N)|run: svc: (pid N) Ns, paused\n|");
    same(&a, &b, "svstat", &["svc"]);
    same(&a, &b, "sv", &["cont", "svc"]);
    a.wait_state("not paused", |s| !s.paused);
    b.wait_state("not paused", |s| !s.paused);
    same(&a, &b, "sv", &["status", "svc"]);
}

#[test]
fn finishing_service_reads_the_same() {
    let (_root, a, b) = both(&|svc| {
        sleeper(svc);
        script(&svc.join("finish"), "exec sleep 3");
    });
    a.wait_state("run", is_run);
    b.wait_state("run", is_run);
    same(&a, &b, "sv", &["down", "svc"]);
    a.wait_state("finish", |s| s.state == RunState::Finish && s.pid != 0);
    b.wait_state("finish", |s| s.state == RunState::Finish && s.pid != 0);
    let status = same(&a, &b, "sv", &["status", "svc"]);
    assert_eq!(status, "Some(N)|finish: svc: (pid N) Ns, want down\n|");
    same(&a, &b, "svstat", &["svc"]);
    a.wait_state("down", is_down);
    b.wait_state("down", is_down);
    same(&a, &b, "sv", &["status", "svc"]);
}

#[test]
fn want_up_while_restart_is_throttled_reads_the_same() {
    // A run that dies at once: both wait a second before the next start, reporting "want up".
    let (_root, a, b) = both(&|svc| script(&svc.join("run"), "exit 1"));
    for s in [&a, &b] {
        s.wait_state("down after a quick death", |st| {
            is_down(st) && st.want == warden::status::Want::Up
        });
    }
    let status = same(&a, &b, "sv", &["status", "svc"]);
    assert_eq!(status, "Some(N)|down: svc: Ns, normally up, want up\n|");
    // Here the two part ways on purpose: runsv sleeps through its throttle second and serves
    // `d` only after it (void-linux/runit#33); warden serves it at once.
    let down = b.tool("sv", &["down", "svc"]);
    assert_eq!(down, "Some(N)||");
    b.wait_state("want down at once", |st| {
        st.want == warden::status::Want::Down
    });
}

#[test]
fn once_reads_the_same() {
    let (_root, a, b) = both(&|svc| {
        script(&svc.join("run"), "exec sleep 1");
        std::fs::write(svc.join("down"), "").unwrap();
    });
    // Not `-w`: sv's once check passes at once if it looks before the supervisor acts.
    same(&a, &b, "sv", &["once", "svc"]);
    a.wait_state("run", is_run);
    b.wait_state("run", is_run);
    let status = same(&a, &b, "sv", &["status", "svc"]);
    assert_eq!(
        status,
        "Some(N)|run: svc: (pid N) Ns, normally down, want down\n|"
    );
    // It ran once and stays down.
    a.wait_state("down after the one run", is_down);
    b.wait_state("down after the one run", is_down);
    same(&a, &b, "sv", &["status", "svc"]);
    same(&a, &b, "svstat", &["svc"]);
}

#[test]
fn restart_reads_the_same() {
    let (_root, a, b) = both(&sleeper);
    a.wait_state("run", is_run);
    b.wait_state("run", is_run);
    let pids = [a.status().unwrap().pid, b.status().unwrap().pid];
    // Past the one-second throttle of a quick death, as a restart is meant to be immediate.
    std::thread::sleep(Duration::from_millis(1100));
    let restart = same(&a, &b, "sv", &["-w", "5", "restart", "svc"]);
    assert_eq!(restart, "Some(N)|ok: run: svc: (pid N) Ns\n|");
    assert_ne!(a.status().unwrap().pid, pids[0]);
    assert_ne!(b.status().unwrap().pid, pids[1]);
}

#[test]
fn exit_reads_the_same() {
    let (_root, mut a, mut b) = both(&sleeper);
    a.wait_state("run", is_run);
    b.wait_state("run", is_run);
    let pids = [a.status().unwrap().pid, b.status().unwrap().pid];
    let exit = same(&a, &b, "sv", &["exit", "svc"]);
    assert_eq!(exit, "Some(N)||");
    assert_eq!(a.supervisor_exit(), Some(0));
    assert_eq!(b.supervisor_exit(), Some(0));
    for pid in pids {
        wait_until("the service to be gone", WAIT, || !alive(pid as i32));
    }
    let status = same(&a, &b, "sv", &["status", "svc"]);
    assert!(status.contains("runsv not running"), "{status}");
    let svok = same(&a, &b, "svok", &["svc"]);
    assert_eq!(svok, "Some(N)||");
    let (code, _) = b.raw_tool("svok", &["svc"]);
    assert_eq!(code, Some(100));
}
