//! Issue 11, items 4-6: the daemons survive a broken stderr, init reaches its own code with
//! fds 0-2 closed and no /dev/null or with a non-UTF-8 argument, and huge durations from the
//! environment, setting files and the command line do not overflow a deadline.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use warden_tests::{alive, bin, run, script, service, wait_until, Spawned};

const LONG: Duration = Duration::from_secs(20);

/// The write end of a pipe whose read end is already closed: every write fails with EPIPE.
fn broken_pipe() -> OwnedFd {
    let (reader, writer) = rustix::pipe::pipe().unwrap();
    drop(reader);
    writer
}

/// A child that is TERMed (then KILLed) with everything whose cwd is under `root` at the end.
struct Cleanup<'a> {
    root: &'a Path,
    child: Option<Spawned>,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            let _ = rustix::process::kill_process(
                rustix::process::Pid::from_raw(child.pid()).unwrap(),
                rustix::process::Signal::TERM,
            );
            let deadline = Instant::now() + Duration::from_secs(10);
            let mut child = child;
            while Instant::now() < deadline && child.child.try_wait().ok().flatten().is_none() {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        for pid in pids_under(self.root) {
            if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
        warden_tests::remove_cgroups_under(self.root, Duration::from_secs(5));
    }
}

fn pids_under(root: &Path) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let e = e.ok()?;
        let pid: i32 = e.file_name().to_str()?.parse().ok()?;
        let cwd = std::fs::read_link(e.path().join("cwd")).ok()?;
        cwd.starts_with(root).then_some(pid)
    })
    .collect()
}

fn marker(root: &Path, name: &str) -> PathBuf {
    service(root, name, "echo $$ > started\nexec sleep 1000")
}

#[test]
fn issue_11_4_svscan_survives_a_broken_stderr() {
    let root = tempfile::tempdir().unwrap();
    let scan = root.path().join("service");
    std::fs::create_dir(&scan).unwrap();
    let stderr = broken_pipe();
    let mut cmd = Command::new(bin("svscan"));
    cmd.arg(&scan)
        .stdin(Stdio::null())
        .stdout(Stdio::from(stderr.try_clone().unwrap()))
        .stderr(Stdio::from(stderr));
    let mut guard = Cleanup {
        root: root.path(),
        child: Some(Spawned::new(&mut cmd)),
    };
    let pid = guard.child.as_ref().unwrap().pid();
    let first = marker(&scan, "first");
    wait_until("the first service", LONG, || first.join("started").exists());
    // A broken symlink is worth a warning, which svscan cannot write.
    std::os::unix::fs::symlink("/nonexistent/warden", scan.join("dangling")).unwrap();
    // A service added after it shows the warning's scan is done.
    let stage = root.path().join("stage");
    let late = marker(&stage, "late");
    std::fs::rename(&late, scan.join("late")).unwrap();
    wait_until("the late service", LONG, || {
        scan.join("late/started").exists() || !alive(pid)
    });
    let status = guard.child.as_mut().unwrap().child.try_wait().unwrap();
    assert!(status.is_none(), "svscan died: {status:?}");
    assert!(alive(pid));
    drop(guard);
}

#[test]
fn issue_11_4_supervise_survives_a_broken_stderr() {
    let root = tempfile::tempdir().unwrap();
    // A bad setting is reported at each start; each run exits, so there are several.
    let svc = service(root.path(), "svc", "echo x >> starts\nexit 0");
    std::fs::write(svc.join("timeout-kill"), "ten\n").unwrap();
    let stderr = broken_pipe();
    let mut cmd = Command::new(bin("supervise"));
    cmd.arg(&svc)
        .current_dir(root.path())
        .stdin(Stdio::null())
        .stdout(Stdio::from(stderr.try_clone().unwrap()))
        .stderr(Stdio::from(stderr));
    let mut guard = Cleanup {
        root: root.path(),
        child: Some(Spawned::new(&mut cmd)),
    };
    let pid = guard.child.as_ref().unwrap().pid();
    let starts = || {
        std::fs::read_to_string(svc.join("starts"))
            .map(|s| s.lines().count())
            .unwrap_or(0)
    };
    wait_until("two starts", LONG, || starts() >= 2 || !alive(pid));
    let status = guard.child.as_mut().unwrap().child.try_wait().unwrap();
    assert!(status.is_none(), "supervise died: {status:?}");
    drop(guard);
}

/// `init -- CMD` in a mount namespace whose /dev is an empty tmpfs (no /dev/null), started
/// with fds 0-2 closed: CMD runs, and sees fds 0-2 as closed (writes fail) rather than init
/// aborting before its main. `unshare` gives the namespace (a user one too when not root).
#[test]
fn issue_11_5_init_runs_cmd_with_fds_0_to_2_closed_and_no_dev_null() {
    warden_tests::require("unshare", "util-linux");
    let root = tempfile::tempdir().unwrap();
    let out = root.path().join("out");
    let mut cmd = Command::new("unshare");
    if !rustix::process::geteuid().is_root() {
        cmd.args(["--user", "--map-root-user"]);
    }
    cmd.args(["--mount", "--propagation", "private", "/bin/sh", "-c"])
        .arg(
            "mount -t tmpfs none /dev || exit 90
             exec \"$0\" -- /bin/sh -c 'if echo x >&2; then r=open; else r=closed; fi
                 test -e /dev/null && r=\"$r null\"; echo \"ran $r\" > \"$OUT\"; exit 7' \
                 0<&- 1>&- 2>&-",
        )
        .arg(bin("init"))
        .env("OUT", &out);
    let (code, stdout, stderr) = run(&mut cmd, LONG);
    assert_eq!(code, Some(7), "init: {stdout} {stderr}");
    assert_eq!(
        std::fs::read_to_string(&out).unwrap_or_default(),
        "ran closed\n"
    );
}

/// A word that is not UTF-8 is passed to CMD byte for byte, and stage 1 is not reached
/// through a panic in std::env::args.
#[test]
fn issue_11_5_init_passes_a_non_utf8_argument_to_cmd() {
    use std::os::unix::ffi::OsStrExt;
    let root = tempfile::tempdir().unwrap();
    let out = root.path().join("out");
    let odd = std::ffi::OsStr::from_bytes(b"a\xff\xfeb");
    let (code, stdout, stderr) = run(
        Command::new(bin("init"))
            .args(["--", "/bin/sh", "-c", "printf %s \"$1\" > \"$OUT\"", "sh"])
            .arg(odd)
            .env("OUT", &out),
        LONG,
    );
    assert_eq!(code, Some(0), "init: {stdout} {stderr}");
    assert_eq!(std::fs::read(&out).unwrap_or_default(), b"a\xff\xfeb");
}

/// More seconds than an Instant can be ahead by, but within what a Duration holds.
const HUGE: &str = "10000000000000000000s";

/// `init -- CMD` whose CMD leaves a process behind: init TERMs it and waits up to the grace,
/// which is as good as forever rather than a panic.
#[test]
fn issue_11_6_init_takes_a_huge_grace() {
    let (code, stdout, stderr) = run(
        Command::new(bin("init"))
            .args(["--", "/bin/sh", "-c", "sleep 1000 & exit 3"])
            .env("WARDEN_GRACE", HUGE),
        LONG,
    );
    assert_eq!(code, Some(3), "init: {stdout} {stderr}");
}

/// A supervised service whose `timeout-kill` is huge: `svctl -w HUGE down` (a huge wait too)
/// stops it, the supervisor lives on, and `svctl -w HUGE up` starts it again.
#[test]
fn issue_11_6_huge_timeout_kill_and_svctl_wait() {
    let root = tempfile::tempdir().unwrap();
    let svc = marker(root.path(), "svc");
    std::fs::write(svc.join("timeout-kill"), format!("{HUGE}\n")).unwrap();
    std::fs::write(svc.join("timeout-finish"), format!("{HUGE}\n")).unwrap();
    script(&svc.join("finish"), "exit 0");
    let mut cmd = Command::new(bin("supervise"));
    cmd.arg(&svc).stdin(Stdio::null());
    let mut guard = Cleanup {
        root: root.path(),
        child: Some(Spawned::new(&mut cmd)),
    };
    let pid = guard.child.as_ref().unwrap().pid();
    wait_until("the service", LONG, || svc.join("started").exists());
    let svctl = |verb: &str| {
        run(
            Command::new(bin("svctl"))
                .args(["-w", HUGE, verb])
                .arg(&svc),
            LONG,
        )
    };
    let (code, stdout, stderr) = svctl("down");
    assert_eq!(code, Some(0), "svctl down: {stdout} {stderr}");
    std::fs::remove_file(svc.join("started")).unwrap();
    let (code, stdout, stderr) = svctl("up");
    assert_eq!(code, Some(0), "svctl up: {stdout} {stderr}");
    wait_until("the service again", LONG, || {
        svc.join("started").exists() || !alive(pid)
    });
    let status = guard.child.as_mut().unwrap().child.try_wait().unwrap();
    assert!(status.is_none(), "supervise died: {status:?}");
    drop(guard);
}

/// Runs `program args` on a pseudo-terminal (util-linux's `script`), returning what it wrote.
fn on_a_terminal(program: &Path, args: &[&std::ffi::OsStr]) -> Vec<u8> {
    warden_tests::require("script", "util-linux");
    // script runs a shell command line: each word single-quoted.
    let quote = |w: &std::ffi::OsStr| {
        let mut q = b"'".to_vec();
        for &b in w.as_encoded_bytes() {
            if b == b'\'' {
                q.extend_from_slice(b"'\\''");
            } else {
                q.push(b);
            }
        }
        q.push(b'\'');
        q
    };
    let mut line = quote(program.as_os_str());
    for a in args {
        line.push(b' ');
        line.extend(quote(a));
    }
    use std::os::unix::ffi::OsStrExt;
    let out = Command::new("script")
        .args(["-q", "-e", "-c"])
        .arg(std::ffi::OsStr::from_bytes(&line))
        .arg("/dev/null")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    out.stdout
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// `svctl status` of a service named with an escape sequence: escaped on a terminal, the
/// name's bytes as they are into a pipe.
#[test]
fn issue_11_3_svctl_status_escapes_control_characters_on_a_terminal() {
    let root = tempfile::tempdir().unwrap();
    let scan = root.path().join("service");
    let name = "evil\x1b]0;owned\x07";
    let svc = marker(&scan, name);
    let mut cmd = Command::new(bin("supervise"));
    cmd.arg(&svc).stdin(Stdio::null());
    let _guard = Cleanup {
        root: root.path(),
        child: Some(Spawned::new(&mut cmd)),
    };
    wait_until("the service", LONG, || svc.join("started").exists());
    let svctl = bin("svctl");
    let args = [scan.as_os_str(), "status".as_ref()];
    let mut with_d = vec![std::ffi::OsStr::new("-d")];
    with_d.extend(args);
    let shown = on_a_terminal(&svctl, &with_d);
    // The state word is coloured on a terminal (issue 17): those SGR sequences are svctl's
    // own; once they are taken out, no escape character may be left.
    let shown = String::from_utf8_lossy(&shown)
        .replace("\x1b[32m", "")
        .replace("\x1b[33m", "")
        .replace("\x1b[0m", "")
        .into_bytes();
    assert!(
        contains(&shown, b"evil\\x1b]0;owned\\x07: up"),
        "{}",
        String::from_utf8_lossy(&shown)
    );
    assert!(!contains(&shown, b"\x1b"), "{shown:?}");
    let (_, piped, _) = run(Command::new(&svctl).args(with_d), LONG);
    assert!(piped.starts_with(&format!("{name}: up")), "{piped:?}");
}

/// `svctl log` (logger --show) of a log line with escape sequences and a stray C1 byte.
#[test]
fn issue_11_3_svctl_log_escapes_control_characters_on_a_terminal() {
    let root = tempfile::tempdir().unwrap();
    let svc = root.path().join("svc");
    let main = svc.join("log/main");
    std::fs::create_dir_all(&main).unwrap();
    std::fs::write(main.join("current"), b"clear \x1b[2J\x9b2J tab\tend\n").unwrap();
    let svctl = bin("svctl");
    let shown = on_a_terminal(&svctl, &["log".as_ref(), svc.as_os_str()]);
    assert!(
        contains(&shown, b"clear \\x1b[2J\\x9b2J tab\tend"),
        "{}",
        String::from_utf8_lossy(&shown)
    );
    let out = Command::new(&svctl).arg("log").arg(&svc).output().unwrap();
    assert_eq!(out.stdout, b"clear \x1b[2J\x9b2J tab\tend\n");
}

/// A daemon's message naming a path with an escape sequence (supervise's fatal one, for a dir
/// that does not exist), on a terminal: escaped by warden::say!.
#[test]
fn issue_11_3_daemon_messages_escape_control_characters_on_a_terminal() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("no\x1b]0;owned\x07such");
    let shown = on_a_terminal(&bin("supervise"), &[dir.as_os_str()]);
    assert!(
        contains(&shown, b"no\\x1b]0;owned\\x07such"),
        "{}",
        String::from_utf8_lossy(&shown)
    );
    assert!(!contains(&shown, b"\x1b]0"), "{shown:?}");
}
