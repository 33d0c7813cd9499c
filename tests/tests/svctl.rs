//! svctl against real supervisors: warden's `supervise` (and runit's `runsv` for
//! comparison), in temp dirs. Every wait has a deadline; `-w` is measured against the moment
//! the service really reached its state.

use serde_json::Value;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};
use warden_tests::warden::svdir::{Liveness, ServiceDir};
use warden_tests::warden::Tai64N;
use warden_tests::{alive, bin, kill_group, require, run, script, service, wait_until, Spawned};

/// Bound for a whole svctl invocation.
const RUN_LIMIT: Duration = Duration::from_secs(30);
/// Bound for a state change a test waits for itself.
const SETTLE: Duration = Duration::from_secs(10);

fn svctl(scandir: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    run(
        Command::new(bin("svctl")).arg("-d").arg(scandir).args(args),
        RUN_LIMIT,
    )
}

/// A temp scan dir, traversable by other users (the permission test runs as nobody).
fn scandir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Flavour {
    Warden,
    Runit,
}

/// A supervisor on one service dir; on drop it is told to stop the service and exit, then
/// killed, and what is left of the service's process group is killed too.
struct Supervised {
    dir: PathBuf,
    process: Spawned,
}

fn supervise(flavour: Flavour, dir: &Path) -> Supervised {
    let mut cmd = match flavour {
        Flavour::Warden => Command::new(bin("supervise")),
        Flavour::Runit => {
            require("runsv", "runit");
            Command::new("runsv")
        }
    };
    let out = fs::File::create(dir.with_extension("out")).unwrap();
    cmd.arg(dir)
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out);
    let process = Spawned::new(&mut cmd);
    let svc = ServiceDir::new(dir);
    wait_until("the supervisor to serve its directory", SETTLE, || {
        svc.liveness() == Ok(Liveness::Running) && svc.status().is_ok()
    });
    Supervised {
        dir: dir.to_owned(),
        process,
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        let svc = ServiceDir::new(&self.dir);
        let group = svc.status().ok().map(|s| s.pid).filter(|&p| p != 0);
        let _ = svc.send(b"x");
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.process.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        if let Some(pgid) = group {
            kill_group(pgid as i32);
        }
        // A supervisor that had to be killed leaves its (now empty) cgroup behind.
        warden_tests::remove_cgroups_under(&self.dir, Duration::from_secs(2));
    }
}

fn json_status(scan: &Path, name: &str) -> Value {
    let (_, out, err) = svctl(scan, &["status", "--json", name]);
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out} {err}"));
    v[0].clone()
}

fn pid_of(scan: &Path, name: &str) -> u64 {
    json_status(scan, name)["pid"].as_u64().unwrap_or(0)
}

/// The pid of the service once its supervisor has started it (a fresh supervisor may still
/// report "down" for a moment).
fn running_pid(scan: &Path, name: &str) -> u64 {
    let mut pid = 0;
    wait_until(&format!("{name} to be started"), SETTLE, || {
        pid = pid_of(scan, name);
        pid > 0
    });
    pid
}

fn lines(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// A service that logs each start's pid to `runs`, then sleeps.
fn sleeper(scan: &Path, name: &str) -> PathBuf {
    service(scan, name, "echo $$ >> runs\nexec sleep 1000")
}

#[test]
fn up_down_restart_once_act_on_the_service() {
    let scan = scandir();
    let dir = sleeper(scan.path(), "web");
    fs::write(dir.join("down"), "").unwrap();
    let _sup = supervise(Flavour::Warden, &dir);
    let s = scan.path();

    let (code, out, _) = svctl(s, &["status", "web"]);
    assert_eq!(code, Some(3), "a down service is LSB 'not running': {out}");
    assert!(out.starts_with("web: down "), "{out}");
    assert!(out.contains(", normally down"), "{out}");

    assert_eq!(svctl(s, &["-w", "5", "up", "web"]).0, Some(0));
    let first = pid_of(s, "web");
    assert!(first > 0);
    assert_eq!(lines(&dir.join("runs")), vec![first.to_string()]);
    assert_eq!(svctl(s, &["status", "web"]).0, Some(0));

    assert_eq!(svctl(s, &["-w", "5", "restart", "web"]).0, Some(0));
    let second = pid_of(s, "web");
    assert!(second > 0 && second != first, "{first} -> {second}");
    assert!(!alive(first as i32), "the old run is gone");
    assert_eq!(lines(&dir.join("runs")).len(), 2);

    assert_eq!(svctl(s, &["-w", "5", "down", "web"]).0, Some(0));
    let v = json_status(s, "web");
    assert_eq!(v["state"], "down");
    assert_eq!(v["want"], "down");
    assert!(!alive(second as i32));

    // once: one run, and no restart when it ends.
    assert_eq!(svctl(s, &["-w", "5", "once", "web"]).0, Some(0));
    let third = pid_of(s, "web");
    assert!(third > 0 && third != second);
    assert_eq!(json_status(s, "web")["want"], "down");
    assert_eq!(svctl(s, &["-w", "5", "kill", "web"]).0, Some(0));
    assert_eq!(json_status(s, "web")["state"], "down");
    // supervise writes `status` first and `supervise/warden` (last_exit) just after it; the
    // wait ends on the first, so the second may be a moment behind.
    wait_until("last_exit to be recorded", SETTLE, || {
        json_status(s, "web")["last_exit"]["signal"] == "KILL"
    });
    assert_eq!(lines(&dir.join("runs")).len(), 3, "once did not restart");
}

#[test]
fn restart_stops_the_run_with_its_down_signal() {
    let scan = scandir();
    let s = scan.path();
    let dir = service(
        s,
        "graceful",
        "trap 'echo INT >> signals; exit 0' INT\necho $$ >> runs\nsleep 1000 & wait $!",
    );
    fs::write(dir.join("down-signal"), "SIGINT\n").unwrap();
    let _sup = supervise(Flavour::Warden, &dir);
    wait_until("the first run", SETTLE, || {
        lines(&dir.join("runs")).len() == 1
    });
    let (code, _, err) = svctl(s, &["-w", "5", "restart", "graceful"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(lines(&dir.join("signals")), vec!["INT"]);
    // -w returns once the new run is up, which may be before its shell has noted its start.
    wait_until("the second run noted", SETTLE, || {
        lines(&dir.join("runs")).len() >= 2
    });
    assert_eq!(lines(&dir.join("runs")).len(), 2);
    assert_eq!(json_status(s, "graceful")["last_exit"]["code"], 0);
}

/// A run script that records every signal it can trap, one name per line, in `signals`.
const TRAPPER: &str = r#"
for s in HUP ALRM INT QUIT USR1 USR2 CONT; do trap "echo $s >> signals" $s; done
echo $$ >> runs
sleep 1000 & child=$!
while kill -0 $child 2>/dev/null; do wait $child; done"#;

fn proc_state(pid: u64) -> char {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").and_then(|(_, r)| r.chars().next()))
        .unwrap_or('?')
}

#[test]
fn signal_commands_reach_the_run_script() {
    let scan = scandir();
    let dir = service(scan.path(), "trap", TRAPPER);
    let _sup = supervise(Flavour::Warden, &dir);
    let s = scan.path();
    wait_until("the traps to be set", SETTLE, || {
        !lines(&dir.join("runs")).is_empty()
    });
    let signals = dir.join("signals");
    for (command, name) in [
        ("hup", "HUP"),
        ("alarm", "ALRM"),
        ("interrupt", "INT"),
        ("quit", "QUIT"),
        ("usr1", "USR1"),
        ("usr2", "USR2"),
    ] {
        assert_eq!(svctl(s, &[command, "trap"]).0, Some(0), "{command}");
        wait_until(&format!("{name} to be trapped"), SETTLE, || {
            lines(&signals).contains(&name.to_owned())
        });
    }

    let pid = pid_of(s, "trap");
    assert_eq!(svctl(s, &["-w", "5", "pause", "trap"]).0, Some(0));
    assert_eq!(proc_state(pid), 'T', "STOPped");
    let (_, out, _) = svctl(s, &["status", "trap"]);
    assert!(out.contains(", paused"), "{out}");
    assert_eq!(svctl(s, &["-w", "5", "cont", "trap"]).0, Some(0));
    wait_until("CONT to be trapped", SETTLE, || {
        lines(&signals).contains(&"CONT".to_owned())
    });
    assert_ne!(proc_state(pid), 'T');
    assert_eq!(json_status(s, "trap")["paused"], false);

    // TERM is not trapped: the run ends and, wanted up, a new one starts.
    assert_eq!(svctl(s, &["-w", "5", "term", "trap"]).0, Some(0));
    let after = pid_of(s, "trap");
    assert!(after > 0 && after != pid, "restarted after TERM");
    assert_eq!(json_status(s, "trap")["last_exit"]["signal"], "TERM");
}

#[test]
fn exit_waits_until_the_supervisor_is_gone() {
    let scan = scandir();
    let dir = sleeper(scan.path(), "web");
    let mut sup = supervise(Flavour::Warden, &dir);
    let s = scan.path();
    let pid = running_pid(s, "web");
    let (code, _, err) = svctl(s, &["-w", "5", "exit", "web"]);
    assert_eq!(code, Some(0), "{err}");
    // -w returned because the supervisor closed `ok`: it is exiting or gone.
    let status = sup.process.wait_exit(SETTLE);
    assert!(status.success(), "{status:?}");
    assert!(!alive(pid as i32));
    // The status file it left behind is stale: not supervised.
    let (code, _, err) = svctl(s, &["status", "web"]);
    assert_eq!(code, Some(4), "{err}");
    assert!(err.contains("supervise not running"), "{err}");
}

#[test]
fn wait_on_a_service_whose_supervisor_has_not_started_yet_waits_for_it() {
    let scan = scandir();
    let s = scan.path();
    // Down by default: only svctl's `u` can start it.
    let dir = sleeper(s, "fresh");
    fs::write(dir.join("down"), "").unwrap();
    // svscan starts a new directory's supervisor within milliseconds; a script can be faster.
    let mut waiting = Spawned::new(
        Command::new(bin("svctl"))
            .arg("-d")
            .arg(s)
            .args(["-w", "5", "up", "fresh"])
            .stderr(Stdio::null()),
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        waiting.child.try_wait().unwrap().is_none(),
        "gave up before the supervisor came"
    );
    let _sup = supervise(Flavour::Warden, &dir);
    let status = waiting.wait_exit(SETTLE);
    assert_eq!(status.code(), Some(0));
    // Up means `./run` was exec'd; its first line may still be on its way.
    wait_until("the run to start", SETTLE, || {
        !lines(&dir.join("runs")).is_empty()
    });
    assert_eq!(lines(&dir.join("runs")).len(), 1);

    // No supervisor coming: -w runs out, and it is still "not supervised".
    sleeper(s, "lonely");
    let start = Instant::now();
    let (code, _, err) = svctl(s, &["-w", "500ms", "up", "lonely"]);
    assert_eq!(code, Some(4), "{err}");
    assert!(start.elapsed() >= Duration::from_millis(500), "{err}");
    assert!(err.contains("supervise not running"), "{err}");
}

/// A supervisor opens `supervise/control` before `supervise/ok`: `svctl -w up` that comes in
/// between (its `u` is taken) must wait for `ok` too, not fail at once with "supervise not
/// running" (seen in tests/deb.sh right after svscan's start). The test plays the supervisor
/// halfway through its start, then lets the real one come.
#[test]
fn wait_on_a_supervisor_that_has_opened_control_but_not_ok_waits_for_it() {
    let scan = scandir();
    let s = scan.path();
    let dir = sleeper(s, "halfway");
    fs::write(dir.join("down"), "").unwrap();
    let supervise_dir = dir.join("supervise");
    fs::create_dir(&supervise_dir).unwrap();
    fs::set_permissions(&supervise_dir, fs::Permissions::from_mode(0o700)).unwrap();
    for fifo in ["control", "ok"] {
        rustix::fs::mknodat(
            rustix::fs::CWD,
            supervise_dir.join(fifo),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
    }
    let control = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(supervise_dir.join("control"))
        .unwrap();
    let mut waiting = Spawned::new(
        Command::new(bin("svctl"))
            .arg("-d")
            .arg(s)
            .args(["-w", "10", "up", "halfway"])
            .stderr(Stdio::piped()),
    );
    std::thread::sleep(Duration::from_millis(400));
    if let Some(status) = waiting.child.try_wait().unwrap() {
        let mut err = String::new();
        let _ = waiting
            .child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err);
        panic!("svctl gave up before the supervisor opened ok: {status} {err}");
    }
    drop(control);
    let _sup = supervise(Flavour::Warden, &dir);
    let status = waiting.wait_exit(SETTLE);
    assert_eq!(status.code(), Some(0));
    wait_until("the run to start", SETTLE, || {
        !lines(&dir.join("runs")).is_empty()
    });
}

#[test]
fn wait_returns_as_soon_as_the_service_is_ready() {
    let scan = scandir();
    let dir = service(
        scan.path(),
        "slow",
        "sleep 1.5\necho ready >&3\nexec sleep 1000",
    );
    fs::write(dir.join("notification-fd"), "3\n").unwrap();
    let _sup = supervise(Flavour::Warden, &dir);
    let s = scan.path();
    // Up at once, ready 1.5 s later.
    wait_until("status to say up but not ready", SETTLE, || {
        let (code, out, _) = svctl(s, &["status", "slow"]);
        code == Some(0) && out.contains(", not ready")
    });

    let asked = SystemTime::now();
    let (code, _, err) = svctl(s, &["-w", "20", "up", "slow"]);
    let returned = SystemTime::now();
    assert_eq!(code, Some(0), "{err}");
    let ready_at = ServiceDir::new(&dir)
        .extended()
        .and_then(|x| x.ready_at)
        .expect("supervise recorded readiness")
        .to_system_time();
    assert!(
        ready_at > asked,
        "the service became ready while svctl waited"
    );
    let late = returned
        .duration_since(ready_at)
        .expect("returned after readiness");
    assert!(
        late < Duration::from_millis(700),
        "svctl returned {late:?} after readiness: it must be woken, not poll"
    );
    let (_, out, _) = svctl(s, &["status", "slow"]);
    assert!(out.contains(", ready"), "{out}");
    assert_eq!(json_status(s, "slow")["ready"], true);
}

#[test]
fn wait_times_out_with_code_1() {
    let scan = scandir();
    let s = scan.path();
    let unchecked = sleeper(s, "unchecked");
    script(&unchecked.join("check"), "exit 1");
    let stubborn = service(s, "stubborn", "trap '' TERM\ntouch ready\nexec sleep 1000");
    let _a = supervise(Flavour::Warden, &unchecked);
    let _b = supervise(Flavour::Warden, &stubborn);
    // A TERM before the trap is set would bring it down within the wait.
    wait_until("the trap", SETTLE, || stubborn.join("ready").exists());
    for (name, command, goal) in [("unchecked", "up", "up"), ("stubborn", "down", "down")] {
        let start = Instant::now();
        let (code, _, err) = svctl(s, &["-w", "700ms", command, name]);
        let took = start.elapsed();
        assert_eq!(code, Some(1), "{name}: {err}");
        assert!(err.contains("timed out after 700ms"), "{err}");
        assert!(
            err.contains(&format!("waiting for {name} to be {goal}")),
            "{err}"
        );
        assert!(
            took >= Duration::from_millis(700) && took < Duration::from_secs(5),
            "{took:?}"
        );
    }
    // KILL ends it, and as it wants down it stays down.
    assert_eq!(svctl(s, &["-w", "5", "kill", "stubborn"]).0, Some(0));
    assert_eq!(json_status(s, "stubborn")["state"], "down");
}

#[test]
fn check_script_is_rerun_until_it_passes() {
    let scan = scandir();
    let s = scan.path();
    let dir = sleeper(s, "web");
    fs::write(dir.join("down"), "").unwrap();
    script(
        &dir.join("check"),
        "n=$(cat count 2>/dev/null || echo 0)\nn=$((n + 1))\necho $n > count\n\
         echo check output goes nowhere\n[ $n -ge 3 ]",
    );
    let _sup = supervise(Flavour::Warden, &dir);
    // Normally down and wanted down: check is satisfied without running ./check.
    assert_eq!(svctl(s, &["check", "web"]).0, Some(0));
    assert!(!dir.join("count").exists());

    let (code, out, err) = svctl(s, &["-w", "10", "up", "web"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, "", "./check's stdout is not svctl's");
    assert_eq!(
        lines(&dir.join("count")),
        vec!["3"],
        "run until it passed, then no more"
    );
    assert_eq!(svctl(s, &["check", "web"]).0, Some(0));
    assert_eq!(lines(&dir.join("count")), vec!["4"]);

    script(&dir.join("check"), "exit 1");
    let (code, _, err) = svctl(s, &["check", "web"]);
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("web is not in its wanted state"), "{err}");
}

/// svctl on a terminal set to `tostop` (`stty tostop`), in its foreground: the `./check` it
/// runs (`svctl check`, `-w` against runsv) writes there (its stderr is svctl's), so it must
/// run in svctl's process group, as `sv` runs it; in a group of its own it was a background
/// job, stopped by SIGTTOU at its first message, and svctl waited out its deadline.
#[test]
fn a_check_that_writes_to_a_tostop_terminal_runs_in_the_foreground() {
    let scan = scandir();
    let s = scan.path();
    let dir = sleeper(s, "web");
    script(&dir.join("check"), "echo checking web >&2\nexit 0");
    let _sup = supervise(Flavour::Warden, &dir);
    // Up and ready (its supervisor ran the check, off the terminal): `svctl check` then
    // decides by running it once more, on the terminal.
    let (code, _, err) = svctl(s, &["-w", "10", "up", "web"]);
    assert_eq!(code, Some(0), "{err}");
    let pty = warden_tests::Pty::open();
    pty.set_tostop();
    let mut cmd = Command::new(bin("svctl"));
    cmd.arg("-d")
        .arg(s)
        .args(["check", "web"])
        .stdin(Stdio::null());
    // svctl leads the terminal's session in its foreground, as a shell's foreground job.
    pty.attach(&mut cmd, false);
    let started = Instant::now();
    let mut svctl = Spawned::new(&mut cmd);
    let status = svctl.wait_exit(RUN_LIMIT);
    assert_eq!(status.code(), Some(0), "svctl check: {:?}", pty.shown());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "svctl waited {:?}, its check stopped",
        started.elapsed()
    );
    wait_until("the check's message on the terminal", SETTLE, || {
        pty.shown().contains("checking web")
    });
}

#[test]
fn status_line_and_json_show_the_service_and_its_logger() {
    let scan = scandir();
    let s = scan.path();
    let dir = sleeper(s, "web");
    script(&dir.join("log/run"), "exec sleep 1000");
    let _log = supervise(Flavour::Warden, &dir.join("log"));
    let _sup = supervise(Flavour::Warden, &dir);
    let first = running_pid(s, "web");
    assert_eq!(svctl(s, &["-w", "5", "kill", "web"]).0, Some(0));
    let pid = pid_of(s, "web");
    assert_ne!(pid, first);
    let log_pid = ServiceDir::new(dir.join("log")).status().unwrap().pid;

    let (code, out, _) = svctl(s, &["status", "--short", "web"]);
    assert_eq!(code, Some(0));
    let out = out.trim_end();
    let (main, log) = out.split_once("; ").expect("two parts");
    assert!(main.starts_with(&format!("web: up (pid {pid}) ")), "{out}");
    for part in [", normally up", ", restarts 1", ", last exit signal KILL"] {
        assert!(main.contains(part), "{part} missing: {out}");
    }
    assert!(
        log.starts_with(&format!("log: up (pid {log_pid}) ")),
        "{out}"
    );
    assert_eq!(out.lines().count(), 1);

    let v = json_status(s, "web");
    assert_eq!(v["name"], "web");
    assert_eq!(v["path"], dir.to_str().unwrap());
    assert_eq!(v["supervisor"], "warden");
    assert_eq!(v["state"], "up");
    assert_eq!(v["pid"], pid);
    assert_eq!(v["normally"], "up");
    assert_eq!(v["want"], "up");
    assert_eq!(v["paused"], false);
    assert_eq!(v["restarts"], 1);
    assert_eq!(v["last_exit"]["signal"], "KILL");
    assert_eq!(v["last_exit"]["number"], 9);
    let since = v["since"].as_i64().unwrap();
    let now = Tai64N::now().unix_secs();
    assert!(since <= now && now - since < 60, "{since} vs {now}");
    assert_eq!(v["log"]["state"], "up");
    assert_eq!(v["log"]["pid"], log_pid);
}

#[test]
fn status_without_service_lists_the_scan_dir() {
    let scan = scandir();
    let s = scan.path();
    let web = sleeper(s, "web");
    let db = sleeper(s, "db");
    fs::write(db.join("down"), "").unwrap();
    sleeper(s, ".hidden");
    fs::write(s.join("README"), "not a service").unwrap();
    let _a = supervise(Flavour::Warden, &web);
    let _b = supervise(Flavour::Warden, &db);
    let (code, out, err) = svctl(s, &["status"]);
    let names: Vec<&str> = out.lines().filter_map(|l| l.split(':').next()).collect();
    assert_eq!(names, vec!["db", "web"], "{out}{err}");
    assert!(out.contains("db: down "), "{out}");
    assert!(out.contains("web: up (pid "), "{out}");
    assert_eq!(code, Some(3), "db is down");
    let (_, out, _) = svctl(s, &["status", "--json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["db", "web"]);
}

#[test]
fn errors_have_their_own_messages_and_exit_codes() {
    let scan = scandir();
    let s = scan.path();

    let (code, _, err) = svctl(s, &["up", "nope"]);
    assert_eq!(code, Some(5), "{err}");
    assert_eq!(
        err.trim(),
        format!(
            "svctl: fatal: unable to control {}/nope: no such service",
            s.display()
        )
    );

    let unsupervised = sleeper(s, "idle");
    let (code, _, err) = svctl(s, &["up", "idle"]);
    assert_eq!(code, Some(4), "{err}");
    assert_eq!(
        err.trim(),
        format!(
            "svctl: fatal: unable to control {}: supervise not running",
            unsupervised.display()
        )
    );
    assert_eq!(svctl(s, &["status", "idle"]).0, Some(4));

    // A supervisor (the test holds `ok` open) whose status file is junk.
    let junk = sleeper(s, "junk");
    let sup = junk.join("supervise");
    fs::create_dir(&sup).unwrap();
    for fifo in ["ok", "control"] {
        rustix::fs::mknodat(
            rustix::fs::CWD,
            sup.join(fifo),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
    }
    let _reader = rustix::fs::open(
        sup.join("ok"),
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .unwrap();
    fs::write(sup.join("status"), "junk").unwrap();
    let (code, _, err) = svctl(s, &["status", "junk"]);
    assert_eq!(code, Some(7), "{err}");
    assert!(err.contains("unreadable status"), "{err}");

    let (code, _, err) = svctl(s, &["frobnicate", "web"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("usage: svctl"), "{err}");

    // Several services: all are processed, the highest code wins.
    let web = sleeper(s, "web");
    let _web = supervise(Flavour::Warden, &web);
    let (code, out, err) = svctl(s, &["status", "web", "nope", "idle"]);
    assert_eq!(code, Some(5), "{err}");
    assert!(out.starts_with("web: up"), "{out}");
    assert!(err.contains("nope: no such service"), "{err}");
    assert!(err.contains("idle: supervise not running"), "{err}");
}

#[test]
fn permission_denied_for_another_user() {
    let scan = scandir();
    let s = scan.path();
    let dir = sleeper(s, "web");
    let _sup = supervise(Flavour::Warden, &dir);
    let as_other = |args: &[&str]| {
        let mut cmd = if rustix::process::geteuid().is_root() {
            require("setpriv", "util-linux");
            let mut cmd = Command::new("setpriv");
            cmd.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"]);
            cmd.arg(bin("svctl"));
            cmd
        } else {
            // Already unprivileged: shut ourselves out instead.
            fs::set_permissions(dir.join("supervise"), fs::Permissions::from_mode(0o000)).unwrap();
            Command::new(bin("svctl"))
        };
        cmd.arg("-d").arg(s).args(args);
        run(&mut cmd, RUN_LIMIT)
    };
    for args in [
        &["status", "web"][..],
        &["up", "web"],
        &["-w", "1", "down", "web"],
    ] {
        let (code, _, err) = as_other(args);
        assert_eq!(code, Some(6), "{args:?}: {err}");
        assert!(err.contains("permission denied"), "{err}");
    }
    fs::set_permissions(dir.join("supervise"), fs::Permissions::from_mode(0o700)).unwrap();
    assert_eq!(json_status(s, "web")["state"], "up", "nothing was done");
}

#[test]
fn help_shows_the_one_exit_code_table() {
    let (code, out, _) = run(Command::new(bin("svctl")).arg("--help"), RUN_LIMIT);
    assert_eq!(code, Some(0));
    for row in [
        "  0    success",
        "  1    timeout",
        "  2    usage",
        "  3    status/check",
        "  4    not supervised",
        "  5    no such service",
        "  6    permission denied",
        "  7    unreadable status",
        "  111  other system error",
    ] {
        assert!(out.contains(row), "{row:?} missing from --help");
    }
}

#[test]
fn svscan_commands_reach_its_control_fifo() {
    let scan = scandir();
    let s = scan.path();
    let (code, _, err) = svctl(s, &["rescan"]);
    assert_eq!(code, Some(4), "{err}");
    assert!(err.contains("svscan not running"), "{err}");

    let fifo = s.join(".svscan/control");
    fs::create_dir(s.join(".svscan")).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    let reader = rustix::fs::open(
        &fifo,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .unwrap();
    // Only a fake reader ever sees these: no real svscan, no real PID 1.
    for (command, byte) in [
        ("rescan", b'a'),
        ("shutdown", b't'),
        ("poweroff", b'p'),
        ("reboot", b'r'),
        ("halt", b'h'),
    ] {
        let (code, _, err) = svctl(s, &[command]);
        assert_eq!(code, Some(0), "{command}: {err}");
        let mut buf = [0u8; 8];
        assert_eq!(rustix::io::read(&reader, &mut buf), Ok(1), "{command}");
        assert_eq!(buf[0], byte, "{command}");
    }
    // -w shutdown waits for the lock holder to exit; this one never does.
    require("flock", "util-linux");
    let holder = Spawned::new(
        Command::new("flock")
            .arg("-x")
            .arg(s.join(".svscan/lock"))
            .arg("cat")
            .stdin(Stdio::piped()),
    );
    wait_until("the fake svscan to hold its lock", SETTLE, || {
        fs::read_to_string("/proc/locks")
            .unwrap()
            .contains(&format!(" {} ", holder.pid()))
    });
    let start = Instant::now();
    let (code, _, err) = svctl(s, &["-w", "300ms", "shutdown"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(start.elapsed() >= Duration::from_millis(300));
    assert!(err.contains("waiting for svscan"), "{err}");
    drop(holder);

    drop(reader);
    let (code, _, err) = svctl(s, &["shutdown"]);
    assert_eq!(code, Some(4), "{err}");
}

/// `unshare ... sh -c SCRIPT`: sh is PID 1 of a fresh PID namespace.
fn in_pid_namespace(script: &str, args: &[&Path]) -> Command {
    let mut cmd = warden_tests::unshare_pid_and_mount();
    cmd.args(["sh", "-c", script, "sh"]).args(args);
    cmd
}

#[test]
fn power_names_signal_pid_1_of_a_pid_namespace_only() {
    let tmp = tempfile::tempdir().unwrap();
    // PID 1 here is a shell the test started: it records which signal came, then exits.
    // It refuses to run the command unless it really is PID 1 of its own namespace.
    let pid1 = r#"
[ "$$" = 1 ] || { echo "not pid 1" > "$2"; exit 99; }
trap 'echo USR1 > "$2"; exit 0' USR1
trap 'echo INT > "$2"; exit 0' INT
trap 'echo USR2 > "$2"; exit 0' USR2
"$1"
sleep 10 & wait $!
echo none > "$2""#;
    for (name, signal) in [("poweroff", "USR1"), ("reboot", "INT"), ("halt", "USR2")] {
        let link = tmp.path().join(name);
        std::os::unix::fs::symlink(bin("svctl"), &link).unwrap();
        let out = tmp.path().join(format!("{name}.got"));
        let (code, _, err) = run(&mut in_pid_namespace(pid1, &[&link, &out]), RUN_LIMIT);
        assert_eq!(code, Some(0), "{name}: {err}");
        assert_eq!(fs::read_to_string(&out).unwrap().trim(), signal, "{name}");
    }
}

#[test]
fn log_execs_logger_show_on_log_main() {
    let scan = scandir();
    let s = scan.path();
    let dir = sleeper(s, "web");
    // svctl runs the `logger` next to its own executable: a copy with a fake logger.
    let tools = tempfile::tempdir().unwrap();
    let svctl_copy = tools.path().join("svctl");
    fs::copy(bin("svctl"), &svctl_copy).unwrap();
    script(&tools.path().join("logger"), r#"printf '%s\n' "$@""#);
    let log = |args: &[&str]| {
        run(
            Command::new(&svctl_copy).arg("-d").arg(s).args(args),
            RUN_LIMIT,
        )
    };

    let (code, _, err) = log(&["log", "web"]);
    assert_eq!(code, Some(5), "{err}");
    assert!(err.contains("log/main"), "{err}");
    assert_eq!(log(&["log", "nope"]).0, Some(5));

    fs::create_dir_all(dir.join("log/main")).unwrap();
    let (code, out, err) = log(&["log", "web", "-n", "20", "-f"]);
    assert_eq!(code, Some(0), "{err}");
    let main = dir.join("log/main");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        vec!["--show", "-n", "20", "-f", main.to_str().unwrap()]
    );
    let (_, out, _) = log(&["log", "web"]);
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        vec!["--show", main.to_str().unwrap()]
    );
}

/// The same client against runit's runsv: the on-disk protocol is runit's.
#[test]
fn runsv_is_controlled_the_same_way() {
    let scan = scandir();
    let s = scan.path();
    let dir = sleeper(s, "web");
    let mut sup = supervise(Flavour::Runit, &dir);
    let first = running_pid(s, "web");
    let (code, out, _) = svctl(s, &["status", "web"]);
    assert_eq!(code, Some(0));
    assert!(
        out.starts_with(&format!("web: up (pid {first}) ")) && out.contains(", normally up"),
        "{out}"
    );
    assert!(
        !out.contains("restarts"),
        "runsv keeps no restart count: {out}"
    );
    let v = json_status(s, "web");
    assert_eq!(v["supervisor"], "runit");
    assert_eq!(v["restarts"], Value::Null);

    assert_eq!(svctl(s, &["-w", "5", "down", "web"]).0, Some(0));
    assert_eq!(json_status(s, "web")["state"], "down");
    assert_eq!(svctl(s, &["-w", "5", "up", "web"]).0, Some(0));
    assert_eq!(svctl(s, &["-w", "5", "restart", "web"]).0, Some(0));
    let last = pid_of(s, "web");
    assert!(last != first && last > 0);
    assert_eq!(lines(&dir.join("runs")).len(), 3);
    assert_eq!(svctl(s, &["-w", "5", "exit", "web"]).0, Some(0));
    assert!(sup.process.wait_exit(SETTLE).success());
}

/// svscan, torn down on drop (if a test failed before its own shutdown), so that no
/// supervise or service outlives the test.
struct Svscan(Spawned, PathBuf);

impl Drop for Svscan {
    fn drop(&mut self) {
        if let Ok(Some(_)) = self.0.child.try_wait() {
            return;
        }
        let _ = fs::OpenOptions::new()
            .write(true)
            .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
            .open(self.1.join(".svscan/control"))
            .and_then(|mut fifo| std::io::Write::write_all(&mut fifo, b"t"));
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// The whole tree: warden's svscan starts supervise for the service and its logger; svctl
/// controls the service, shows its log through `logger --show`, and shuts svscan down.
#[test]
fn svctl_drives_a_real_svscan_tree() {
    let scan = scandir();
    let s = scan.path();
    let dir = service(s, "web", "echo hello from web\nexec sleep 1000");
    script(
        &dir.join("log/run"),
        &format!("exec {} ./main", bin("logger").display()),
    );
    // A log/ without run (as example-service-dir/clock has) is supervised too, running the
    // default logger: svctl shows it like any other, never as "not supervised".
    let clock = service(s, "clock", "echo tick from clock\nexec sleep 1000");
    fs::create_dir(clock.join("log")).unwrap();
    fs::write(clock.join("log/README"), "no run: the default logger\n").unwrap();
    let out = fs::File::create(s.join(".svscan.out")).unwrap();
    let mut svscan = Svscan(
        Spawned::new(
            Command::new(bin("svscan"))
                .arg(s)
                .stdin(Stdio::null())
                .stdout(out.try_clone().unwrap())
                .stderr(out),
        ),
        s.to_owned(),
    );
    wait_until("svscan to start web and its logger", SETTLE, || {
        let v = json_status(s, "web");
        v["state"] == "up" && v["log"]["state"] == "up"
    });
    wait_until("the logger to write the line", SETTLE, || {
        svctl(s, &["log", "web", "-n", "5"])
            .1
            .contains("hello from web")
    });
    wait_until(
        "svscan to start clock and its default logger",
        SETTLE,
        || {
            let v = json_status(s, "clock");
            v["state"] == "up" && v["log"]["state"] == "up"
        },
    );
    wait_until("the default logger to write clock's line", SETTLE, || {
        svctl(s, &["log", "clock", "-n", "5"])
            .1
            .contains("tick from clock")
    });
    let (code, out, _) = svctl(s, &["status"]);
    assert_eq!(code, Some(0));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    for (line, name) in lines.iter().zip(["clock", "web"]) {
        assert!(
            line.starts_with(&format!("{name}: up (pid ")) && line.contains("; log: up (pid "),
            "{out}"
        );
    }
    assert!(!out.contains("not supervised"), "{out}");

    assert_eq!(svctl(s, &["-w", "5", "restart", "web"]).0, Some(0));
    wait_until("the new run's line", SETTLE, || {
        svctl(s, &["log", "web"])
            .1
            .matches("hello from web")
            .count()
            == 2
    });
    assert_eq!(svctl(s, &["rescan"]).0, Some(0));
    let pid = pid_of(s, "web");
    let clock_pid = pid_of(s, "clock");
    let (code, _, err) = svctl(s, &["-w", "20", "shutdown"]);
    assert_eq!(code, Some(0), "{err}");
    let status = svscan
        .0
        .child
        .try_wait()
        .unwrap()
        .expect("-w shutdown returned once svscan had exited");
    assert!(status.success(), "svscan after shutdown: {status:?}");
    assert!(!alive(pid as i32), "the service was stopped");
    assert!(!alive(clock_pid as i32), "clock was stopped");
    assert_eq!(svctl(s, &["rescan"]).0, Some(4), "svscan is gone");
}

/// warden's supervise writes `status` a moment before `supervise/warden`; in that moment a
/// notifying service must not look ready. svctl tells warden's supervisor from runsv by the
/// name of the process holding `supervise/lock`. Here a copy of flock(1) plays either one.
/// A hand-made `supervise/` serving a running `web` (this process stands in for the
/// supervisor: it holds `ok` and `control` open for reading). `marks` are what warden's
/// supervise adds to runit's layout: `warden` and/or `event`.
fn fake_supervise(dir: &Path, marks: &[&str]) -> Vec<rustix::fd::OwnedFd> {
    let sup = dir.join("supervise");
    fs::create_dir(&sup).unwrap();
    let mut held = Vec::new();
    for fifo in ["ok", "control"] {
        rustix::fs::mknodat(
            rustix::fs::CWD,
            sup.join(fifo),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        held.push(
            rustix::fs::open(
                sup.join(fifo),
                rustix::fs::OFlags::RDONLY
                    | rustix::fs::OFlags::NONBLOCK
                    | rustix::fs::OFlags::CLOEXEC,
                rustix::fs::Mode::empty(),
            )
            .unwrap(),
        );
    }
    if marks.contains(&"warden") {
        // An extended status with no readiness recorded yet.
        fs::write(sup.join("warden"), "restarts 0\n").unwrap();
    }
    if marks.contains(&"event") {
        fs::create_dir(sup.join("event")).unwrap();
    }
    let status = warden_tests::warden::status::Status {
        stamp: Tai64N::now(),
        pid: std::process::id(),
        paused: false,
        want: warden_tests::warden::status::Want::Up,
        term_sent: false,
        state: warden_tests::warden::status::RunState::Run,
    };
    fs::write(sup.join("status"), status.encode()).unwrap();
    held
}

#[test]
fn readiness_is_pending_until_warden_writes_its_extended_status() {
    // warden's supervise writes `supervise/warden` and makes `supervise/event/` before its
    // first `status`: either one means warden, and a notifying service without a recorded
    // readiness is not ready. A status with neither is runsv's, which records no readiness,
    // so running is enough there.
    for (marks, up_code, shown) in [
        (&["warden", "event"][..], 1, ", not ready"),
        (&["warden"][..], 1, ", not ready"),
        (&["event"][..], 1, ", not ready"),
        (&[][..], 0, ""),
    ] {
        let scan = scandir();
        let s = scan.path();
        let dir = sleeper(s, "web");
        fs::write(dir.join("notification-fd"), "3\n").unwrap();
        let _held = fake_supervise(&dir, marks);
        let (code, out, _) = svctl(s, &["status", "web"]);
        assert_eq!(code, Some(0), "{marks:?}");
        assert_eq!(out.contains("ready"), !shown.is_empty(), "{marks:?}: {out}");
        assert!(out.contains(shown), "{marks:?}: {out}");
        let supervisor = json_status(s, "web")["supervisor"].clone();
        let expected = if marks.is_empty() { "runit" } else { "warden" };
        assert_eq!(supervisor, expected, "{marks:?}");
        let (code, _, err) = svctl(s, &["-w", "300ms", "up", "web"]);
        assert_eq!(code, Some(up_code), "{marks:?}: {err}");
        if marks.contains(&"event") {
            let left: Vec<_> = fs::read_dir(dir.join("supervise/event")).unwrap().collect();
            assert!(left.is_empty(), "a timed-out wait left {left:?}");
        }
    }
}

/// A warden-supervised service whose `./check` never passes, so `-w up` keeps waiting.
fn never_checked(scan: &Path) -> (PathBuf, Supervised) {
    let dir = sleeper(scan, "slow");
    script(&dir.join("check"), "exit 1");
    let sup = supervise(Flavour::Warden, &dir);
    running_pid(scan, "slow");
    (dir, sup)
}

fn event_fifos(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir.join("supervise/event"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect()
}

/// What a waiting svctl has open, as the link targets of /proc/PID/fd.
fn open_files(pid: u32) -> Vec<String> {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| fs::read_link(e.path()).ok())
                .map(|t| t.to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn wait_under_warden_listens_on_an_event_fifo_not_inotify_and_removes_it() {
    let scan = scandir();
    let s = scan.path();
    let (dir, _sup) = never_checked(s);
    let mut waiting = Spawned::new(
        Command::new(bin("svctl"))
            .args(["-w", "4", "up"])
            .arg(&dir)
            .stderr(Stdio::null()),
    );
    wait_until("svctl to make its event FIFO", SETTLE, || {
        event_fifos(&dir).len() == 1
    });
    let fifo = event_fifos(&dir).remove(0);
    let name = fifo.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.starts_with(&format!("svctl.{}.", waiting.pid())),
        "{name}"
    );
    // The FIFO is made, then opened: wait for the open.
    wait_until("svctl to open its event FIFO", SETTLE, || {
        open_files(waiting.pid() as u32)
            .iter()
            .any(|f| f.ends_with(&name))
    });
    let files = open_files(waiting.pid() as u32);
    assert!(
        !files.iter().any(|f| f.contains("inotify")),
        "an inotify fd costs ~15 ms to close: {files:?}"
    );
    // A restart changes the status several times; each change wakes the waiter, which reads
    // the new run's readiness as still pending and keeps waiting.
    let old = pid_of(s, "slow");
    let (code, _, err) = svctl(s, &["restart", "slow"]);
    assert_eq!(code, Some(0), "{err}");
    wait_until("the new run", SETTLE, || {
        ![0, old].contains(&pid_of(s, "slow"))
    });
    assert!(
        waiting.child.try_wait().unwrap().is_none(),
        "returned early"
    );
    let status = waiting.wait_exit(SETTLE);
    assert_eq!(status.code(), Some(1), "timed out as it should");
    assert!(event_fifos(&dir).is_empty(), "{:?}", event_fifos(&dir));
}

#[test]
fn interrupted_wait_removes_its_fifo_and_dies_of_the_signal() {
    use std::os::unix::process::ExitStatusExt;
    let scan = scandir();
    let s = scan.path();
    let (dir, _sup) = never_checked(s);
    for signal in [rustix::process::Signal::INT, rustix::process::Signal::TERM] {
        let mut waiting = Spawned::new(
            Command::new(bin("svctl"))
                .args(["-w", "20", "up"])
                .arg(&dir)
                .stderr(Stdio::null()),
        );
        wait_until("svctl to make its event FIFO", SETTLE, || {
            event_fifos(&dir).len() == 1
        });
        rustix::process::kill_process(
            rustix::process::Pid::from_raw(waiting.pid()).unwrap(),
            signal,
        )
        .unwrap();
        let status = waiting.wait_exit(SETTLE);
        assert_eq!(status.signal(), Some(signal.as_raw()), "{status:?}");
        assert!(event_fifos(&dir).is_empty(), "{:?}", event_fifos(&dir));
    }
}

#[test]
fn a_signal_after_an_event_fifo_wait_still_kills() {
    // `-w up fast slow`: fast (warden) is waited for through a FIFO, slow (runsv, with a
    // check that never passes) through inotify. The handlers installed for fast's FIFO must
    // not swallow a TERM during slow's wait.
    use std::os::unix::process::ExitStatusExt;
    let scan = scandir();
    let s = scan.path();
    let fast = sleeper(s, "fast");
    let slow = sleeper(s, "slow");
    script(&slow.join("check"), "exit 1");
    let _a = supervise(Flavour::Warden, &fast);
    let _b = supervise(Flavour::Runit, &slow);
    running_pid(s, "slow");
    let mut waiting = Spawned::new(
        Command::new(bin("svctl"))
            .args(["-w", "20", "up"])
            .arg(&fast)
            .arg(&slow)
            .stderr(Stdio::null()),
    );
    wait_until("svctl to wait for slow through inotify", SETTLE, || {
        open_files(waiting.pid() as u32)
            .iter()
            .any(|f| f.contains("inotify"))
    });
    assert!(event_fifos(&fast).is_empty());
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(waiting.pid()).unwrap(),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    let status = waiting.wait_exit(SETTLE);
    assert_eq!(
        status.signal(),
        Some(rustix::process::Signal::TERM.as_raw()),
        "{status:?}"
    );
}

#[test]
fn wait_ends_when_the_supervisor_dies_while_another_process_still_holds_its_ok_fifo() {
    // A child of the supervisor caught between its fork and its exec holds `supervise/ok` a
    // moment longer than the supervisor (this test holds it throughout): the supervisor's
    // pidfd, not `ok`, says it is gone. Without that svctl waited for its whole -w.
    wait_up_then_kill_the_supervisor(true);
}

#[test]
fn wait_ends_when_the_supervisor_dies_instead_of_timing_out() {
    // supervise's death writes no event; svctl holds a pidfd on it for that.
    wait_up_then_kill_the_supervisor(false);
}

/// `svctl -w 20 up` on a service whose check never passes; its supervisor is KILLed once
/// svctl waits (with `supervise/ok` held open by this test if `hold_ok`): svctl must say
/// "not supervised" at once and leave no FIFO.
fn wait_up_then_kill_the_supervisor(hold_ok: bool) {
    let scan = scandir();
    let s = scan.path();
    let (dir, sup) = never_checked(s);
    let _ok = hold_ok.then(|| {
        fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(dir.join("supervise/ok"))
            .unwrap()
    });
    let mut waiting = Spawned::new(
        Command::new(bin("svctl"))
            .args(["-w", "20", "up"])
            .arg(&dir)
            .stderr(Stdio::null()),
    );
    wait_until("svctl to make its event FIFO", SETTLE, || {
        event_fifos(&dir).len() == 1
    });
    let started = Instant::now();
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(sup.process.pid()).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    let status = waiting.wait_exit(SETTLE);
    assert_eq!(status.code(), Some(4), "not supervised");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(event_fifos(&dir).is_empty(), "{:?}", event_fifos(&dir));
    drop(sup);
}
