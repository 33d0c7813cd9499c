//! Issue 11 item 12, svscan's half: at shutdown svscan never KILLs the process group that
//! `supervise/warden` records for a service that is down (the id may be another group's by
//! now), and it signals supervisors it adopted through the pidfds it holds, never by a pid
//! that may have been reused.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use warden_tests::warden::status::RunState;
use warden_tests::warden::svdir::{Liveness, ServiceDir};
use warden_tests::{bin, children_of, service, wait_until, Spawned};

const LONG: Duration = Duration::from_secs(20);

fn signal(pid: i32, sig: rustix::process::Signal) {
    if let Some(pid) = rustix::process::Pid::from_raw(pid).filter(|_| pid > 1) {
        let _ = rustix::process::kill_process(pid, sig);
    }
}

/// Kills, when the test ends however it ends, processes it may leave behind (by pid).
struct Leftovers(Vec<i32>);

impl Drop for Leftovers {
    fn drop(&mut self) {
        for pid in &self.0 {
            signal(*pid, rustix::process::Signal::KILL);
            signal(*pid, rustix::process::Signal::CONT);
        }
    }
}

fn svscan_cmd(scan: &Path, out: &Path) -> Command {
    let log = std::fs::File::create(out).unwrap();
    let mut cmd = Command::new(bin("svscan"));
    cmd.args(["-g", "300ms"])
        .arg(scan)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    cmd
}

fn supervisor_pid(dir: &Path) -> Option<i32> {
    let x = ServiceDir::new(dir).extended()?;
    i32::try_from(x.supervisor_pid?).ok()
}

/// Replaces `supervise/warden` of `dir`, as a stale record would be, with `pgid` set.
fn record_pgid(dir: &Path, pgid: i32) {
    let file = dir.join("supervise/warden");
    let text = std::fs::read_to_string(&file).unwrap();
    let mut new: String = text
        .lines()
        .filter(|l| !l.starts_with("pgid "))
        .map(|l| format!("{l}\n"))
        .collect();
    new.push_str(&format!("pgid {pgid}\n"));
    let tmp = dir.join("supervise/warden.test");
    std::fs::write(&tmp, new).unwrap();
    std::fs::rename(&tmp, &file).unwrap();
}

#[test]
fn shutdown_never_kills_the_recorded_group_of_a_service_that_is_down() {
    let root = tempfile::tempdir().unwrap();
    let scan = root.path().join("service");
    let dir = service(&scan, "idle", "exec sleep 1000");
    std::fs::write(dir.join("down"), "").unwrap();
    let out = root.path().join("out");
    let mut svscan = Spawned::new(&mut svscan_cmd(&scan, &out));
    let sv = ServiceDir::new(&dir);
    wait_until("the down service's supervisor", LONG, || {
        sv.liveness() == Ok(Liveness::Running)
            && sv.status().is_ok_and(|s| s.state == RunState::Down)
            && supervisor_pid(&dir).is_some()
    });
    let supervisor = supervisor_pid(&dir).unwrap();
    // A process in a group of its own: the id a stale `pgid` line names once the service's
    // group is long gone and the number was handed out again.
    let mut victim = Spawned::new(Command::new("sleep").arg("1000").process_group(0));
    let _leftovers = Leftovers(vec![supervisor, victim.pid()]);
    // A supervisor that will not stop in time (stopped), so svscan's KILL sweep reaches it,
    // with a record that still names a group.
    signal(supervisor, rustix::process::Signal::STOP);
    record_pgid(&dir, victim.pid());
    signal(svscan.pid(), rustix::process::Signal::TERM);
    let status = svscan.wait_exit(LONG);
    let said = std::fs::read_to_string(&out).unwrap_or_default();
    assert_eq!(status.code(), Some(0), "{said}");
    assert!(
        said.contains("\"idle\" did not stop in time: sending KILL"),
        "the KILL sweep did not run: {said}"
    );
    wait_until("the stopped supervisor to be killed", LONG, || {
        !warden_tests::alive(supervisor)
    });
    assert!(
        victim.child.try_wait().unwrap().is_none(),
        "svscan KILLed the group a down service's stale record named"
    );
}

#[test]
fn adopted_supervisors_are_signalled_through_their_pidfds() {
    warden_tests::require("strace", "strace");
    let root = tempfile::tempdir().unwrap();
    let scan = root.path().join("service");
    let dir = service(&scan, "one", "exec sleep 1000");
    let out = root.path().join("out");
    let mut first = Spawned::new(&mut svscan_cmd(&scan, &out));
    let sv = ServiceDir::new(&dir);
    wait_until("the supervisor and its service", LONG, || {
        sv.status().is_ok_and(|s| s.state == RunState::Run) && supervisor_pid(&dir).is_some()
    });
    let supervisor = supervisor_pid(&dir).unwrap();
    let service_pid = sv.status().unwrap().pid as i32;
    let _leftovers = Leftovers(vec![supervisor, service_pid]);
    // svscan dies; its supervisors go on, to be adopted by the next one.
    signal(first.pid(), rustix::process::Signal::KILL);
    first.wait_exit(LONG);
    let trace = root.path().join("trace");
    let out2 = root.path().join("out2");
    let log = std::fs::File::create(&out2).unwrap();
    let mut cmd = Command::new("strace");
    cmd.arg("-qq")
        .arg("-o")
        .arg(&trace)
        .args(["-e", "trace=kill,tgkill,pidfd_send_signal", "--"])
        .arg(bin("svscan"))
        .args(["-g", "300ms"])
        .arg(&scan)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    let mut strace = Spawned::new(&mut cmd);
    let mut second = 0;
    wait_until("svscan under strace", LONG, || {
        second = children_of(strace.pid()).first().map_or(0, |c| c.0);
        second != 0
            && std::fs::read_link(format!("/proc/{second}/exe"))
                .is_ok_and(|e| e.ends_with("svscan"))
    });
    let fifo: PathBuf = scan.join(".svscan/control");
    wait_until("the second svscan to serve its control FIFO", LONG, || {
        std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
            .open(&fifo)
            .is_ok()
    });
    signal(second, rustix::process::Signal::TERM);
    let status = strace.wait_exit(LONG);
    let said = std::fs::read_to_string(&out2).unwrap_or_default();
    assert_eq!(status.code(), Some(0), "{said}");
    assert!(
        !warden_tests::alive(supervisor),
        "the adopted supervisor is still there"
    );
    let traced = std::fs::read_to_string(&trace).unwrap();
    assert!(
        traced
            .lines()
            .any(|l| l.starts_with("pidfd_send_signal(") && l.contains("SIGTERM")),
        "no TERM through a pidfd:\n{traced}"
    );
    assert!(
        !traced
            .lines()
            .any(|l| l.starts_with(&format!("kill({supervisor},"))),
        "the adopted supervisor was signalled by pid:\n{traced}"
    );
}

use std::os::unix::fs::OpenOptionsExt;
