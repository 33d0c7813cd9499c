//! Issue 11, items 3-6: terminal escapes; the daemons (init, svscan, supervise, logger)
//! survive a broken stderr; init reaches its own code with fds 0-2 closed and no /dev/null or
//! with a non-UTF-8 argument; huge durations from the environment, setting files and the
//! command line do not overflow a deadline.

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
        warden_tests::kill_under(self.root);
    }
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

/// supervise whose stderr is broken, warning while its service runs (a notification-fd
/// flooded without a newline, item 10): supervise lives, the service is still the same run,
/// and both keep working: `svctl -w down` stops it, `svctl up` starts it again, with a second
/// warning lost the same way.
#[test]
fn issue_11_4_supervise_and_its_service_keep_working_with_a_broken_stderr() {
    let root = tempfile::tempdir().unwrap();
    // `started` is written once supervise has closed the flooded pipe, that is once it has
    // said why: a write to the pipe then fails (the subshell dies of SIGPIPE).
    let svc = service(
        root.path(),
        "svc",
        "head -c 600 /dev/zero | tr '\\0' x >&3\n\
         while (printf x >&3) 2>/dev/null; do sleep 0.05; done\n\
         echo $$ > started.new && mv started.new started\n\
         exec sleep 1000",
    );
    std::fs::write(svc.join("notification-fd"), "3\n").unwrap();
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
    let started = || std::fs::read_to_string(svc.join("started")).unwrap_or_default();
    let mut supervise_lives = |when: &str| {
        let status = guard.child.as_mut().unwrap().child.try_wait().unwrap();
        assert!(status.is_none(), "supervise died {when}: {status:?}");
    };
    wait_until("the flood's warning", LONG, || {
        !started().is_empty() || !alive(pid)
    });
    supervise_lives("at the first warning");
    let first: i32 = started().trim().parse().unwrap();
    assert!(alive(first), "the service's run {first} is gone");
    let (code, stdout, stderr) = run(
        Command::new(bin("svctl"))
            .args(["-w", "20s", "down"])
            .arg(&svc),
        LONG,
    );
    assert_eq!(code, Some(0), "svctl down: {stdout} {stderr}");
    wait_until("the first run to be gone", LONG, || !alive(first));
    std::fs::remove_file(svc.join("started")).unwrap();
    // Not `-w`: with a notification-fd, up waits for a readiness the flood never gives.
    let (code, stdout, stderr) = run(Command::new(bin("svctl")).arg("up").arg(&svc), LONG);
    assert_eq!(code, Some(0), "svctl up: {stdout} {stderr}");
    wait_until("the second run's warning", LONG, || {
        !started().is_empty() || !alive(pid)
    });
    supervise_lives("at the second warning");
    let second: i32 = started().trim().parse().unwrap();
    assert_ne!(first, second);
    assert!(alive(second));
    drop(guard);
}

/// The log lines of `dir/current`, labels cut off (every line has one).
fn logged(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("current"))
        .unwrap_or_default()
        .lines()
        .map(|l| l.split_once(' ').map_or("", |(_, text)| text).to_owned())
        .collect()
}

/// A logger whose stdin is `input` and whose stdout and stderr are broken pipes.
fn logger_with_a_broken_stderr(
    program: &Path,
    args: &[&std::ffi::OsStr],
    input: &OwnedFd,
) -> Spawned {
    let stderr = broken_pipe();
    Spawned::new(
        Command::new(program)
            .args(args)
            .stdin(Stdio::from(input.try_clone().unwrap()))
            .stdout(Stdio::from(stderr.try_clone().unwrap()))
            .stderr(Stdio::from(stderr)),
    )
}

/// logger with a broken stderr, whose log dir is removed under it: the warning is lost, the
/// logger lives, recreates the dir and logs every line, and ends at end of input with 0.
#[test]
fn issue_11_4_logger_survives_a_broken_stderr() {
    use std::io::Write as _;
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("log");
    let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
    let mut logger = logger_with_a_broken_stderr(&bin("logger"), &[dir.as_os_str()], &read);
    drop(read);
    let mut out = std::fs::File::from(write);
    out.write_all(b"before\n").unwrap();
    wait_until("the first line", LONG, || logged(&dir) == ["before"]);
    // Worth a warning ("removed"), which the logger cannot write.
    std::fs::remove_dir_all(&dir).unwrap();
    out.write_all(b"after 1\nafter 2\n").unwrap();
    wait_until("the lines in the recreated dir", LONG, || {
        logged(&dir).len() == 2 || !alive(logger.pid())
    });
    assert!(
        alive(logger.pid()),
        "logger died: {:?}",
        logger.child.try_wait()
    );
    assert_eq!(logged(&dir), ["after 1", "after 2"]);
    drop(out);
    assert!(logger.wait_exit(LONG).success());
}

/// logger run as `svlogd -v` (runit's command line) with a broken stderr: its info lines
/// (`open`, `close`) are lost, every line is logged, and it ends at end of input with 0.
#[test]
fn issue_11_4_svlogd_mode_survives_a_broken_stderr() {
    use std::io::Write as _;
    let root = tempfile::tempdir().unwrap();
    let svlogd = root.path().join("svlogd");
    std::os::unix::fs::symlink(bin("logger"), &svlogd).unwrap();
    let dir = root.path().join("log");
    std::fs::create_dir(&dir).unwrap();
    let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
    let mut logger = logger_with_a_broken_stderr(&svlogd, &["-v".as_ref(), dir.as_os_str()], &read);
    drop(read);
    let mut out = std::fs::File::from(write);
    out.write_all(b"one\ntwo\n").unwrap();
    let lines = || std::fs::read_to_string(dir.join("current")).unwrap_or_default();
    wait_until("the lines", LONG, || {
        lines() == "one\ntwo\n" || !alive(logger.pid())
    });
    assert!(
        alive(logger.pid()),
        "svlogd died: {:?}",
        logger.child.try_wait()
    );
    drop(out);
    let status = logger.wait_exit(LONG);
    assert!(status.success(), "svlogd: {status:?}");
    assert_eq!(lines(), "one\ntwo\n");
}

/// `init -- CMD` with a broken stderr: CMD's failure is worth a message, which is lost, and
/// init still exits with CMD's status; a CMD that cannot be run gives 127, not a panic.
#[test]
fn issue_11_4_init_survives_a_broken_stderr() {
    let init = |args: &[&str]| {
        let stderr = broken_pipe();
        let mut child = Spawned::new(
            Command::new(bin("init"))
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::from(stderr.try_clone().unwrap()))
                .stderr(Stdio::from(stderr)),
        );
        child.wait_exit(LONG)
    };
    assert_eq!(init(&["--", "/bin/sh", "-c", "exit 3"]).code(), Some(3));
    assert_eq!(init(&["--", "/nonexistent/warden-cmd"]).code(), Some(127));
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
/// which is as good as forever rather than a panic, or no grace at all: the leftover, which
/// takes a moment to exit on TERM, is given that moment and never KILLed.
#[test]
fn issue_11_6_init_takes_a_huge_grace() {
    let root = tempfile::tempdir().unwrap();
    let marker = root.path().join("termed");
    let (code, stdout, stderr) = run(
        Command::new(bin("init"))
            .args([
                "--",
                "/bin/sh",
                "-c",
                "sh -c 'trap \"sleep 0.3; echo TERM > \\\"$M\\\"; exit 0\" TERM; \
                 echo > \"$M.ready\"; while :; do sleep 0.05; done' &
                 while ! test -e \"$M.ready\"; do sleep 0.01; done; exit 3",
            ])
            .env("M", &marker)
            .env("WARDEN_GRACE", HUGE),
        LONG,
    );
    assert_eq!(code, Some(3), "init: {stdout} {stderr}");
    assert!(!stderr.contains("sending KILL"), "init: {stderr}");
    assert_eq!(
        std::fs::read_to_string(&marker).unwrap_or_default(),
        "TERM\n",
        "the leftover was not given its grace: {stderr}"
    );
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
