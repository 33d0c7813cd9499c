//! Process tests of the `supervise/` directory's safety (issue 11, items 1, 2 and 14): whose
//! `supervise/` a supervisor accepts, that nothing planted in it is written through, that
//! `svctl -w` never changes the mode of a file swapped into `event/`, and that the FIFO of a
//! SIGKILLed `svctl -w` does not stay in `event/`.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use warden::svdir::{Liveness, ServiceDir};
use warden_tests::{bin, remove_cgroups_under, service, wait_until, Spawned};

const WAIT: Duration = Duration::from_secs(10);

/// A supervise on one dir; on drop told to stop and exit, killed if it does not.
struct Sup {
    svc: PathBuf,
    child: Spawned,
    err: PathBuf,
}

impl Sup {
    fn start(svc: &Path) -> Sup {
        let err = svc.with_extension("err");
        let child = Spawned::new(
            Command::new(bin("supervise"))
                .arg(svc)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(fs::File::create(&err).unwrap()),
        );
        Sup {
            svc: svc.to_owned(),
            child,
            err,
        }
    }

    fn dir(&self) -> ServiceDir {
        ServiceDir::new(&self.svc)
    }

    fn ready(self) -> Sup {
        wait_until("supervise to run its service", WAIT, || {
            self.dir().liveness() == Ok(Liveness::Running)
                && self.dir().status().is_ok_and(|s| s.pid != 0)
        });
        self
    }

    /// Waits for supervise to exit by itself: its code and its stderr.
    fn refused(mut self) -> (Option<i32>, String) {
        let code = self.child.wait_exit(WAIT).code();
        (code, fs::read_to_string(&self.err).unwrap_or_default())
    }
}

impl Drop for Sup {
    fn drop(&mut self) {
        let pid = self.dir().status().map(|s| s.pid).unwrap_or(0);
        let _ = self.dir().send(b"dx");
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if self.child.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        if pid > 0 {
            warden_tests::kill_group(pid as i32);
        }
    }
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// `dir` as svctl takes a path argument.
fn arg(dir: &Path) -> String {
    format!("{}/", dir.display())
}

#[test]
fn a_supervise_dir_writable_by_others_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let marker = root.path().join("started");
    let svc = service(
        root.path(),
        "open",
        &format!("touch {}\nexec sleep 100", marker.display()),
    );
    let supervise = svc.join("supervise");
    fs::create_dir(&supervise).unwrap();
    fs::set_permissions(&supervise, fs::Permissions::from_mode(0o777)).unwrap();
    let (code, err) = Sup::start(&svc).refused();
    assert_eq!(code, Some(111), "stderr: {err}");
    assert!(
        err.contains(&format!("unable to use {}", supervise.display()))
            && err.contains("mode 0777"),
        "stderr: {err}"
    );
    assert_eq!(err.lines().count(), 1, "one message: {err}");
    assert!(!marker.exists(), "the service must not start");
    // Nothing was made inside it.
    assert_eq!(fs::read_dir(&supervise).unwrap().count(), 0);
}

#[test]
fn a_supervise_dir_owned_by_another_user_is_refused() {
    if !is_root() {
        eprintln!("skipped: chown needs root");
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let svc = service(root.path(), "theirs", "exec sleep 100");
    let supervise = svc.join("supervise");
    fs::create_dir(&supervise).unwrap();
    fs::set_permissions(&supervise, fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::chown(&supervise, Some(65534), Some(65534)).unwrap();
    let (code, err) = Sup::start(&svc).refused();
    assert_eq!(code, Some(111), "stderr: {err}");
    assert!(
        err.contains(&format!("unable to use {}", supervise.display()))
            && err.contains("owned by uid 65534"),
        "stderr: {err}"
    );
    assert_eq!(fs::read_dir(&supervise).unwrap().count(), 0);
}

#[test]
fn a_dangling_supervise_symlink_into_a_foreign_dir_is_refused() {
    if !is_root() {
        eprintln!("skipped: chown needs root");
        return;
    }
    // The `/tmp` race: the link's target was made by someone else before we started.
    let root = tempfile::tempdir().unwrap();
    let svc = service(root.path(), "linked", "exec sleep 100");
    let target = root.path().join("shared/supervise.linked");
    fs::create_dir_all(&target).unwrap();
    std::os::unix::fs::chown(&target, Some(65534), Some(65534)).unwrap();
    std::os::unix::fs::symlink(&target, svc.join("supervise")).unwrap();
    let (code, err) = Sup::start(&svc).refused();
    assert_eq!(code, Some(111), "stderr: {err}");
    assert!(err.contains("owned by uid 65534"), "stderr: {err}");
    assert_eq!(fs::read_dir(&target).unwrap().count(), 0);
}

#[test]
fn a_supervise_symlink_is_followed_once_and_its_target_made() {
    // runit packaging: supervise -> /run/runit/supervise.NAME, the target made on demand.
    let root = tempfile::tempdir().unwrap();
    let svc = service(root.path(), "packaged", "exec sleep 100");
    let target = root.path().join("run/runit/supervise.packaged");
    std::os::unix::fs::symlink(&target, svc.join("supervise")).unwrap();
    let sup = Sup::start(&svc).ready();
    assert!(target.join("status").is_file());
    assert_eq!(fs::metadata(&target).unwrap().mode() & 0o7777, 0o700);
    drop(sup);

    // A target reached through a further symlink (`/tmp/x -> /etc`) is refused.
    let svc = service(root.path(), "twice", "exec sleep 100");
    let real = root.path().join("real");
    fs::create_dir(&real).unwrap();
    fs::set_permissions(&real, fs::Permissions::from_mode(0o700)).unwrap();
    let hop = root.path().join("hop");
    std::os::unix::fs::symlink(&real, &hop).unwrap();
    std::os::unix::fs::symlink(&hop, svc.join("supervise")).unwrap();
    let (code, err) = Sup::start(&svc).refused();
    assert_eq!(code, Some(111), "stderr: {err}");
    assert!(
        err.contains(&format!(
            "unable to use {}",
            svc.join("supervise").display()
        )) && err.contains("further symlink"),
        "stderr: {err}"
    );
    assert_eq!(fs::read_dir(&real).unwrap().count(), 0);
    remove_cgroups_under(root.path(), WAIT);
}

#[test]
fn files_planted_in_supervise_are_never_written_through() {
    let root = tempfile::tempdir().unwrap();
    let svc = service(root.path(), "planted", "exec sleep 100");
    let supervise = svc.join("supervise");
    fs::create_dir(&supervise).unwrap();
    fs::set_permissions(&supervise, fs::Permissions::from_mode(0o700)).unwrap();
    let victims: Vec<PathBuf> = ["status.new", "pid.new", "stat.new", "warden.new"]
        .iter()
        .map(|name| {
            let victim = root.path().join(format!("victim-{name}"));
            fs::write(&victim, b"precious\n").unwrap();
            std::os::unix::fs::symlink(&victim, supervise.join(name)).unwrap();
            victim
        })
        .collect();
    let event = supervise.join("event");
    fs::create_dir(&event).unwrap();
    fs::set_permissions(&event, fs::Permissions::from_mode(0o700)).unwrap();
    let event_victim = root.path().join("victim-event");
    fs::write(&event_victim, b"precious\n").unwrap();
    std::os::unix::fs::symlink(&event_victim, event.join("svctl.1.0")).unwrap();

    let sup = Sup::start(&svc).ready();
    sup.dir().send(b"p").unwrap();
    wait_until("the pause to be published", WAIT, || {
        sup.dir().status().is_ok_and(|s| s.paused)
    });
    for victim in victims.iter().chain([&event_victim]) {
        assert_eq!(
            fs::read(victim).unwrap(),
            b"precious\n",
            "{} was written",
            victim.display()
        );
    }
    assert!(fs::symlink_metadata(supervise.join("pid"))
        .unwrap()
        .is_file());
    drop(sup);
    remove_cgroups_under(root.path(), WAIT);
}

#[test]
fn a_symlink_as_lock_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let svc = service(root.path(), "locked", "exec sleep 100");
    let supervise = svc.join("supervise");
    fs::create_dir(&supervise).unwrap();
    fs::set_permissions(&supervise, fs::Permissions::from_mode(0o700)).unwrap();
    let victim = root.path().join("victim");
    std::os::unix::fs::symlink(&victim, supervise.join("lock")).unwrap();
    let (code, err) = Sup::start(&svc).refused();
    assert_eq!(code, Some(111), "stderr: {err}");
    assert!(
        err.contains(&format!("{}", supervise.join("lock").display())),
        "stderr: {err}"
    );
    assert!(!victim.exists(), "lock was created through the symlink");
}

#[test]
fn svctl_never_changes_the_mode_of_a_file_swapped_into_event() {
    warden_tests::require("strace", "strace");
    let root = tempfile::tempdir().unwrap();
    let svc = service(root.path(), "watched", "exec sleep 100");
    let sup = Sup::start(&svc).ready();
    let event = svc.join("supervise/event");
    let victim = root.path().join("victim");
    fs::write(&victim, b"secret\n").unwrap();
    fs::set_permissions(&victim, fs::Permissions::from_mode(0o600)).unwrap();
    // strace holds svctl for half a second right after its mknodat returns: the window in
    // which another user who can write `event/` swaps a symlink in, made deterministic.
    let mut client = Spawned::new(
        Command::new("strace")
            .args(["-f", "-o", "/dev/null", "-e", "trace=mknodat"])
            .args(["-e", "inject=mknodat:delay_exit=500000"])
            .arg(bin("svctl"))
            .args(["-w", "10", "up"])
            .arg(arg(&svc))
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    let mut fifo = None;
    wait_until("svctl to make its FIFO", WAIT, || {
        fifo = fs::read_dir(&event)
            .unwrap()
            .flatten()
            .find(|e| e.file_name().to_string_lossy().starts_with("svctl."))
            .map(|e| e.path());
        fifo.is_some()
    });
    let fifo = fifo.unwrap();
    let link = root.path().join("link");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    fs::rename(&link, &fifo).unwrap();
    let status = client.wait_exit(WAIT);
    assert!(status.success(), "svctl -w up: {status:?}");
    let mode = fs::metadata(&victim).unwrap().mode() & 0o7777;
    assert_eq!(mode, 0o600, "the victim's mode changed to {mode:04o}");
    drop(sup);
    remove_cgroups_under(root.path(), WAIT);
}

#[test]
fn the_fifo_of_a_sigkilled_svctl_goes_at_the_next_status_change() {
    let root = tempfile::tempdir().unwrap();
    // A service that ignores TERM (the ignored disposition survives exec), with a long
    // timeout-kill, keeps `svctl -w down` waiting on its FIFO without svctl running anything
    // that could inherit the FIFO (as a `./check` child might, for an instant).
    let svc = service(root.path(), "stubborn", "trap '' TERM\nexec sleep 100");
    fs::write(svc.join("timeout-kill"), "60s").unwrap();
    let sup = Sup::start(&svc).ready();
    let event = svc.join("supervise/event");
    let fifos = || {
        fs::read_dir(&event)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("svctl."))
            .count()
    };
    let waiter = || {
        Spawned::new(
            Command::new(bin("svctl"))
                .args(["-w", "60", "down"])
                .arg(arg(&svc))
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )
    };
    let mut client = waiter();
    wait_until("svctl to make its FIFO", WAIT, || fifos() == 1);
    client.child.kill().unwrap();
    client.child.wait().unwrap();
    assert_eq!(fifos(), 1, "SIGKILL leaves the FIFO");
    sup.dir().send(b"p").unwrap();
    wait_until("the stale FIFO to be removed", WAIT, || fifos() == 0);
    // A live client's FIFO stays.
    let mut live = waiter();
    wait_until("the second svctl to make its FIFO", WAIT, || fifos() == 1);
    sup.dir().send(b"c").unwrap();
    wait_until("the cont to be published", WAIT, || {
        sup.dir().status().is_ok_and(|s| !s.paused)
    });
    assert_eq!(fifos(), 1);
    // KILL ends the run: the live svctl sees down and removes its own FIFO.
    sup.dir().send(b"k").unwrap();
    assert!(live.wait_exit(WAIT).success());
    assert_eq!(fifos(), 0);
    drop(sup);
    remove_cgroups_under(root.path(), WAIT);
}
