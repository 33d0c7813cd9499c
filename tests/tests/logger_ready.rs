//! The logger's readiness notification (issue 15, "the logger can notify readiness"), in
//! warden mode and in svlogd mode: a supervised log service with `notification-fd` is ready
//! only once the logger holds its directory's lock, and `svctl -w up` on it waits for that;
//! `-d FD` writes one newline on FD and closes it, as s6-log's `-d` does.

use rustix::fs::FlockOperation;
use rustix::io::Errno;
use std::fs;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};
use warden_tests::warden::svdir::{Liveness, ServiceDir};
use warden_tests::{bin, kill_group, run, script, wait_until, Spawned};

const SETTLE: Duration = Duration::from_secs(10);
/// How long `log/run` waits before it execs the logger: long enough that a wait which does
/// not wait for the logger returns well before the lock is taken.
const LATE_START: &str = "0.8";

/// warden's logger under the name svlogd, as `cargo xtask install --svlogd` links it.
fn svlogd_link(tmp: &Path) -> PathBuf {
    let dir = tmp.join("bin");
    fs::create_dir_all(&dir).unwrap();
    let link = dir.join("svlogd");
    if !link.exists() {
        std::os::unix::fs::symlink(bin("logger"), &link).unwrap();
    }
    dir
}

/// Whether some process holds the log directory's lock (as the logger does while it runs).
fn locked(logdir: &Path) -> bool {
    let Ok(file) = fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(logdir.join("lock"))
    else {
        return false;
    };
    match rustix::fs::flock(file.as_fd(), FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => false,
        Err(Errno::WOULDBLOCK) => true,
        Err(e) => panic!("flock {}: {e}", logdir.display()),
    }
}

/// A supervise on `dir` whose stdin (the log service's input, as svscan's pipe would be) is
/// a pipe the test writes to; stopped, and its service's group killed, on drop.
struct Supervised {
    dir: PathBuf,
    process: Spawned,
}

fn supervise(dir: &Path, default_log: bool) -> Supervised {
    let out = fs::File::create(dir.with_extension("out")).unwrap();
    let mut command = Command::new(bin("supervise"));
    if default_log {
        // As svscan runs a `log/`: without `run`, the built-in `logger ./main`.
        command.arg("--default-log");
    }
    let process = Spawned::new(
        command
            .arg(dir)
            .stdin(Stdio::piped())
            .stdout(out.try_clone().unwrap())
            .stderr(out),
    );
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
        // The logger ends at the end of its input.
        drop(self.process.child.stdin.take());
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
        warden_tests::remove_cgroups_under(&self.dir, Duration::from_secs(2));
    }
}

/// `svctl -w up` on `app/log`, whose `run` starts the logger late: returns only once the
/// logger is ready (its lock taken), supervise recorded the notification after the logger
/// started, and lines reach the log.
fn svctl_wait_up_waits_for_the_logger(logger_command: Option<&str>, logdir_name: &str) {
    let scan = tempfile::tempdir().unwrap();
    let log = scan.path().join("app").join("log");
    let path = svlogd_link(scan.path());
    match logger_command {
        Some(command) => script(
            &log.join("run"),
            &format!(
                "echo started > started\nsleep {LATE_START}\n\
                 PATH={}:$PATH\nexec {command}",
                path.display()
            ),
        ),
        None => {
            fs::create_dir_all(&log).unwrap();
            fs::write(log.join("started"), "").unwrap();
        }
    }
    // Written as a user would: nothing in `run` mentions the fd.
    fs::write(log.join("notification-fd"), "3\n").unwrap();
    let mut sup = supervise(&log, logger_command.is_none());
    let logdir = log.join(logdir_name);

    let asked = SystemTime::now();
    let (code, out, err) = run(
        Command::new(bin("svctl"))
            .arg("-d")
            .arg(scan.path())
            .args(["-w", "8", "up", "app/log"]),
        Duration::from_secs(30),
    );
    assert_eq!(code, Some(0), "svctl -w up app/log: {out}{err}");
    assert!(
        locked(&logdir),
        "svctl -w up returned before the logger held {}/lock",
        logdir.display()
    );
    let started = fs::metadata(log.join("started"))
        .and_then(|m| m.modified())
        .expect("log/run ran");
    let ready_at = ServiceDir::new(&log)
        .extended()
        .and_then(|x| x.ready_at)
        .expect("supervise recorded the logger's readiness")
        .to_system_time();
    if logger_command.is_some() {
        assert!(
            ready_at >= started + Duration::from_millis(500) && ready_at > asked,
            "ready at {ready_at:?}, run started at {started:?}: the notification came before \
             the logger ran"
        );
    }
    let (_, status, _) = run(
        Command::new(bin("svctl"))
            .arg("-d")
            .arg(scan.path())
            .args(["status", "app/log"]),
        Duration::from_secs(30),
    );
    assert!(status.contains(", ready"), "{status}");

    // And it logs: a line fed to the log service's stdin lands in the directory.
    let mut input = sup.process.child.stdin.take().unwrap();
    input.write_all(b"hello after ready\n").unwrap();
    wait_until("the line in current", SETTLE, || {
        fs::read_to_string(logdir.join("current")).is_ok_and(|c| c.contains("hello after ready"))
    });
    sup.process.child.stdin = Some(input);
}

#[test]
fn svctl_wait_up_on_a_log_service_waits_for_warden_logger() {
    // By path: the `logger` on PATH is util-linux's.
    let logger = format!("{} ./main", bin("logger").display());
    svctl_wait_up_waits_for_the_logger(Some(&logger), "main");
}

#[test]
fn svctl_wait_up_on_a_default_log_waits_for_its_logger() {
    // No `run`: supervise's built-in `logger ./main` notifies through notification-fd too.
    svctl_wait_up_waits_for_the_logger(None, "main");
}

#[test]
fn svctl_wait_up_on_a_log_service_waits_for_svlogd_mode() {
    // A Debian log/run, as shipped (chpst aside): svlogd -tt DIR.
    svctl_wait_up_waits_for_the_logger(Some("svlogd -tt ./main"), "main");
}

/// `-d FD`: one newline on FD once the directory is locked, then FD is closed (EOF for the
/// reader) while the logger goes on running.
fn explicit_fd_gets_one_newline_then_eof(program: &Path, args: &[&str]) {
    let tmp = tempfile::tempdir().unwrap();
    let fifo = tmp.path().join("ready");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let mut reader = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .unwrap();
    let logdir = tmp.path().join("main");
    let mut logger = Spawned::new(
        Command::new("sh")
            .arg("-c")
            .arg("exec \"$@\" 5>\"$FIFO\"")
            .arg("sh")
            .arg(program)
            .args(args)
            .arg(&logdir)
            .env("FIFO", &fifo)
            .stdin(Stdio::piped())
            .stdout(Stdio::null()),
    );
    let mut got = Vec::new();
    let mut eof = false;
    let deadline = Instant::now() + SETTLE;
    while !eof {
        assert!(
            Instant::now() < deadline,
            "{args:?}: no EOF on the -d fd; read {got:?}"
        );
        let mut buf = [0u8; 64];
        match reader.read(&mut buf) {
            // EOF only counts once the logger has opened the fifo (a newline came first).
            Ok(0) if !got.is_empty() => eof = true,
            Ok(n) => {
                if n > 0 && got.is_empty() {
                    assert!(
                        locked(&logdir),
                        "{args:?}: notified before the directory was locked"
                    );
                }
                got.extend_from_slice(&buf[..n]);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("{e}"),
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(got, b"\n", "{args:?}");
    assert!(
        logger.child.try_wait().unwrap().is_none(),
        "{args:?}: the logger must keep running after notifying"
    );
    // The number may have been reused by the logger's own files, but not for the fifo.
    let fifos = fs::read_dir(format!("/proc/{}/fd", logger.pid()))
        .unwrap()
        .filter_map(|e| fs::read_link(e.ok()?.path()).ok())
        .filter(|target| *target == fifo)
        .count();
    assert_eq!(fifos, 0, "{args:?}: the -d fd is still open");
    let mut input = logger.child.stdin.take().unwrap();
    input.write_all(b"one line\n").unwrap();
    drop(input);
    assert!(logger.wait_exit(SETTLE).success());
    let current = fs::read_to_string(logdir.join("current")).unwrap();
    assert!(current.ends_with("one line\n"), "{current:?}");
}

#[test]
fn ready_fd_option_writes_a_newline_and_closes_it() {
    let tmp = tempfile::tempdir().unwrap();
    let svlogd = svlogd_link(tmp.path()).join("svlogd");
    explicit_fd_gets_one_newline_then_eof(&bin("logger"), &["-d", "5"]);
    explicit_fd_gets_one_newline_then_eof(&svlogd, &["-tt", "-d", "5"]);
}

/// A logger started by hand in a log service's directory (its `notification-fd` names an fd
/// that is not open) logs as usual, says nothing about readiness, and leaves an fd at that
/// number that is not a pipe alone.
#[test]
fn notification_fd_file_without_the_fd_is_harmless() {
    let tmp = tempfile::tempdir().unwrap();
    fs::write(tmp.path().join("notification-fd"), "7\n").unwrap();
    let other = tmp.path().join("other");
    fs::write(&other, "").unwrap();
    for (name, open_seven) in [("closed", false), ("a file", true)] {
        let logdir = tmp.path().join(format!("main-{}", open_seven));
        let redirect = if open_seven { "7<other" } else { "" };
        let mut child = Spawned::new(
            Command::new("sh")
                .arg("-c")
                .arg(format!("exec \"$0\" \"$1\" {redirect}"))
                .arg(bin("logger"))
                .arg(&logdir)
                .current_dir(tmp.path())
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::piped()),
        );
        let mut input = child.child.stdin.take().unwrap();
        input.write_all(b"by hand\n").unwrap();
        // A logger that gave up says why, rather than leaving a bare timeout to guess from.
        if let Some(status) = exit_before_logging(&mut child, &logdir, "by hand") {
            let err = stderr_of(&mut child);
            let current = fs::read_to_string(logdir.join("current"));
            panic!(
                "{name}: logger exited ({status}) with stdin open: {err:?}, current {current:?}"
            );
        }
        if open_seven {
            let target = fs::read_link(format!("/proc/{}/fd/7", child.pid()));
            assert_eq!(target.ok(), Some(other.clone()), "{name}: fd 7 taken");
        }
        drop(input);
        assert!(child.wait_exit(SETTLE).success(), "{name}");
        assert_eq!(stderr_of(&mut child), "", "{name}");
    }
}

/// A logger whose session leader is outside its pid namespace (a container whose process 1
/// never called setsid, a CI job under `unshare --pid`) sees its session id as 0: it must
/// still start, log, and exit cleanly, not abort on a session id it did not expect.
#[test]
fn a_logger_whose_session_leader_is_in_another_pid_namespace_logs() {
    let tmp = tempfile::tempdir().unwrap();
    fs::write(tmp.path().join("notification-fd"), "7\n").unwrap();
    let logdir = tmp.path().join("main");
    let mut cmd = Command::new("unshare");
    cmd.args(["--pid", "--fork", "--kill-child"])
        .arg(bin("logger"))
        .arg(&logdir)
        .current_dir(tmp.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    warden_tests::require("unshare", "util-linux");
    let mut child = Spawned::new(&mut cmd);
    let mut input = child.child.stdin.take().unwrap();
    input.write_all(b"from a namespace\n").unwrap();
    if let Some(status) = exit_before_logging(&mut child, &logdir, "from a namespace") {
        let err = stderr_of(&mut child);
        panic!("logger exited ({status}) with stdin open: {err}");
    }
    drop(input);
    assert!(child.wait_exit(SETTLE).success());
    assert_eq!(stderr_of(&mut child), "");
}

/// Waits until `text` is in the log's `current`; the logger's exit status if it exited
/// first.
fn exit_before_logging(
    child: &mut Spawned,
    logdir: &Path,
    text: &str,
) -> Option<std::process::ExitStatus> {
    let mut exited = None;
    wait_until(
        &format!("{text:?} logged, or the logger's exit"),
        SETTLE,
        || {
            exited = child.child.try_wait().ok().flatten();
            exited.is_some()
                || fs::read_to_string(logdir.join("current")).is_ok_and(|c| c.contains(text))
        },
    );
    exited
}

/// What the child wrote to its piped stderr (once it has closed it).
fn stderr_of(child: &mut Spawned) -> String {
    let mut err = String::new();
    let mut stderr = child
        .child
        .stderr
        .take()
        .expect("stderr is piped, read once");
    stderr
        .read_to_string(&mut err)
        .expect("reading the logger's stderr");
    err
}

/// A service whose own `run` pipes its daemon into the logger (`daemon | logger ./main`) with
/// a `notification-fd`: the fd is the daemon's to announce readiness on. The logger, forked by
/// `run` and not the process supervise started, must not claim it: the service stays not
/// ready after the logger has locked its directory.
#[test]
fn a_logger_in_a_run_pipeline_does_not_announce_the_service_ready() {
    let scan = tempfile::tempdir().unwrap();
    let app = scan.path().join("app");
    script(
        &app.join("run"),
        &format!("sleep 30 | {} ./main", bin("logger").display()),
    );
    fs::write(app.join("notification-fd"), "3\n").unwrap();
    let _sup = supervise(&app, false);
    let logdir = app.join("main");
    wait_until("the logger to lock its directory", SETTLE, || {
        locked(&logdir)
    });
    // The logger writes its newline right after taking the lock; give it ample time to have
    // done so and supervise to have recorded it, were it going to.
    std::thread::sleep(Duration::from_millis(500));
    let svc = ServiceDir::new(&app);
    let extended = svc.extended().expect("supervise/warden");
    assert_eq!(
        extended.ready_at, None,
        "the pipeline's logger announced the service ready"
    );
    let (_, status, _) = run(
        Command::new(bin("svctl"))
            .arg("-d")
            .arg(scan.path())
            .args(["status", "app"]),
        Duration::from_secs(30),
    );
    assert!(!status.contains(", ready"), "{status}");
}

/// A FIFO planted as `notification-fd` must not block the logger's start: it is not a
/// setting, and the logger logs as usual.
#[test]
fn a_fifo_as_notification_fd_does_not_block_the_logger() {
    let tmp = tempfile::tempdir().unwrap();
    let made = Command::new("mkfifo")
        .arg(tmp.path().join("notification-fd"))
        .status()
        .unwrap();
    assert!(made.success());
    let logdir = tmp.path().join("main");
    let mut child = Spawned::new(
        Command::new(bin("logger"))
            .arg(&logdir)
            .current_dir(tmp.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    let mut input = child.child.stdin.take().unwrap();
    input.write_all(b"past the fifo\n").unwrap();
    wait_until("the line", SETTLE, || {
        fs::read_to_string(logdir.join("current")).is_ok_and(|c| c.contains("past the fifo"))
    });
    drop(input);
    assert!(child.wait_exit(SETTLE).success());
}
