//! svscan with the real `supervise` (and `logger`), unprivileged where possible, in temp dirs:
//! pickup, removal, restarts, adoption, bad input, shutdown, and PID 1 in a fresh namespace.

use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use warden_tests::warden::svdir::{Liveness, ServiceDir};
use warden_tests::{
    alive, bin, children_of, processes_under, script, service, wait_until, Spawned,
};

const LONG: Duration = Duration::from_secs(20);

/// Held by the tests that load the machine (thousands of processes) and by the one that
/// measures latency, so the measurement does not time the other test's load.
static HEAVY: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn heavy() -> std::sync::MutexGuard<'static, ()> {
    HEAVY.lock().unwrap_or_else(|e| e.into_inner())
}

/// A scan directory in a temp dir, with svscan running on it; svscan's stderr goes to a file
/// the test can read at any time. On drop: TERM and wait, then KILL anything left whose cwd is
/// inside the temp dir (supervisors, services, orphans the test started).
struct Scan {
    root: tempfile::TempDir,
    dir: PathBuf,
    svscan: Option<Spawned>,
}

impl Scan {
    fn new() -> Scan {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("service");
        std::fs::create_dir(&dir).unwrap();
        Scan {
            root,
            dir,
            svscan: None,
        }
    }

    /// A directory outside the scan dir, for services moved or linked in later.
    fn stage(&self) -> PathBuf {
        let stage = self.root.path().join("stage");
        std::fs::create_dir_all(&stage).unwrap();
        stage
    }

    fn start(&mut self, args: &[&str]) {
        let mut cmd = Command::new(bin("svscan"));
        cmd.args(args).arg(&self.dir);
        self.launch(cmd);
    }

    /// Runs `cmd` (svscan, or something that runs it) with stderr and stdout to a file, and
    /// waits until svscan serves its control FIFO.
    fn launch(&mut self, mut cmd: Command) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.stderr_path())
            .unwrap();
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        self.svscan = Some(Spawned::new(&mut cmd));
        let fifo = self.dir.join(".svscan/control");
        wait_until("svscan's control FIFO", LONG, || {
            std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
                .open(&fifo)
                .is_ok()
        });
    }

    fn pid(&self) -> i32 {
        self.svscan.as_ref().unwrap().pid()
    }

    fn stderr_path(&self) -> PathBuf {
        self.root.path().join("svscan.stderr")
    }

    fn stderr(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(self.stderr_path()).unwrap_or_default()).into()
    }

    fn control(&self, bytes: &[u8]) {
        let mut fifo = std::fs::OpenOptions::new()
            .write(true)
            .open(self.dir.join(".svscan/control"))
            .unwrap();
        fifo.write_all(bytes).unwrap();
    }

    fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let status = self.svscan.as_mut().unwrap().wait_exit(timeout);
        self.svscan = None;
        status.code()
    }
}

impl Drop for Scan {
    fn drop(&mut self) {
        if let Some(mut svscan) = self.svscan.take() {
            signal(svscan.pid(), rustix::process::Signal::TERM);
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline && svscan.child.try_wait().ok().flatten().is_none() {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        warden_tests::kill_under(self.root.path());
    }
}

use std::os::unix::fs::OpenOptionsExt;

fn signal(pid: i32, sig: rustix::process::Signal) {
    if pid > 1 {
        if let Some(pid) = rustix::process::Pid::from_raw(pid) {
            let _ = rustix::process::kill_process(pid, sig);
        }
    }
}

/// Live `supervise` processes running for `dir` (supervise works inside its directory).
fn supervisors_of(dir: &Path) -> Vec<i32> {
    let dir = dir.canonicalize().unwrap();
    let is_supervise = |pid: i32| {
        let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).ok();
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        cwd.as_deref() == Some(dir.as_path()) && comm.trim_end() == "supervise"
    };
    processes_under(&dir)
        .into_iter()
        // A supervise forking its run is still called supervise until the exec.
        .filter(|pid| is_supervise(*pid) && !parent_of(*pid).is_some_and(is_supervise))
        .collect()
}

fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(") ")?;
    rest.split(' ').nth(1)?.parse().ok()
}

fn running(dir: &Path) -> bool {
    ServiceDir::new(dir).liveness() == Ok(Liveness::Running)
}

/// Polls every millisecond; returns how long `cond` took to hold.
fn time_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    loop {
        if cond() {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A service whose run writes a marker into the service dir, then stays up.
fn marker_service(root: &Path, name: &str) -> PathBuf {
    service(root, name, "echo $$ > started\nexec sleep 1000")
}

#[test]
fn picks_up_a_new_dir_a_renamed_dir_and_a_symlink_within_milliseconds() {
    let _heavy = heavy();
    let mut scan = Scan::new();
    scan.start(&[]);
    let stage = scan.stage();

    let moved = marker_service(&stage, "moved");
    let target = scan.dir.join("moved");
    std::fs::rename(&moved, &target).unwrap();
    let renamed = time_until("the renamed-in service to run", LONG, || {
        target.join("started").exists()
    });

    let linked = marker_service(&stage, "linked");
    let link = scan.dir.join("linked");
    std::os::unix::fs::symlink(&linked, &link).unwrap();
    let symlinked = time_until("the symlinked service to run", LONG, || {
        linked.join("started").exists()
    });

    // mkdir straight into the scan dir: supervise starts at once (its run may not exist yet).
    let made = scan.dir.join("made");
    std::fs::create_dir(&made).unwrap();
    let mkdir = time_until("a supervisor for the new dir", LONG, || running(&made));

    // ln -sfn: the link is replaced (a rename over it) by one to another service dir.
    let other = marker_service(&stage, "other");
    let tmp = scan.dir.join(".tmp-link");
    std::os::unix::fs::symlink(&other, &tmp).unwrap();
    std::fs::rename(&tmp, &link).unwrap();
    let replaced = time_until("a supervisor for the replacement", LONG, || running(&other));
    // Not svscan's part, so only printed: the replacement is another directory, so its
    // cgroup is its own (named after the dir's device and inode), never the old service's.
    let replaced_run = time_until("the replacement's run", LONG, || {
        other.join("started").exists()
    });
    wait_until("the replaced service's supervisor to exit", LONG, || {
        supervisors_of(&linked).is_empty()
    });

    println!(
        "pickup latency: rename {renamed:?}, symlink {symlinked:?}, mkdir (supervisor up) \
         {mkdir:?}, ln -sfn (supervisor up) {replaced:?}, its run {replaced_run:?}"
    );
    for latency in [renamed, symlinked, mkdir, replaced] {
        assert!(latency < Duration::from_secs(1), "pickup took {latency:?}");
    }
    assert_eq!(supervisors_of(&target).len(), 1);
    assert_eq!(supervisors_of(&other).len(), 1);
}

#[test]
fn a_service_renamed_inside_the_scan_dir_keeps_its_supervisor_and_stops_when_moved_out() {
    let _heavy = heavy();
    let mut scan = Scan::new();
    scan.start(&[]);
    let stage = scan.stage();
    let first = scan.dir.join("first");
    std::fs::rename(marker_service(&stage, "first"), &first).unwrap();
    wait_until("first to run", LONG, || first.join("started").exists());
    let supervisor = supervisors_of(&first);
    assert_eq!(supervisor.len(), 1);

    // The same directory under another name: its supervisor goes on.
    let second = scan.dir.join("second");
    std::fs::rename(&first, &second).unwrap();
    // A new directory under the old name: a supervisor of its own.
    std::fs::rename(marker_service(&stage, "first"), &first).unwrap();
    wait_until("the new first to run", LONG, || {
        first.join("started").exists()
    });
    assert_eq!(
        supervisors_of(&second),
        supervisor,
        "the renamed service was restarted"
    );
    assert_eq!(supervisors_of(&first).len(), 1);

    // Moved out under its new name: svscan knows it by that name, and stops it.
    let gone = stage.join("gone");
    std::fs::rename(&second, &gone).unwrap();
    wait_until("the moved-out service's supervisor to exit", LONG, || {
        supervisors_of(&gone).is_empty()
    });
    assert_eq!(supervisors_of(&first).len(), 1, "the new first must go on");
}

/// A service printing numbered lines until TERM, then `last N`; the logger appends to a file.
fn numbered_service(root: &Path, name: &str) -> PathBuf {
    let dir = service(
        root,
        name,
        "i=0\ntrap 'echo last $i; exit 0' TERM\nwhile :; do i=$((i+1)); echo $i; \
         [ $((i % 50)) -eq 0 ] && sleep 0.01; done",
    );
    script(&dir.join("log/run"), "exec cat >> ../lines");
    dir
}

/// Every number from 1 to the one in the final `last N` line, each exactly once.
fn assert_complete(lines: &str) {
    let mut numbers: Vec<u64> = Vec::new();
    let mut last = None;
    for line in lines.lines() {
        if let Some(n) = line.strip_prefix("last ") {
            last = Some(n.parse::<u64>().unwrap());
        } else {
            numbers.push(line.parse().unwrap_or_else(|_| panic!("odd line {line:?}")));
        }
    }
    let last = last.expect("the service's last line reached the log");
    assert!(last > 0);
    assert_eq!(
        numbers,
        (1..=last).collect::<Vec<_>>(),
        "lines lost or repeated"
    );
}

#[test]
fn removal_stops_the_service_then_its_logger_with_every_line_delivered() {
    let mut scan = Scan::new();
    scan.start(&[]);
    let stage = scan.stage();
    let staged = numbered_service(&stage, "talker");
    let dir = scan.dir.join("talker");
    std::fs::rename(&staged, &dir).unwrap();
    wait_until("lines in the log", LONG, || {
        std::fs::metadata(dir.join("lines"))
            .map(|m| m.len() > 10_000)
            .unwrap_or(false)
    });
    let service_sup = supervisors_of(&dir);
    let log_sup = supervisors_of(&dir.join("log"));
    assert_eq!((service_sup.len(), log_sup.len()), (1, 1));

    let away = stage.join("talker");
    std::fs::rename(&dir, &away).unwrap();
    wait_until("both supervisors to exit", LONG, || {
        !alive(service_sup[0]) && !alive(log_sup[0])
    });
    assert_complete(&std::fs::read_to_string(away.join("lines")).unwrap());
    assert!(
        processes_under(&away).is_empty(),
        "something of the service is left"
    );
    assert!(alive(scan.pid()));
}

#[test]
fn removal_of_a_service_whose_logger_is_down_ends_both_supervisors_and_says_what_is_dropped() {
    let mut scan = Scan::new();
    let dir = service(&scan.dir, "quiet", "echo unread line\nexec sleep 1000");
    script(&dir.join("log/run"), "exec cat > /dev/null");
    std::fs::write(dir.join("log/down"), "").unwrap();
    scan.start(&[]);
    wait_until("the service", LONG, || running(&dir));
    let service_sup = supervisors_of(&dir);
    let log_sup = supervisors_of(&dir.join("log"));
    assert_eq!((service_sup.len(), log_sup.len()), (1, 1));

    let away = scan.stage().join("quiet");
    std::fs::rename(&dir, &away).unwrap();
    // runsv exits too when its logger is down; what nobody will read is said, not hidden.
    wait_until("both supervisors to exit", LONG, || {
        !alive(service_sup[0]) && !alive(log_sup[0])
    });
    wait_until("the dropped bytes reported", LONG, || {
        scan.stderr()
            .contains("\"quiet/log\" is down: 12 unread bytes")
    });
    assert!(processes_under(&away).is_empty(), "{}", scan.stderr());
    assert!(alive(scan.pid()));
}

#[test]
fn removal_while_the_logger_waits_out_its_back_off_hups_it_once_it_runs() {
    let mut scan = Scan::new();
    let dir = service(
        &scan.dir,
        "late",
        "echo line one\necho line two\nexec sleep 1000",
    );
    // The logger dies at once twice (supervise then waits 2 s before the third start), and
    // reads the pipe from then on.
    script(
        &dir.join("log/run"),
        "echo x >> ../tries\n[ $(wc -l < ../tries) -ge 3 ] || exit 1\nexec cat > ../lines",
    );
    scan.start(&[]);
    // Its second run has exited: the supervisor has started it (one restart) and now waits
    // for the next start. (The second line in `tries`, or a status that reads down, is not
    // enough: the second run may still be alive, or its start not published yet, and a
    // removal then rightly finds the logger running, and tells it to exit after it.)
    wait_until("the logger's second death", LONG, || {
        ServiceDir::new(dir.join("log"))
            .extended()
            .is_some_and(|x| x.restarts == 1 && x.next_start_at.is_some())
    });
    assert_eq!(
        std::fs::read_to_string(dir.join("tries")).unwrap(),
        "x\nx\n"
    );
    let service_sup = supervisors_of(&dir);
    let log_sup = supervisors_of(&dir.join("log"));
    assert_eq!((service_sup.len(), log_sup.len()), (1, 1));
    // Removed while the logger is down for its back-off: its `e` waits until it runs (an `e`
    // now would end its supervisor with the pipe unread), then it drains and exits.
    let away = scan.stage().join("late");
    std::fs::rename(&dir, &away).unwrap();
    wait_until("the service's supervisor to exit", LONG, || {
        !alive(service_sup[0])
    });
    wait_until("the logger's supervisor to drain and exit", LONG, || {
        !alive(log_sup[0])
    });
    assert_eq!(
        std::fs::read_to_string(away.join("lines")).unwrap_or_default(),
        "line one\nline two\n",
        // A fourth run (its logger started again after it read EOF) empties `lines`.
        "runs of the logger: {:?}; svscan: {}",
        std::fs::read_to_string(away.join("tries")),
        scan.stderr()
    );
    assert!(processes_under(&away).is_empty(), "{}", scan.stderr());
    assert!(alive(scan.pid()));
}

/// How many of `pid`'s fds are open for writing on the pipe `link` (`pipe:[N]`).
fn writers_of(pid: i32, link: &Path) -> usize {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return 0;
    };
    fds.flatten()
        .filter(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l == link))
        .filter(|fd| {
            let info = format!("/proc/{pid}/fdinfo/{}", fd.file_name().to_string_lossy());
            let text = std::fs::read_to_string(info).unwrap_or_default();
            let flags = text.lines().find_map(|l| l.strip_prefix("flags:"));
            // O_ACCMODE 1: O_WRONLY.
            flags
                .and_then(|f| u32::from_str_radix(f.trim(), 8).ok())
                .is_some_and(|f| f & 3 == 1)
        })
        .count()
}

#[test]
fn a_logger_killed_while_draining_at_shutdown_is_followed_by_one_that_reads_the_rest_once() {
    let mut scan = Scan::new();
    let dir = service(
        &scan.dir,
        "slow",
        "echo line one\necho line two\nexec sleep 1000",
    );
    // The first logger reads nothing, so the lines are still in the pipe when the shutdown
    // tells it to drain; the test kills it then. The next one drains them; a third run (a
    // logger started again after it had read EOF) would empty `lines`.
    script(
        &dir.join("log/run"),
        "echo x >> ../tries\n[ $(wc -l < ../tries) -ge 2 ] || exec sleep 1000\n\
         exec cat > ../lines",
    );
    scan.start(&[]);
    let log = dir.join("log");
    wait_until("the service and the first logger", LONG, || {
        running(&dir) && running(&log)
    });
    let first = std::fs::read_to_string(log.join("supervise/pid")).unwrap();
    let first: i32 = first.trim().parse().unwrap();
    let pipe = std::fs::read_link(format!("/proc/{first}/fd/0")).unwrap();
    assert_eq!(
        writers_of(scan.pid(), &pipe),
        1,
        "svscan holds the write end"
    );
    // Past the quick-death throttle of the log's supervisor, so that svscan starts the next
    // one at once.
    std::thread::sleep(Duration::from_millis(1100));
    scan.control(b"t");
    // The service is gone and its logger's supervisor has the HUP: svscan let go of the
    // write end (only after the HUP).
    wait_until("svscan to let go of the write end", LONG, || {
        writers_of(scan.pid(), &pipe) == 0
    });
    signal(first, rustix::process::Signal::KILL);
    let began = Instant::now();
    assert_eq!(scan.wait_exit(LONG), Some(0), "{}", scan.stderr());
    assert_eq!(
        std::fs::read_to_string(dir.join("lines")).unwrap_or_default(),
        "line one\nline two\n",
        "runs of the logger: {:?}; svscan: {}",
        std::fs::read_to_string(dir.join("tries")),
        scan.stderr()
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("tries")).unwrap(),
        "x\nx\n"
    );
    // The second logger read EOF once svscan let go of the write end it held for it: at its
    // HUP, not at the shutdown's grace.
    assert!(
        !scan.stderr().contains("did not stop in time"),
        "{}",
        scan.stderr()
    );
    assert!(
        began.elapsed() < Duration::from_secs(5),
        "{:?}",
        began.elapsed()
    );
    // Nothing is wrong with the tree: nothing to warn of (a status watch of the new logger's
    // supervisor, tried before it was in its directory, was once said as a shortage).
    assert!(!scan.stderr().contains("warning"), "{}", scan.stderr());
    assert!(processes_under(&dir).is_empty(), "{}", scan.stderr());
}

#[test]
fn removal_of_a_service_whose_log_supervisor_cannot_start_drops_the_pipe_and_ends_the_entry() {
    let mut scan = Scan::new();
    let dir = service(&scan.dir, "stuck", "echo unread line\nexec sleep 1000");
    script(&dir.join("log/run"), "exec cat > /dev/null");
    // The logger's supervisor exits 111 at once, again and again: nobody reads the pipe.
    std::fs::write(dir.join("log/supervise"), "").unwrap();
    scan.start(&[]);
    wait_until("the service", LONG, || running(&dir));
    wait_until("the log supervisor's failure", LONG, || {
        scan.stderr()
            .contains("the supervisor of \"stuck/log\" ended (exit 111)")
    });
    let service_sup = supervisors_of(&dir);

    let away = scan.stage().join("stuck");
    std::fs::rename(&dir, &away).unwrap();
    // Moved away with its service, the log dir cannot host a logger at its old name: what
    // the pipe holds is said to be lost, and the entry ends instead of retrying for ever.
    wait_until("the dropped bytes reported", LONG, || {
        scan.stderr()
            .contains("\"stuck/log\" has no directory any more: 12 unread bytes")
    });
    wait_until("the service's supervisor to exit", LONG, || {
        !alive(service_sup[0])
    });
    assert!(processes_under(&away).is_empty(), "{}", scan.stderr());
    scan.control(b"t");
    assert_eq!(scan.wait_exit(LONG), Some(0), "{}", scan.stderr());
}

#[test]
fn a_killed_supervise_is_restarted() {
    let mut scan = Scan::new();
    marker_service(&scan.dir, "victim");
    scan.start(&[]);
    let dir = scan.dir.join("victim");
    wait_until("the supervisor", LONG, || supervisors_of(&dir).len() == 1);
    let first = supervisors_of(&dir)[0];
    signal(first, rustix::process::Signal::KILL);
    wait_until("a new supervisor", LONG, || {
        let now = supervisors_of(&dir);
        now.len() == 1 && now[0] != first && running(&dir)
    });
    assert!(scan.stderr().contains("\"victim\""), "{}", scan.stderr());
}

#[test]
fn the_cgroup_of_a_supervisor_killed_while_its_entry_is_removed_is_removed() {
    let mut scan = Scan::new();
    // The service ignores TERM, so its supervisor is still waiting for it when killed.
    let dir = service(
        &scan.dir,
        "stubborn",
        "trap '' TERM\ntouch ready\nexec sleep 1000",
    );
    scan.start(&[]);
    wait_until("the service", LONG, || running(&dir));
    wait_until("its trap", LONG, || dir.join("ready").exists());
    let Some(cgroup) = ServiceDir::new(&dir).extended().and_then(|x| x.cgroup) else {
        panic!("cgroup v2 is mounted here, so supervise must use one");
    };
    let parent = warden_tests::own_cgroup_dir().unwrap();
    let cgroup_dir = parent.join(Path::new(&cgroup).file_name().unwrap());
    assert!(cgroup_dir.is_dir(), "{}", cgroup_dir.display());
    let supervisor = supervisors_of(&dir)[0];
    let service_pid = ServiceDir::new(&dir).status().unwrap().pid as i32;
    let outside = scan.stage().join("stubborn");
    std::fs::rename(&dir, &outside).unwrap();
    wait_until("the stop (TERM) to reach the service", LONG, || {
        ServiceDir::new(&outside)
            .status()
            .is_ok_and(|s| s.want != warden_tests::warden::status::Want::Up)
    });
    // The supervisor dies hard, its service with it: nothing can remove the cgroup but svscan.
    signal(supervisor, rustix::process::Signal::STOP);
    signal(service_pid, rustix::process::Signal::KILL);
    wait_until("the service to die", LONG, || !alive(service_pid));
    signal(supervisor, rustix::process::Signal::KILL);
    wait_until("svscan to remove the empty cgroup", LONG, || {
        !cgroup_dir.exists()
    });
    assert!(supervisors_of(&outside).is_empty());
}

#[test]
fn a_restarted_svscan_adopts_the_running_supervisors() {
    let mut scan = Scan::new();
    marker_service(&scan.dir, "one");
    numbered_service(&scan.dir, "two");
    scan.start(&[]);
    let one = scan.dir.join("one");
    let two = scan.dir.join("two");
    wait_until("three supervisors", LONG, || {
        running(&one) && running(&two) && running(&two.join("log"))
    });
    wait_until("one supervisor each", LONG, || {
        [&one, &two, &two.join("log")]
            .iter()
            .all(|d| supervisors_of(d).len() == 1)
    });
    let before = [
        supervisors_of(&one),
        supervisors_of(&two),
        supervisors_of(&two.join("log")),
    ];
    signal(scan.pid(), rustix::process::Signal::KILL);
    scan.wait_exit(LONG);
    scan.start(&[]);
    // Give the new svscan a real chance to start duplicates, then count.
    scan.control(b"a");
    wait_until("the rescan to be served", LONG, || {
        std::fs::metadata(scan.dir.join(".svscan/control")).is_ok()
    });
    std::thread::sleep(Duration::from_millis(300));
    let after = [
        supervisors_of(&one),
        supervisors_of(&two),
        supervisors_of(&two.join("log")),
    ];
    assert_eq!(before, after, "exactly the same supervisors, no duplicate");
    assert!(
        !scan.stderr().contains("unable to adopt"),
        "{}",
        scan.stderr()
    );

    // svscan re-owned the adopted pair's pipe (through /proc): a new log supervisor started
    // after the old one dies reads the very pipe the adopted service writes to.
    let old_log = after[2][0];
    signal(old_log, rustix::process::Signal::KILL);
    let mut new_log = 0;
    wait_until("a new log supervisor", LONG, || {
        new_log = supervisors_of(&two.join("log"))
            .first()
            .copied()
            .unwrap_or(0);
        new_log != 0 && new_log != old_log && running(&two.join("log"))
    });
    let fd = |pid: i32, n: u32| std::fs::read_link(format!("/proc/{pid}/fd/{n}")).unwrap();
    assert_eq!(
        fd(new_log, 0),
        fd(after[1][0], 1),
        "not the adopted pair's pipe"
    );

    // Adopted supervisors are stopped like its own.
    scan.control(b"t");
    assert_eq!(scan.wait_exit(LONG), Some(0));
    for pid in after.iter().flatten().chain([&new_log]) {
        assert!(!alive(*pid), "supervisor {pid} outlived the teardown");
    }
}

/// Found by the chaos soak (bench/run soak): an adopted supervisor counted as started when
/// svscan adopted it, so one killed in the first second after svscan's restart was restarted
/// only after a second of back-off, although it had run far longer.
#[test]
fn an_adopted_supervisor_that_had_run_a_second_is_restarted_at_once() {
    let mut scan = Scan::new();
    marker_service(&scan.dir, "old");
    scan.start(&[]);
    let dir = scan.dir.join("old");
    wait_until("the supervisor", LONG, || {
        running(&dir) && supervisors_of(&dir).len() == 1
    });
    // The supervisor's age is what is tested: over a second before the restart of svscan.
    std::thread::sleep(Duration::from_millis(1200));
    signal(scan.pid(), rustix::process::Signal::KILL);
    scan.wait_exit(LONG);
    scan.start(&[]);
    let adopted = supervisors_of(&dir);
    assert_eq!(adopted.len(), 1);
    signal(adopted[0], rustix::process::Signal::KILL);
    wait_until("a new supervisor", LONG, || {
        let now = supervisors_of(&dir);
        now.len() == 1 && now[0] != adopted[0] && running(&dir)
    });
    let said = scan.stderr();
    let line = said
        .lines()
        .find(|l| l.contains("the supervisor of \"old\" ended"))
        .unwrap_or_else(|| panic!("no word of the death: {said}"));
    assert!(line.ends_with("restarting it in no time"), "{line}");
}

#[test]
fn a_killed_logger_loses_no_line() {
    let mut scan = Scan::new();
    let dir = service(
        &scan.dir,
        "writer",
        // The trap may run between any two commands: `i` counts lines already written, so
        // `last $i` never names a line the writer did not send.
        "i=0\ntrap 'echo last $i; exit 0' TERM\nwhile :; do echo $((i+1)); i=$((i+1)); \
         [ $((i % 20)) -eq 0 ] && sleep 0.01; done",
    );
    script(
        &dir.join("log/run"),
        &format!("exec {} ./main", bin("logger").display()),
    );
    scan.start(&[]);
    let log = dir.join("log");
    wait_until("the logger", LONG, || running(&log));
    let logger_pid = || {
        std::fs::read_to_string(log.join("supervise/pid"))
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok())
    };
    // Read every number the logs hold, with how often each occurs, and the final `last N`.
    let read_logs = || {
        let mut text = String::new();
        for entry in std::fs::read_dir(log.join("main")).unwrap().flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name == "current" || name.starts_with('@') {
                text.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
            }
        }
        let mut seen = std::collections::BTreeMap::<u64, u32>::new();
        let mut last = None;
        for line in text.lines() {
            // "@4000000069....<24 hex digits> text"
            let body = line.split_once(' ').map(|(_, b)| b).unwrap_or(line);
            if let Some(n) = body.strip_prefix("last ") {
                last = n.parse::<u64>().ok();
            } else if let Ok(n) = body.parse::<u64>() {
                *seen.entry(n).or_default() += 1;
            }
        }
        (seen, last)
    };
    let mut previous = None;
    let mut kill_logger = |sig| {
        let mut pid = None;
        wait_until("a new running logger", LONG, || {
            pid = logger_pid().filter(|p| alive(*p) && Some(*p) != previous);
            pid.is_some()
        });
        // Past supervise's quick-death throttle, so the next logger starts at once.
        std::thread::sleep(Duration::from_millis(1100));
        signal(pid.unwrap(), sig);
        wait_until("the logger to die", LONG, || !alive(pid.unwrap()));
        previous = pid;
    };
    for _ in 0..3 {
        kill_logger(rustix::process::Signal::TERM);
    }
    // Everything logged up to here went through TERMs only.
    let mut boundary = 0;
    wait_until("lines from the logger after the TERMs", LONG, || {
        boundary = read_logs().0.keys().next_back().copied().unwrap_or(0);
        logger_pid().is_some_and(alive) && boundary > 0
    });
    for _ in 0..3 {
        kill_logger(rustix::process::Signal::KILL);
    }
    std::thread::sleep(Duration::from_millis(200));
    scan.control(b"t");
    assert_eq!(scan.wait_exit(LONG), Some(0));

    let (seen, last) = read_logs();
    let last = last.expect("the writer's last line reached the log");
    for n in 1..=last {
        assert!(seen.contains_key(&n), "line {n} of {last} lost");
    }
    let twice_before_kills: Vec<_> = seen
        .range(..=boundary)
        .filter(|(_, c)| **c > 1)
        .map(|(n, _)| *n)
        .collect();
    assert!(
        twice_before_kills.is_empty(),
        "repeated across TERMs: {twice_before_kills:?}"
    );
    let repeated = seen.values().filter(|c| **c > 1).count();
    println!(
        "{last} lines; exactly once up to {boundary} (TERMs); {repeated} repeated after (SIGKILLs)"
    );
}

#[test]
fn bad_entries_are_reported_once_and_the_rest_runs() {
    let mut scan = Scan::new();
    let d = &scan.dir;
    std::os::unix::fs::symlink("loop", d.join("loop")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/warden", d.join("dangling")).unwrap();
    std::fs::write(d.join("plain-file"), "not a service").unwrap();
    std::fs::create_dir(d.join("no-run")).unwrap();
    marker_service(d, "with space");
    marker_service(d, "new\nline");
    let odd = OsStr::from_bytes(b"bytes-\xff\xfe");
    marker_service(d, odd.to_str().unwrap_or("x"));
    let odd_dir = d.join(odd);
    std::fs::create_dir_all(&odd_dir).unwrap();
    script(&odd_dir.join("run"), "echo $$ > started\nexec sleep 1000");
    marker_service(d, "-dash");
    marker_service(d, "good");
    scan.start(&[]);
    for name in ["good", "with space", "new\nline", "-dash"] {
        let dir = scan.dir.join(name);
        wait_until(&format!("{name:?} to run"), LONG, || {
            dir.join("started").exists()
        });
    }
    wait_until("the non-UTF-8 name to run", LONG, || {
        odd_dir.join("started").exists()
    });
    wait_until("a supervisor for the dir without run", LONG, || {
        running(&scan.dir.join("no-run"))
    });
    for _ in 0..3 {
        scan.control(b"a");
        signal(scan.pid(), rustix::process::Signal::HUP);
    }
    // A new service after the rescans proves they were served.
    let late = marker_service(&scan.stage(), "late");
    std::fs::rename(&late, scan.dir.join("late")).unwrap();
    wait_until("the late service", LONG, || {
        scan.dir.join("late/started").exists()
    });
    let stderr = scan.stderr();
    assert_eq!(stderr.matches("\"loop\"").count(), 1, "{stderr}");
    assert_eq!(stderr.matches("\"dangling\"").count(), 1, "{stderr}");
    assert!(!stderr.contains("plain-file"), "{stderr}");
    assert!(alive(scan.pid()));
    assert_eq!(supervisors_of(&scan.dir.join("good")).len(), 1);
}

#[test]
fn five_thousand_entries_are_all_supervised() {
    let _heavy = heavy();
    let mut scan = Scan::new();
    let n = 5000;
    for i in 0..n {
        let dir = scan.dir.join(format!("s{i}"));
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("down"), "").unwrap();
        std::os::unix::fs::symlink("/bin/true", dir.join("run")).unwrap();
    }
    let start = Instant::now();
    scan.start(&[]);
    let mut up = 0;
    wait_until("5000 supervisors", Duration::from_secs(120), || {
        up = (0..n)
            .filter(|i| scan.dir.join(format!("s{i}/supervise/ok")).exists())
            .count();
        up == n
    });
    println!("{n} supervisors up in {:?}", start.elapsed());
    scan.control(b"t");
    assert_eq!(scan.wait_exit(Duration::from_secs(120)), Some(0));
}

#[test]
fn running_out_of_fds_is_reported_once_and_retried() {
    let mut scan = Scan::new();
    // 40 logged services need 80 pipe ends: more than a 64-fd limit allows.
    for i in 0..40 {
        let dir = service(&scan.dir, &format!("s{i:02}"), "exec sleep 1000");
        script(&dir.join("log/run"), "exec cat > /dev/null");
    }
    // 64 of svscan's own, plus what it inherits from the test runner.
    let limit = 64 + warden_tests::inherited_fds();
    let mut cmd = Command::new("prlimit");
    cmd.arg(format!("--nofile={limit}:{limit}"))
        .arg("--")
        .arg(bin("svscan"))
        .arg(&scan.dir);
    scan.launch(cmd);
    wait_until("the fd shortage report", LONG, || {
        scan.stderr().contains("Too many open files")
    });
    let stderr = scan.stderr();
    assert_eq!(stderr.matches("Too many open files").count(), 1, "{stderr}");
    assert!(alive(scan.pid()));
    // Taking services away frees fds; the rest start on their retry deadline.
    let stage = scan.stage();
    for i in 20..40 {
        std::fs::rename(
            scan.dir.join(format!("s{i:02}")),
            stage.join(format!("s{i:02}")),
        )
        .unwrap();
    }
    let down = || -> Vec<String> {
        (0..20)
            .flat_map(|i| [format!("s{i:02}"), format!("s{i:02}/log")])
            .filter(|name| !running(&scan.dir.join(name)))
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !down().is_empty() {
        assert!(
            Instant::now() < deadline,
            "not running after 60s: {:?}\nsvscan's fds: {:?}\nstderr:\n{}",
            down(),
            std::fs::read_dir(format!("/proc/{}/fd", scan.pid())).map(|d| d.count()),
            scan.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The scan that sees the removals must not itself need an fd: when it did, a shortage
    // that held every fd could never end.
    let stderr = scan.stderr();
    assert!(
        !stderr.contains("unable to read the scan directory"),
        "{stderr}"
    );
}

/// The lowest fd numbers `pid` has free, in order (the next ones it would be given).
fn free_fd_numbers(pid: i32) -> Vec<u32> {
    let open: std::collections::BTreeSet<u32> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    (0..).filter(|n| !open.contains(n)).take(3).collect()
}

#[test]
fn a_shortage_holding_every_fd_ends_when_the_service_holding_them_is_removed() {
    let mut scan = Scan::new();
    let stage = scan.stage();
    for name in ["a", "b"] {
        let dir = service(&stage, name, "exec sleep 1000");
        script(&dir.join("log/run"), "exec cat > /dev/null");
    }
    scan.start(&[]);
    // Room for exactly one log pipe: one service gets it, the other waits for fds, and
    // svscan has no fd number left below its limit.
    let free_fds = || free_fd_numbers(scan.pid());
    let limit = free_fds()[2];
    let (code, _, stderr) = warden_tests::run(
        Command::new("prlimit")
            .arg(format!("--pid={}", scan.pid()))
            .arg(format!("--nofile={limit}:{limit}")),
        LONG,
    );
    assert_eq!(code, Some(0), "{stderr}");
    for name in ["a", "b"] {
        std::fs::rename(stage.join(name), scan.dir.join(name)).unwrap();
    }
    wait_until("one service up, the other short of fds", LONG, || {
        scan.stderr().contains("Too many open files")
            && ["a", "b"].iter().any(|name| {
                running(&scan.dir.join(name)) && running(&scan.dir.join(name).join("log"))
            })
    });
    let (holder, waiter) = if running(&scan.dir.join("a")) {
        ("a", "b")
    } else {
        ("b", "a")
    };
    assert!(free_fds()[0] >= limit);
    // Seeing the removal must not need an fd: it is what frees them.
    std::fs::rename(scan.dir.join(holder), stage.join(holder)).unwrap();
    wait_until("the other service and its logger up", LONG, || {
        running(&scan.dir.join(waiter)) && running(&scan.dir.join(waiter).join("log"))
    });
    wait_until("the removed service's supervisors gone", LONG, || {
        supervisors_of(&stage.join(holder)).is_empty()
            && supervisors_of(&stage.join(holder).join("log")).is_empty()
    });
    let stderr = scan.stderr();
    assert!(
        !stderr.contains("unable to read the scan directory"),
        "{stderr}"
    );
}

#[test]
fn a_second_svscan_exits_111() {
    let mut scan = Scan::new();
    scan.start(&[]);
    let (code, _, stderr) = warden_tests::run(Command::new(bin("svscan")).arg(&scan.dir), LONG);
    assert_eq!(code, Some(111), "{stderr}");
    assert!(stderr.contains("another svscan is running"), "{stderr}");
}

#[test]
fn control_bytes_and_signals_tear_down_with_distinct_statuses() {
    use rustix::process::Signal;
    for (how, expected) in [
        (&b"t"[..], 0),
        (b"p", 10),
        (b"r", 11),
        (b"h", 12),
        (b"TERM", 0),
        (b"INT", 0),
        (b"USR1", 10),
        (b"PWR", 10),
        (b"USR2", 12),
    ] {
        let mut scan = Scan::new();
        let dir = service(
            &scan.dir,
            "svc",
            "trap 'echo stopped > ../stopped; exit 0' TERM\ntouch ready\nwhile :; do sleep 1; done",
        );
        scan.start(&[]);
        wait_until("the service's trap", LONG, || dir.join("ready").exists());
        match how {
            b"TERM" => signal(scan.pid(), Signal::TERM),
            b"INT" => signal(scan.pid(), Signal::INT),
            b"USR1" => signal(scan.pid(), Signal::USR1),
            b"PWR" => signal(scan.pid(), Signal::POWER),
            b"USR2" => signal(scan.pid(), Signal::USR2),
            byte => scan.control(byte),
        }
        let how = String::from_utf8_lossy(how);
        assert_eq!(
            scan.wait_exit(LONG),
            Some(expected),
            "{how}: {}",
            scan.stderr()
        );
        assert!(
            scan.dir.join("stopped").exists(),
            "{how}: the service was not stopped first"
        );
    }
}

#[test]
fn a_service_that_ignores_term_is_killed_after_the_grace() {
    let mut scan = Scan::new();
    let dir = service(
        &scan.dir,
        "stubborn",
        "trap '' TERM\ntouch ready\nwhile :; do sleep 1; done",
    );
    scan.start(&["-g", "500ms"]);
    wait_until("the service's trap", LONG, || dir.join("ready").exists());
    let started = Instant::now();
    scan.control(b"t");
    assert_eq!(scan.wait_exit(LONG), Some(0));
    println!("teardown took {:?}", started.elapsed());
    assert!(started.elapsed() >= Duration::from_millis(500));
    wait_until("nothing left of the service", LONG, || {
        processes_under(&dir).is_empty()
    });
}

/// `unshare ...`: a fresh PID and mount namespace whose process 1 is `program`.
fn in_namespace(program: &Path, args: &[&OsStr]) -> Command {
    let mut cmd = warden_tests::unshare_pid_and_mount();
    cmd.arg(program).args(args);
    cmd
}

#[test]
fn as_pid_1_it_reaps_orphans_and_term_leads_to_init_stage3_reboot() {
    let mut scan = Scan::new();
    // svscan finds supervise and init next to its own executable.
    let bindir = scan.root.path().join("bin");
    std::fs::create_dir(&bindir).unwrap();
    std::fs::copy(bin("svscan"), bindir.join("svscan")).unwrap();
    std::os::unix::fs::symlink(bin("supervise"), bindir.join("supervise")).unwrap();
    let marker = scan.root.path().join("stage3");
    script(
        &bindir.join("init"),
        &format!("echo \"$$ $*\" > {}", marker.display()),
    );
    // Orphans: a background child whose parent exits at once, every 50 ms.
    // Double forks: a background child whose parent exits at once, every 50 ms.
    let orphans = service(
        &scan.dir,
        "orphans",
        "trap 'echo stopped > ../stopped; exit 0' TERM\ntouch ready\n\
         while :; do sh -c 'sleep 0.2 & exit 0'; sleep 0.05; done",
    );
    let victim = service(&scan.dir, "victim", "exec sleep 1000");
    // As PID 1, svscan's catch-all logger would run in this machine's /run: a temp dir instead.
    let uncaught = scan.root.path().join("uncaught");
    scan.launch(in_namespace(
        &bindir.join("svscan"),
        &[OsStr::new("-u"), uncaught.as_os_str(), scan.dir.as_os_str()],
    ));
    let unshare = scan.pid();
    let mut init = None;
    wait_until("svscan as process 1", LONG, || {
        init = children_of(unshare).first().map(|(pid, _)| *pid);
        init.is_some()
    });
    let init = init.unwrap();
    wait_until("the services", LONG, || {
        orphans.join("ready").exists() && running(&victim)
    });
    std::thread::sleep(Duration::from_millis(1000));
    // No zombie lingers anywhere in the namespace (supervise is the double-forkers' subreaper).
    for (pid, _) in descendants(init).into_iter().filter(|(_, s)| *s == 'Z') {
        wait_until(
            &format!("zombie {pid} to be reaped"),
            Duration::from_secs(2),
            || !Path::new(&format!("/proc/{pid}")).exists(),
        );
    }
    // A supervisor KILLed leaves its service to process 1: svscan must reap it.
    let mut service_pid = None;
    wait_until("the victim's sleep", LONG, || {
        service_pid = processes_under(&victim).into_iter().find(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .unwrap_or_default()
                .trim()
                == "sleep"
        });
        service_pid.is_some()
    });
    let service_pid = service_pid.unwrap();
    let supervisor = supervisors_of(&victim)[0];
    signal(supervisor, rustix::process::Signal::KILL);
    wait_until("the supervisor to be reaped", LONG, || {
        !Path::new(&format!("/proc/{supervisor}")).exists()
    });
    if let Some(parent) = parent_of(service_pid) {
        assert_eq!(parent, init, "the orphan went to process 1");
        signal(service_pid, rustix::process::Signal::TERM);
    }
    wait_until(
        "the orphan to be reaped by svscan",
        Duration::from_secs(5),
        || !Path::new(&format!("/proc/{service_pid}")).exists(),
    );
    // TERM to the namespace's process 1 (never this machine's): reboot = init --stage3 reboot.
    signal(init, rustix::process::Signal::TERM);
    assert_eq!(scan.wait_exit(LONG), Some(0), "{}", scan.stderr());
    let stage3 = std::fs::read_to_string(&marker).unwrap();
    assert_eq!(
        stage3.trim(),
        "1 --stage3 reboot",
        "init must replace svscan as process 1"
    );
    assert!(
        scan.dir.join("stopped").exists(),
        "the service was not stopped before stage 3"
    );
}

/// Every process below `pid`, with its state letter.
fn descendants(pid: i32) -> Vec<(i32, char)> {
    let mut out = Vec::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        for (child, state) in children_of(p) {
            todo.push(child);
            out.push((child, state));
        }
    }
    out
}

#[test]
fn a_log_dir_without_run_gets_a_supervised_default_logger_and_drains_on_removal() {
    let mut scan = Scan::new();
    let stage = scan.stage();
    let dir = service(
        &stage,
        "quiet",
        "i=0\ntrap 'echo last $i; exit 0' TERM\nwhile :; do i=$((i+1)); echo $i; \
         [ $((i % 50)) -eq 0 ] && sleep 0.01; done",
    );
    std::fs::create_dir(dir.join("log")).unwrap();
    scan.start(&[]);
    let inside = scan.dir.join("quiet");
    std::fs::rename(&dir, &inside).unwrap();
    let current = inside.join("log/main/current");
    wait_until("lines in log/main/current", LONG, || {
        std::fs::metadata(&current).is_ok_and(|m| m.len() > 10_000)
    });
    assert!(
        !inside.join("log/run").exists(),
        "no run is created in the user's log/"
    );
    // The default logger is supervised like any service: supervise/ with warden's extended
    // status, up, and its main process is `logger ./main`.
    let log = ServiceDir::new(inside.join("log"));
    wait_until("the default logger reported up", LONG, || {
        running(&inside.join("log"))
    });
    let extended = log.extended().expect("log/supervise/warden");
    assert!(extended.supervisor_pid.is_some(), "{extended:?}");
    let logger_pid = log.status().unwrap().pid;
    let cmdline = std::fs::read(format!("/proc/{logger_pid}/cmdline")).unwrap();
    let argv: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
    assert!(
        argv.first().is_some_and(|a| a.ends_with(b"/logger"))
            && argv.get(1) == Some(&&b"./main"[..]),
        "{:?}",
        String::from_utf8_lossy(&cmdline)
    );
    std::fs::rename(&inside, &dir).unwrap();
    wait_until("the service and its logger to exit", LONG, || {
        processes_under(&dir).is_empty()
    });
    let text = std::fs::read_to_string(dir.join("log/main/current")).unwrap();
    let bodies: String = text
        .lines()
        .map(|l| l.split_once(' ').map(|(_, b)| b).unwrap_or(l))
        .map(|b| format!("{b}\n"))
        .collect();
    assert_complete(&bodies);
}

#[test]
fn a_log_added_later_is_connected_when_the_supervisor_restarts() {
    let mut scan = Scan::new();
    let dir = service(
        &scan.dir,
        "late-log",
        "i=0\nwhile :; do i=$((i+1)); echo $i; sleep 0.01; done",
    );
    scan.start(&[]);
    wait_until("the service", LONG, || running(&dir));
    script(&dir.join("log/run"), "exec cat >> ../lines");
    // svctl exit: the service stops and its supervisor exits; svscan starts a new one, now
    // with the pipe to the new logger.
    ServiceDir::new(&dir).send(b"x").unwrap();
    wait_until("lines through the new logger", LONG, || {
        running(&dir.join("log"))
            && std::fs::metadata(dir.join("lines")).is_ok_and(|m| m.len() > 100)
    });
}

#[test]
fn ctrl_c_at_the_terminal_stops_the_tree_in_order() {
    use std::os::unix::process::CommandExt;
    let mut scan = Scan::new();
    let dir = service(
        &scan.dir,
        "svc",
        "trap 'echo stopped > ../stopped; exit 0' TERM INT\ntouch ready\n\
         while :; do sleep 1; done",
    );
    let mut cmd = Command::new(bin("svscan"));
    // svscan as a foreground job: the group a terminal's ctrl-C signals.
    cmd.arg(&scan.dir).process_group(0);
    scan.launch(cmd);
    wait_until("the service's trap", LONG, || dir.join("ready").exists());
    let group = rustix::process::Pid::from_raw(scan.pid()).unwrap();
    rustix::process::kill_process_group(group, rustix::process::Signal::INT).unwrap();
    assert_eq!(scan.wait_exit(LONG), Some(0), "{}", scan.stderr());
    assert!(scan.dir.join("stopped").exists());
    assert!(
        processes_under(&scan.dir).is_empty(),
        "something outlived svscan"
    );
    assert!(!scan.stderr().contains("ended"), "{}", scan.stderr());
}

#[test]
fn as_pid_1_a_failed_exec_of_init_is_reported_and_supervision_goes_on() {
    let mut scan = Scan::new();
    let bindir = scan.root.path().join("bin");
    std::fs::create_dir(&bindir).unwrap();
    std::fs::copy(bin("svscan"), bindir.join("svscan")).unwrap();
    std::os::unix::fs::symlink(bin("supervise"), bindir.join("supervise")).unwrap();
    // An `init` that cannot be executed (never fall back to this machine's /sbin/init).
    std::fs::write(bindir.join("init"), "not a program").unwrap();
    let svc = marker_service(&scan.dir, "svc");
    // As PID 1, svscan's catch-all logger would run in this machine's /run: a temp dir instead.
    let uncaught = scan.root.path().join("uncaught");
    scan.launch(in_namespace(
        &bindir.join("svscan"),
        &[OsStr::new("-u"), uncaught.as_os_str(), scan.dir.as_os_str()],
    ));
    let unshare = scan.pid();
    let mut init = None;
    wait_until("svscan as process 1", LONG, || {
        init = children_of(unshare).first().map(|(pid, _)| *pid);
        init.is_some()
    });
    let init = init.unwrap();
    wait_until("the service", LONG, || svc.join("started").exists());
    std::fs::remove_file(svc.join("started")).unwrap();
    scan.control(b"h");
    wait_until("the report of the failed exec", LONG, || {
        scan.stderr().contains("unable to exec")
    });
    // Still process 1, and supervising again.
    wait_until("the service to run again", LONG, || {
        svc.join("started").exists()
    });
    assert!(alive(init));
    assert!(scan.stderr().contains("--stage3 halt"), "{}", scan.stderr());
    signal(init, rustix::process::Signal::KILL);
    scan.wait_exit(LONG);
}

#[test]
fn an_inotify_queue_overflow_leads_to_a_full_rescan() {
    let mut scan = Scan::new();
    scan.start(&[]);
    let limit: usize = std::fs::read_to_string("/proc/sys/fs/inotify/max_queued_events")
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(16384);
    // Stopped, svscan cannot read its queue: flood it past the limit, then move a service in
    // after the overflow, when its own event can no longer be queued.
    signal(scan.pid(), rustix::process::Signal::STOP);
    let junk = scan.dir.join(".junk");
    for _ in 0..limit / 2 + 10 {
        std::fs::write(&junk, "").unwrap();
        std::fs::remove_file(&junk).unwrap();
    }
    let staged = marker_service(&scan.stage(), "after-overflow");
    let dir = scan.dir.join("after-overflow");
    std::fs::rename(&staged, &dir).unwrap();
    signal(scan.pid(), rustix::process::Signal::CONT);
    wait_until("the service moved in during the overflow", LONG, || {
        dir.join("started").exists()
    });
}

#[test]
fn a_log_made_just_after_its_service_is_connected_at_once() {
    // `mkdir -p svc/log` or `cp -r` into the scan dir: svscan sees svc before its log/.
    // Not beside the tests that load the machine: the log/ must come within svscan's 2 s
    // window after the service, and under their load the supervisor alone can take that long.
    let _heavy = heavy();
    let mut scan = Scan::new();
    scan.start(&[]);
    let dir = scan.dir.join("svc");
    std::fs::create_dir(&dir).unwrap();
    add_log_then_run_and_expect_lines(&scan, &dir);
}

#[test]
fn a_log_made_just_after_a_service_that_the_first_scan_found_is_connected_too() {
    // The service is made while svscan starts: its first scan, not inotify, finds it.
    let _heavy = heavy();
    let mut scan = Scan::new();
    let dir = scan.dir.join("svc");
    std::fs::create_dir(&dir).unwrap();
    scan.start(&[]);
    add_log_then_run_and_expect_lines(&scan, &dir);
}

/// With svscan supervising the service dir `dir` that has no `run` yet: a `log/` is moved
/// in, then `run` is written; its lines must reach the logger without a restart by hand.
fn add_log_then_run_and_expect_lines(scan: &Scan, dir: &Path) {
    wait_until("the supervisor", LONG, || running(dir));
    let staged_log = scan.stage().join("log");
    script(&staged_log.join("run"), "exec cat >> ../lines");
    std::fs::rename(&staged_log, dir.join("log")).unwrap();
    script(&dir.join("run"), "while :; do echo line; sleep 0.01; done");
    wait_until("lines through the logger", LONG, || {
        std::fs::metadata(dir.join("lines")).is_ok_and(|m| m.len() > 0)
    });
    assert!(!scan.stderr().contains("ended"), "{}", scan.stderr());
}

#[test]
fn without_inotify_it_says_so_once_and_still_scans_on_request() {
    let mut scan = Scan::new();
    marker_service(&scan.dir, "first");
    let cmd = warden_tests::svscan_with_inotify_limits(&scan.dir, 0, 0);
    scan.launch(cmd);
    wait_until("the service present at start", LONG, || {
        scan.dir.join("first/started").exists()
    });
    let staged = marker_service(&scan.stage(), "second");
    let second = scan.dir.join("second");
    std::fs::rename(&staged, &second).unwrap();
    scan.control(b"a");
    wait_until("the service picked up on svctl rescan", LONG, || {
        second.join("started").exists()
    });
    let stderr = scan.stderr();
    assert_eq!(stderr.matches("unable to watch").count(), 1, "{stderr}");
}

#[test]
fn out_of_inotify_watches_a_new_service_still_runs_and_it_is_said_once() {
    let mut scan = Scan::new();
    // One watch: the scan directory's. The 2 s watch of each new service for its log/ fails.
    marker_service(&scan.dir, "first");
    scan.launch(warden_tests::svscan_with_inotify_limits(&scan.dir, 8, 1));
    // The control FIFO exists before the first scan: an entry renamed in before that scan
    // would be found by it and get no watch. The entry present at start proves it is done.
    wait_until("the service present at start", LONG, || {
        scan.dir.join("first/started").exists()
    });
    let stage = scan.stage();
    for name in ["a", "b", "c"] {
        let staged = marker_service(&stage, name);
        std::fs::rename(&staged, scan.dir.join(name)).unwrap();
        let dir = scan.dir.join(name);
        wait_until("the service", LONG, || dir.join("started").exists());
    }
    let stderr = scan.stderr();
    assert_eq!(stderr.matches("unable to watch").count(), 1, "{stderr}");
    // "first" was made just before svscan started, so its first scan watches it too.
    assert!(stderr.contains("\"first\""), "the entry is named: {stderr}");
}

#[test]
fn out_of_inotify_watches_a_log_made_just_after_its_service_is_still_connected() {
    let _heavy = heavy();
    let mut scan = Scan::new();
    // One watch: the scan directory's. None is left to see svc's log/ being made.
    marker_service(&scan.dir, "first");
    scan.launch(warden_tests::svscan_with_inotify_limits(&scan.dir, 8, 1));
    wait_until("the service present at start", LONG, || {
        scan.dir.join("first/started").exists()
    });
    let dir = scan.dir.join("svc");
    std::fs::create_dir(&dir).unwrap();
    add_log_then_run_and_expect_lines(&scan, &dir);
}

#[test]
fn an_unreadable_entry_is_reported_once_when_not_root() {
    let mut scan = Scan::new();
    let mode = |path: &Path, m: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(m)).unwrap()
    };
    mode(scan.root.path(), 0o755);
    mode(&scan.dir, 0o777);
    let good = marker_service(&scan.dir, "good");
    mode(&good, 0o777);
    // A link into a directory nobody may search: stat fails with EACCES.
    let private = scan.root.path().join("private");
    marker_service(&private, "svc");
    mode(&private, 0o700);
    std::os::unix::fs::symlink(private.join("svc"), scan.dir.join("hidden")).unwrap();
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(bin("svscan"))
        .arg(&scan.dir);
    scan.launch(cmd);
    wait_until("the readable service", LONG, || {
        good.join("started").exists()
    });
    for _ in 0..3 {
        scan.control(b"a");
    }
    let late = scan.stage();
    mode(&late, 0o777);
    let staged = marker_service(&late, "late");
    mode(&staged, 0o777);
    std::fs::rename(&staged, scan.dir.join("late")).unwrap();
    wait_until("a service after the rescans", LONG, || {
        scan.dir.join("late/started").exists()
    });
    let stderr = scan.stderr();
    assert_eq!(stderr.matches("\"hidden\"").count(), 1, "{stderr}");
    assert!(stderr.contains("Permission denied"), "{stderr}");
}

#[test]
fn a_supervise_that_cannot_be_executed_is_reported_and_retried() {
    let mut scan = Scan::new();
    service(&scan.dir, "a", "echo $$ > started\nexec /bin/sleep 1000");
    let alone = scan.root.path().join("bin");
    std::fs::create_dir(&alone).unwrap();
    std::fs::copy(bin("svscan"), alone.join("svscan")).unwrap();
    // Found beside svscan, but its exec fails (EACCES): known only once the child is done.
    let supervise = alone.join("supervise");
    std::fs::copy(bin("supervise"), &supervise).unwrap();
    std::fs::set_permissions(&supervise, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut cmd = Command::new(alone.join("svscan"));
    cmd.arg(&scan.dir);
    scan.launch(cmd);
    let said = "unable to start the supervisor of \"a\": Permission denied (os error 13)";
    wait_until("the failed exec reported", LONG, || {
        scan.stderr().contains(said)
    });
    assert!(!scan.stderr().contains("ended"), "{}", scan.stderr());
    std::fs::set_permissions(&supervise, std::fs::Permissions::from_mode(0o755)).unwrap();
    wait_until("the service started on a retry", LONG, || {
        scan.dir.join("a/started").exists()
    });
    assert!(alive(scan.pid()));
}

/// Issue 11 item 8: svscan runs only warden's supervise from its own directory, never one
/// from PATH (daemontools' would fail and orphan the service); once warden's is installed
/// beside svscan, the services start.
#[test]
fn a_missing_supervise_is_reported_and_the_services_start_once_it_is_installed() {
    let mut scan = Scan::new();
    // Absolute paths only: PATH holds nothing but a supervise that is not warden's.
    service(&scan.dir, "a", "echo $$ > started\nexec /bin/sleep 1000");
    service(&scan.dir, "b", "echo $$ > started\nexec /bin/sleep 1000");
    let alone = scan.root.path().join("bin");
    let path = scan.root.path().join("path");
    std::fs::create_dir(&alone).unwrap();
    std::fs::create_dir(&path).unwrap();
    let fake_ran = scan.root.path().join("fake-ran");
    warden_tests::script(
        &path.join("supervise"),
        &format!("touch {}\nexit 111", fake_ran.display()),
    );
    std::fs::copy(bin("svscan"), alone.join("svscan")).unwrap();
    let mut cmd = Command::new(alone.join("svscan"));
    cmd.arg(&scan.dir).env("PATH", &path);
    scan.launch(cmd);
    let missing = format!(
        "unable to find warden's supervise at {}: No such file or directory; PATH is not searched",
        alone.join("supervise").display()
    );
    for name in ["a", "b"] {
        let said = format!("unable to start the supervisor of \"{name}\": {missing}");
        wait_until("the failed start reported", LONG, || {
            scan.stderr().contains(&said)
        });
    }
    assert!(
        scan.stderr()
            .contains(&format!("svscan: warning: {missing}")),
        "{}",
        scan.stderr()
    );
    assert!(!scan.dir.join("a/started").exists());
    assert!(!fake_ran.exists(), "svscan ran the supervise from PATH");
    std::fs::copy(bin("supervise"), alone.join("supervise")).unwrap();
    wait_until("both services started on a retry", LONG, || {
        scan.dir.join("a/started").exists() && scan.dir.join("b/started").exists()
    });
    assert!(!fake_ran.exists(), "svscan ran the supervise from PATH");
    assert!(alive(scan.pid()));
}

/// svscan run from a shell on a terminal set to `tostop` (`stty tostop`): a supervisor that
/// writes a diagnostic must not be stopped by SIGTTOU, as it was while it shared svscan's
/// session, a background process group of that terminal. Each leads a session of its own
/// (runsvdir -P), with no controlling terminal; the diagnostic still reaches the terminal.
#[test]
fn a_supervisor_is_not_stopped_by_a_tostop_terminal_it_writes_to() {
    let pty = warden_tests::Pty::open();
    pty.set_tostop();
    let mut scan = Scan::new();
    let svc = service(&scan.dir, "a", "exec sleep 1000");
    // A bad setting: supervise says so on its stderr, the terminal, and runs the service.
    std::fs::write(svc.join("down-signal"), "bogus\n").unwrap();
    let mut cmd = Command::new(bin("svscan"));
    cmd.arg(&scan.dir).stdin(Stdio::null());
    // svscan leads the terminal's session in its foreground, as a shell's foreground job.
    pty.attach(&mut cmd, false);
    scan.svscan = Some(Spawned::new(&mut cmd));
    let shown = || pty.shown();
    let state = |pid: i32| {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        stat.rsplit_once(") ")
            .and_then(|(_, rest)| rest.chars().next())
    };
    let deadline = Instant::now() + LONG;
    loop {
        let supervisors = supervisors_of(&svc);
        let stopped: Vec<i32> = supervisors
            .iter()
            .copied()
            .filter(|pid| state(*pid) == Some('T'))
            .collect();
        assert!(
            stopped.is_empty(),
            "supervisor {stopped:?} stopped (SIGTTOU) by the terminal; it shows: {:?}",
            shown()
        );
        if shown().contains("down-signal") && running(&svc) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no diagnostic on the terminal and the service up within {LONG:?}: {:?}",
            shown()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let supervisor = supervisors_of(&svc);
    assert_eq!(supervisor.len(), 1);
    // SAFETY: getsid only reads the session id of the pid given.
    let sid = unsafe { libc::getsid(supervisor[0]) };
    assert_eq!(
        sid, supervisor[0],
        "the supervisor leads a session of its own"
    );
}
