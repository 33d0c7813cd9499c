//! Process tests of `supervise`: real processes in temp dirs, every wait with a deadline.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use warden::status::{Exit, Extended, RunState, Status, Want};
use warden::svdir::{Liveness, ServiceDir};
use warden_tests::{alive, bin, run, script, wait_until, Spawned};

const WAIT: Duration = Duration::from_secs(10);

/// A warden `supervise` on one service dir, its stdout and stderr in files.
struct Sup {
    svc: PathBuf,
    child: Spawned,
    out: PathBuf,
    err: PathBuf,
}

impl Sup {
    fn start(svc: &Path) -> Sup {
        Sup::start_nowait(svc).ready()
    }

    fn start_nowait(svc: &Path) -> Sup {
        Sup::start_with(svc, &[], Stdio::null())
    }

    /// supervise with `options` before the dir, and `stdin`.
    fn start_with(svc: &Path, options: &[&str], stdin: Stdio) -> Sup {
        std::fs::create_dir_all(svc).unwrap();
        let out = svc.with_extension("out");
        let err = svc.with_extension("err");
        let child = Spawned::new(
            Command::new(bin("supervise"))
                .args(options)
                .arg(svc)
                .stdin(stdin)
                .stdout(std::fs::File::create(&out).unwrap())
                .stderr(std::fs::File::create(&err).unwrap()),
        );
        Sup::of(svc, child)
    }

    /// A supervise on `svc` that the test started its own way (`out` and `err` may not exist).
    fn of(svc: &Path, child: Spawned) -> Sup {
        Sup {
            svc: svc.to_owned(),
            child,
            out: svc.with_extension("out"),
            err: svc.with_extension("err"),
        }
    }

    fn ready(self) -> Sup {
        wait_until("supervise to take over", WAIT, || {
            self.dir().liveness() == Ok(Liveness::Running) && self.dir().status().is_ok()
        });
        self
    }

    fn dir(&self) -> ServiceDir {
        ServiceDir::new(&self.svc)
    }

    fn send(&self, bytes: &[u8]) {
        self.dir().send(bytes).unwrap();
    }

    fn status(&self) -> Status {
        self.dir().status().unwrap()
    }

    fn ext(&self) -> Extended {
        self.dir().extended().unwrap_or_default()
    }

    fn wait(&self, what: &str, cond: impl Fn(&Status, &Extended) -> bool) {
        wait_until(what, WAIT, || {
            let (Ok(s), Some(x)) = (self.dir().status(), self.dir().extended()) else {
                return false;
            };
            cond(&s, &x)
        });
    }

    fn wait_run(&self) -> u32 {
        self.wait("run", |s, _| s.state == RunState::Run && s.pid != 0);
        self.status().pid
    }

    fn wait_down(&self) {
        self.wait("down", |s, _| s.state == RunState::Down && s.pid == 0);
    }

    /// Sends a command and then `p`/`c`, waiting until the pause flag flips: proof that
    /// everything before it was handled, without sleeping.
    fn sync(&self) {
        self.send(b"p");
        self.wait("pause flag", |s, _| s.paused);
        self.send(b"c");
        self.wait("cont flag", |s, _| !s.paused);
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    fn wait_stderr(&self, text: &str) {
        wait_until(&format!("stderr to say {text:?}"), WAIT, || {
            self.stderr().contains(text)
        });
    }

    fn exit_code(&mut self) -> Option<i32> {
        self.child.wait_exit(WAIT).code()
    }
}

impl Drop for Sup {
    fn drop(&mut self) {
        let pid = self.dir().status().map(|s| s.pid).unwrap_or(0);
        let cgroup = self
            .dir()
            .extended()
            .and_then(|x| x.cgroup)
            .zip(warden_tests::warden::cgroupfs::mount())
            .map(|(cgroup, mount)| mount.join(cgroup.trim_start_matches('/')));
        let _ = self.dir().send(b"x");
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if self.child.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.dir().send(b"k");
        if pid > 0 {
            warden_tests::kill_group(pid as i32);
        }
        if let Some(cgroup) = &cgroup {
            let _ = std::fs::write(cgroup.join("cgroup.kill"), "1");
        }
        // A supervisor killed hard cannot remove its cgroup: the test does, by the path the
        // supervisor published (its name is that of the dir when it started, which a test
        // may have renamed since).
        let _ = self.child.child.kill();
        let _ = self.child.child.wait();
        warden_tests::remove_cgroups_under(&self.svc, Duration::from_secs(2));
        if let Some(cgroup) = cgroup {
            let deadline = Instant::now() + Duration::from_secs(2);
            while std::fs::remove_dir(&cgroup).is_err()
                && cgroup.exists()
                && Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

fn read_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn read_pid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn process_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")?.1.chars().next()
}

#[test]
fn restart_after_crash() {
    let root = tempfile::tempdir().unwrap();
    let svc = root.path().join("svc");
    script(&svc.join("run"), "echo $$ >> pids\nexec sleep 1000");
    let sup = Sup::start(&svc);
    let first = sup.wait_run();
    // Past the quick-death throttle, so the restart is immediate.
    wait_until("the run to be 1 s old", WAIT, || {
        sup.status()
            .stamp
            .to_system_time()
            .elapsed()
            .is_ok_and(|e| e > Duration::from_millis(1100))
    });
    let killed_at = Instant::now();
    warden_tests::kill_group(first as i32);
    sup.wait("a new run", |s, x| {
        s.pid != first && s.pid != 0 && x.restarts == 1
    });
    assert!(killed_at.elapsed() < Duration::from_millis(900));
    let x = sup.ext();
    assert_eq!(x.restarts, 1);
    assert_eq!(x.last_exit, Some(Exit::Signal(9)));
    assert!(x.last_exit_at.is_some());
    assert_eq!(x.supervisor_pid, Some(sup.child.pid() as u32));
    wait_until("the second run's line", WAIT, || {
        read_lines(&svc.join("pids")).len() == 2
    });
}

#[test]
fn back_off_doubles_on_quick_deaths_and_resets_after_a_long_run() {
    let root = tempfile::tempdir().unwrap();
    let svc = root.path().join("svc");
    script(
        &svc.join("run"),
        "if [ -e long ]; then echo \"$(date +%s.%N) long\" >> starts; sleep 1.2\n\
         else echo \"$(date +%s.%N) quick\" >> starts; fi\nexit 1",
    );
    let starts = svc.join("starts");
    let sup = Sup::start(&svc);
    let count = |n: usize| {
        let starts = starts.clone();
        move || read_lines(&starts).len() >= n
    };
    wait_until("2 starts", WAIT, count(2));
    // The next start (the third) lives long.
    std::fs::write(svc.join("long"), "").unwrap();
    wait_until("3 starts", WAIT, count(3));
    std::fs::remove_file(svc.join("long")).unwrap();
    // While the back-off runs, the extended status says when the next start is due.
    wait_until("5 starts", Duration::from_secs(20), count(5));
    let lines = read_lines(&starts);
    let times: Vec<f64> = lines
        .iter()
        .map(|l| l.split(' ').next().unwrap().parse().unwrap())
        .collect();
    let kinds: Vec<&str> = lines.iter().map(|l| l.split(' ').nth(1).unwrap()).collect();
    assert_eq!(&kinds[..5], &["quick", "quick", "long", "quick", "quick"]);
    let gaps: Vec<f64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    // quick death → 1 s, quick death → 2 s, long run (1.2 s) → at once, quick → 1 s again.
    // Upper bounds leave room for a loaded machine; without the reset the last gap would be 4 s.
    assert!((0.95..1.9).contains(&gaps[0]), "{gaps:?}");
    assert!((1.95..2.9).contains(&gaps[1]), "{gaps:?}");
    assert!((1.15..2.0).contains(&gaps[2]), "{gaps:?}");
    assert!((0.95..1.9).contains(&gaps[3]), "{gaps:?}");
    drop(sup);
}

#[test]
fn next_start_time_is_in_the_extended_status_and_commands_are_served_meanwhile() {
    let root = tempfile::tempdir().unwrap();
    let svc = root.path().join("svc");
    script(&svc.join("run"), "exit 1");
    let sup = Sup::start(&svc);
    sup.wait("a throttled restart", |s, x| {
        s.state == RunState::Down && x.next_start_at.is_some()
    });
    // runsv would be asleep here (void-linux/runit#33); warden answers at once.
    let asked = Instant::now();
    sup.send(b"d");
    sup.wait("want down", |s, x| {
        s.want == Want::Down && x.next_start_at.is_none()
    });
    assert!(asked.elapsed() < Duration::from_millis(900));
}

#[test]
fn finish_gets_exit_code_or_signal() {
    let root = tempfile::tempdir().unwrap();
    let svc = root.path().join("svc");
    script(&svc.join("run"), "[ -e code ] && exit 3\nexec sleep 1000");
    script(&svc.join("finish"), "echo \"$1 $2\" >> finished");
    std::fs::write(svc.join("down"), "").unwrap();
    let sup = Sup::start(&svc);
    sup.send(b"o");
    let pid = sup.wait_run();
    sup.send(b"k");
    wait_until("finish after KILL", WAIT, || {
        read_lines(&svc.join("finished")) == ["-1 9"]
    });
    sup.wait("down after KILL", |s, x| {
        s.state == RunState::Down && x.last_exit == Some(Exit::Signal(9))
    });
    assert!(!alive(pid as i32));
    std::fs::write(svc.join("code"), "").unwrap();
    sup.send(b"o");
    wait_until("finish after exit 3", WAIT, || {
        read_lines(&svc.join("finished")) == ["-1 9", "3 0"]
    });
    sup.wait_down();
}

#[test]
fn finish_is_killed_after_timeout_finish() {
    let root = tempfile::tempdir().unwrap();
    let svc = root.path().join("svc");
    script(&svc.join("run"), "exec sleep 1000");
    script(&svc.join("finish"), "echo $$ > finish.pid\nexec sleep 1000");
    std::fs::write(svc.join("timeout-finish"), "300ms").unwrap();
    let sup = Sup::start(&svc);
    sup.wait_run();
    sup.send(b"d");
    sup.wait("finish", |s, _| s.state == RunState::Finish);
    let finish = read_pid_wait(&svc.join("finish.pid"));
    let began = Instant::now();
    sup.wait_down();
    assert!(began.elapsed() < Duration::from_secs(3));
    assert!(!alive(finish));
}

fn read_pid_wait(path: &Path) -> i32 {
    wait_until(&format!("{}", path.display()), WAIT, || {
        read_pid(path).is_some()
    });
    read_pid(path).unwrap()
}

#[test]
fn down_file_keeps_it_down_until_up() {
    let root = tempfile::tempdir().unwrap();
    let svc = root.path().join("svc");
    script(&svc.join("run"), "echo started >> log\nexec sleep 1000");
    std::fs::write(svc.join("down"), "").unwrap();
    let sup = Sup::start(&svc);
    let s = sup.status();
    assert_eq!((s.state, s.pid, s.want), (RunState::Down, 0, Want::Down));
    sup.sync();
    assert!(!svc.join("log").exists());
    sup.send(b"u");
    sup.wait_run();
    wait_until("the run's line", WAIT, || {
        read_lines(&svc.join("log")) == ["started"]
    });
}

const TRAPPER: &str =
    "for s in HUP ALRM INT QUIT USR1 USR2; do trap \"echo $s >> sigs\" $s; done\n\
trap 'echo TERM >> sigs; exit 0' TERM\n\
echo $$ >> pids\n\
while :; do sleep 1000 & wait $!; kill $! 2>/dev/null; done";

#[test]
fn every_signal_byte_reaches_the_service() {
    let root = tempfile::tempdir().unwrap();
    let svc = root.path().join("svc");
    script(&svc.join("run"), TRAPPER);
    let sup = Sup::start(&svc);
    let pid = sup.wait_run();
    wait_until("pids", WAIT, || svc.join("pids").exists());
    let sigs = svc.join("sigs");
    for (byte, name) in [
        (b'h', "HUP"),
        (b'a', "ALRM"),
        (b'i', "INT"),
        (b'q', "QUIT"),
        (b'1', "USR1"),
        (b'2', "USR2"),
    ] {
        sup.send(&[byte]);
        wait_until(name, WAIT, || {
            read_lines(&sigs).last().map(String::as_str) == Some(name)
        });
    }
    // p: STOP and the paused flag; c: CONT.
    sup.send(b"p");
    wait_until("stopped", WAIT, || process_state(pid) == Some('T'));
    sup.wait("paused flag", |s, _| s.paused);
    sup.send(b"c");
    wait_until("continued", WAIT, || process_state(pid) != Some('T'));
    sup.wait("paused flag cleared", |s, _| !s.paused);
    // t: TERM, and the service is restarted.
    sup.send(b"t");
    sup.wait("restart after t", |s, _| s.pid != pid && s.pid != 0);
    assert_eq!(read_lines(&sigs).last().map(String::as_str), Some("TERM"));
    // k: KILL, and the service is restarted.
    let pid = sup.status().pid;
    sup.send(b"k");
    sup.wait("restart after k", |s, x| {
        s.pid != pid && s.pid != 0 && x.last_exit == Some(Exit::Signal(9))
    });
}

#[test]
fn up_down_once_and_exit_bytes() {
    let root = tempfile::tempdir().unwrap();
    let svc = root.path().join("svc");
    script(&svc.join("run"), "exec sleep 1000");
    let mut sup = Sup::start(&svc);
    let pid = sup.wait_run();
    sup.send(b"d");
    sup.wait_down();
    assert!(!alive(pid as i32));
    assert_eq!(sup.status().want, Want::Down);
    sup.send(b"u");
    let pid = sup.wait_run();
    assert_eq!(sup.status().want, Want::Up);
    sup.send(b"o");
    sup.wait("want down", |s, _| s.want == Want::Down && s.pid == pid);
    // Junk and newlines in between are skipped.
    sup.send(b"\nzZ\n");
    sup.send(b"x");
    assert_eq!(sup.exit_code(), Some(0));
    assert!(!alive(pid as i32));
    assert_eq!(sup.dir().liveness(), Ok(Liveness::NotRunning));
}

#[test]
fn e_exits_once_the_service_exits_by_itself() {
    let root = tempfile::tempdir().unwrap();
    let svc = root.path().join("svc");
    script(&svc.join("run"), "echo $$ >> pids\nexec sleep 1000");
    let mut sup = Sup::start(&svc);
    let pid = sup.wait_run();
    wait_until("the run's line", WAIT, || {
        read_lines(&svc.join("pids")).len() == 1
    });
    sup.send(b"e");
    sup.sync();
    // Not stopped by `e`.
    assert_eq!(sup.status().pid, pid);
    assert!(alive(pid as i32));
    warden_tests::kill_group(pid as i32);
    assert_eq!(sup.exit_code(), Some(0));
    assert_eq!(read_lines(&svc.join("pids")).len(), 1, "not restarted");
}

#[test]
fn a_hup_sent_before_the_service_exits_keeps_it_from_being_restarted() {
    let root = tempfile::tempdir().unwrap();
    let svc = root.path().join("svc");
    // The run (long enough not to be a quick death) stops its supervisor, sends it HUP, and
    // exits; let go on, the supervisor finds the HUP and the death in one go. The HUP came
    // first (svscan sends a logger's supervisor HUP before the logger can read EOF): no
    // restart, or a `cat > file` logger would be run again and empty its file.
    script(
        &svc.join("run"),
        "echo $$ >> pids\n[ $(wc -l < pids) -ge 2 ] && exit 0\nsleep 1.2\n\
         kill -STOP $PPID\nkill -HUP $PPID\nexit 0",
    );
    let mut sup = Sup::start(&svc);
    let pid = sup.wait_run();
    wait_until("the run to exit, unreaped", WAIT, || {
        process_state(pid) == Some('Z')
    });
    let sup_pid = rustix::process::Pid::from_raw(sup.child.pid()).unwrap();
    rustix::process::kill_process(sup_pid, rustix::process::Signal::CONT).unwrap();
    assert_eq!(sup.exit_code(), Some(0), "{}", sup.stderr());
    assert_eq!(read_lines(&svc.join("pids")).len(), 1, "restarted");
}

#[test]
fn sigterm_is_x_and_sighup_is_e() {
    let root = tempfile::tempdir().unwrap();
    let svc = root.path().join("svc");
    script(&svc.join("run"), "exec sleep 1000");
    let mut sup = Sup::start(&svc);
    let pid = sup.wait_run();
    let sup_pid = rustix::process::Pid::from_raw(sup.child.pid()).unwrap();
    rustix::process::kill_process(sup_pid, rustix::process::Signal::TERM).unwrap();
    assert_eq!(sup.exit_code(), Some(0));
    assert!(!alive(pid as i32));

    let svc = root.path().join("svc2");
    script(&svc.join("run"), "exec sleep 1000");
    let mut sup = Sup::start(&svc);
    let pid = sup.wait_run();
    let sup_pid = rustix::process::Pid::from_raw(sup.child.pid()).unwrap();
    rustix::process::kill_process(sup_pid, rustix::process::Signal::HUP).unwrap();
    sup.sync();
    assert!(alive(pid as i32), "HUP does not stop the service");
    warden_tests::kill_group(pid as i32);
    assert_eq!(sup.exit_code(), Some(0));
}

#[test]
fn timeout_kill_kills_a_service_that_ignores_term() {
    let root = tempfile::tempdir().unwrap();
    let svc = root.path().join("svc");
    script(
        &svc.join("run"),
        "trap '' TERM\ntouch ready\nexec sleep 1000",
    );
    std::fs::write(svc.join("timeout-kill"), "300").unwrap();
    let sup = Sup::start(&svc);
    let pid = sup.wait_run();
    // A TERM before the trap is set would end it at once.
    wait_until("the trap", WAIT, || svc.join("ready").exists());
    let asked = Instant::now();
    sup.send(b"d");
    sup.wait("down after KILL", |s, x| {
        s.state == RunState::Down && x.last_exit == Some(Exit::Signal(9))
    });
    assert!(asked.elapsed() >= Duration::from_millis(250));
    assert!(!alive(pid as i32));
}

#[test]
fn down_signal_is_used_to_stop() {
    let root = tempfile::tempdir().unwrap();
    let svc = root.path().join("svc");
    script(
        &svc.join("run"),
        "trap 'echo INT >> sigs; exit 0' INT\ntrap '' TERM\ntouch ready\n\
         while :; do sleep 1000 & wait $!; done",
    );
    std::fs::write(svc.join("down-signal"), "SIGINT\n").unwrap();
    let sup = Sup::start(&svc);
    sup.wait_run();
    // An INT before the trap is set would end it without a word.
    wait_until("the traps", WAIT, || svc.join("ready").exists());
    sup.send(b"d");
    sup.wait_down();
    assert_eq!(read_lines(&svc.join("sigs")), ["INT"]);
}

#[test]
fn a_service_dir_renamed_while_supervised_reads_its_settings_where_it_now_is() {
    // svscan keeps a service's supervisor across a rename (it knows services by device and
    // inode), so a start after the rename must find `down-signal` in the dir's new place.
    let root = tempfile::tempdir().unwrap();
    let before = root.path().join("before");
    script(
        &before.join("run"),
        "trap 'echo INT >> sigs; exit 0' INT\ntouch ready\n\
         while :; do sleep 1000 & wait $!; done",
    );
    let mut sup = Sup::start(&before);
    sup.wait_run();
    wait_until("the first run", WAIT, || before.join("ready").exists());
    sup.send(b"d");
    sup.wait_down();
    let after = root.path().join("after");
    std::fs::rename(&before, &after).unwrap();
    sup.svc = after.clone();
    std::fs::write(after.join("down-signal"), "SIGINT\n").unwrap();
    std::fs::remove_file(after.join("ready")).unwrap();
    sup.send(b"u");
    sup.wait_run();
    wait_until("the trap", WAIT, || after.join("ready").exists());
    sup.send(b"d");
    sup.wait_down();
    assert_eq!(read_lines(&after.join("sigs")), ["INT"]);
}

#[test]
fn a_supervisor_started_with_stdin_and_stdout_closed_gives_its_run_dev_null() {
    // supervise opens /dev/null on a closed 0, 1 or 2 before anything else, so no file of its
    // own (its signal pipe, `supervise/lock`) takes those numbers and reaches the run.
    let root = tempfile::tempdir().unwrap();
    let svc = root.path().join("svc");
    script(
        &svc.join("run"),
        "in=$(readlink /proc/$$/fd/0)\nout=$(readlink /proc/$$/fd/1)\n\
         echo \"$in\" > fd0\necho \"$out\" > fd1\nexec sleep 1000",
    );
    std::fs::create_dir_all(&svc).unwrap();
    let child = Spawned::new(
        Command::new("sh")
            .args(["-c", "exec \"$0\" \"$1\" <&- >&-"])
            .arg(bin("supervise"))
            .arg(&svc)
            .stderr(std::fs::File::create(svc.with_extension("err")).unwrap()),
    );
    let sup = Sup::of(&svc, child).ready();
    sup.wait_run();
    wait_until("the run to look at its fds", WAIT, || {
        svc.join("fd1").metadata().is_ok_and(|m| m.len() > 0)
    });
    assert_eq!(read_lines(&svc.join("fd0")), ["/dev/null"]);
    assert_eq!(read_lines(&svc.join("fd1")), ["/dev/null"]);
}

#[test]
fn a_supervisor_whose_stderr_nobody_reads_survives_its_warnings() {
    // A warning written to a pipe without a reader raises SIGPIPE, which must not kill the
    // supervisor: it is caught, and the write fails instead.
    let root = tempfile::tempdir().unwrap();
    let svc = root.path().join("svc");
    script(&svc.join("run"), "exec sleep 1000");
    let (read, write) = rustix::pipe::pipe().unwrap();
    drop(read);
    let child = Spawned::new(
        Command::new(bin("supervise"))
            .arg(&svc)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(write)),
    );
    let mut sup = Sup::of(&svc, child).ready();
    sup.wait_run();
    sup.send(b"?");
    sup.send(b"d");
    sup.wait_down();
    assert!(
        sup.child.child.try_wait().unwrap().is_none(),
        "supervise died"
    );
}

#[test]
fn forked_child_is_gone_after_down() {
    let root = tempfile::tempdir().unwrap();
    let svc = root.path().join("svc");
    script(
        &svc.join("run"),
        "sleep 1000 &\necho $! > child\nexec sleep 1000",
    );
    let sup = Sup::start(&svc);
    sup.wait_run();
    let child = read_pid_wait(&svc.join("child"));
    assert!(alive(child));
    sup.send(b"d");
    sup.wait_down();
    assert!(!alive(child), "child {child} left behind");
}

#[test]
fn double_forked_daemon_is_gone_after_down() {
    let root = tempfile::tempdir().unwrap();
    let svc = root.path().join("svc");
    // The daemon leaves the session and the process group; only the cgroup still holds it.
    script(
        &svc.join("run"),
        "(setsid sleep 1000 & echo $! > daemon)\nexec sleep 1000",
    );
    let sup = Sup::start(&svc);
    sup.wait_run();
    let daemon = read_pid_wait(&svc.join("daemon"));
    wait_until("the daemon to be alive", WAIT, || alive(daemon));
    assert!(
        sup.ext().cgroup.is_some(),
        "cgroup v2 is mounted here, so supervise must use it"
    );
    sup.send(b"d");
    sup.wait_down();
    assert!(!alive(daemon), "daemon {daemon} left behind");
}

#[test]
fn leftovers_of_a_crashed_run_are_stopped_before_the_restart() {
    let root = tempfile::tempdir().unwrap();
    let svc = root.path().join("svc");
    script(
        &svc.join("run"),
        "sleep 1000 &\necho $! >> children\nexec sleep 1000",
    );
    let sup = Sup::start(&svc);
    let pid = sup.wait_run();
    let first = read_pid_wait(&svc.join("children"));
    warden_tests::kill_group(pid as i32);
    // kill_group took the child too; make one that survives the main process instead.
    sup.wait("a new run", |s, _| s.pid != pid && s.state == RunState::Run);
    assert!(!alive(first));
    wait_until("second child", WAIT, || {
        read_lines(&svc.join("children")).len() == 2
    });
    let second: i32 = read_lines(&svc.join("children"))[1].parse().unwrap();
    let pid = sup.status().pid;
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid as i32).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    sup.wait("a third run", |s, _| {
        s.pid != pid && s.state == RunState::Run
    });
    assert!(!alive(second), "leftover {second} survived the restart");
}

#[test]
fn restarted_supervisor_stops_what_is_left_in_the_cgroup() {
    let root = tempfile::tempdir().unwrap();
    let svc = root.path().join("svc");
    script(&svc.join("run"), "exec sleep 1000");
    let mut sup = Sup::start(&svc);
    let old = sup.wait_run();
    if sup.ext().cgroup.is_none() {
        panic!("cgroup v2 is mounted here, so supervise must use it");
    }
    // The supervisor dies hard; its service lives on in the cgroup.
    let _ = sup.child.child.kill();
    let _ = sup.child.child.wait();
    assert!(alive(old as i32));
    let sup2 = Sup::start(&svc);
    sup2.wait("a new run", |s, _| s.pid != old && s.state == RunState::Run);
    assert!(!alive(old as i32), "old instance {old} still runs");
    std::mem::forget(sup);
}

#[test]
fn notification_fd_readiness_is_recorded() {
    let root = tempfile::tempdir().unwrap();
    let svc = root.path().join("svc");
    script(
        &svc.join("run"),
        "while [ ! -e go ]; do sleep 0.05; done\necho >&3\nexec sleep 1000",
    );
    std::fs::write(svc.join("notification-fd"), "3\n").unwrap();
    let sup = Sup::start(&svc);
    sup.wait_run();
    assert_eq!(sup.ext().ready_at, None, "not ready before the newline");
    std::fs::write(svc.join("go"), "").unwrap();
    sup.wait("ready", |_, x| x.ready_at.is_some());
    let x = sup.ext();
    assert!(x.ready_at.unwrap() >= sup.status().stamp);

    // Without notification-fd nothing is claimed.
    let plain = root.path().join("plain");
    script(&plain.join("run"), "exec sleep 1000");
    let sup = Sup::start(&plain);
    sup.wait_run();
    sup.sync();
    assert_eq!(sup.ext().ready_at, None);
}

#[test]
fn second_supervise_on_the_same_dir_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let svc = root.path().join("svc");
    script(&svc.join("run"), "exec sleep 1000");
    let sup = Sup::start(&svc);
    sup.wait_run();
    let (code, _, err) = run(Command::new(bin("supervise")).arg(&svc), WAIT);
    assert_eq!(code, Some(111));
    assert_eq!(
        err,
        format!(
            "supervise: fatal: unable to lock {}/supervise/lock: another supervise runs\n",
            svc.display()
        )
    );
}

#[test]
fn usage_and_missing_dir() {
    let (code, _, err) = run(&mut Command::new(bin("supervise")), WAIT);
    assert_eq!(
        (code, err.as_str()),
        (Some(100), "usage: supervise [--default-log] [--held] DIR\n")
    );
    let (code, _, err) = run(Command::new(bin("supervise")).arg("/nonexistent/svc"), WAIT);
    assert_eq!(code, Some(111));
    assert!(
        err.contains("unable to change to directory /nonexistent/svc: No such file or directory"),
        "{err}"
    );
}

/// `--help` is usage on stdout, not a directory named `--help`; an unknown or repeated option
/// is a usage error naming it; `--` ends the options, so a directory whose name begins with
/// `-` is supervised.
#[test]
fn help_unknown_options_and_a_dash_dir_after_double_dash() {
    let usage = "usage: supervise [--default-log] [--held] DIR\n";
    let (code, out, err) = run(Command::new(bin("supervise")).arg("--help"), WAIT);
    assert_eq!((code, out.as_str(), err.as_str()), (Some(0), usage, ""));
    for options in [&["--bogus", "svc"][..], &["--held", "--held", "svc"]] {
        let (code, _, err) = run(Command::new(bin("supervise")).args(options), WAIT);
        let option = options[options.len() - 2];
        assert_eq!(
            (code, err),
            (
                Some(100),
                format!("supervise: unknown or repeated option {option}\n{usage}")
            )
        );
    }
    let root = tempfile::tempdir().unwrap();
    let svc = root.path().join("-dash");
    script(&svc.join("run"), "exec sleep 1000");
    let child = Spawned::new(
        Command::new(bin("supervise"))
            .args(["--", "-dash"])
            .current_dir(root.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    let sup = Sup::of(&svc, child).ready();
    sup.wait_run();
}

#[test]
fn supervise_dir_layout() {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let root = tempfile::tempdir().unwrap();
    let svc = root.path().join("svc");
    script(&svc.join("run"), "exec sleep 1000");
    // A dangling `supervise` symlink: its target is created (runit's tmpfs trick).
    let state = root.path().join("state/svc");
    std::os::unix::fs::symlink(&state, svc.join("supervise")).unwrap();
    let sup = Sup::start(&svc);
    let pid = sup.wait_run();
    assert!(state.is_dir());
    let meta = |f: &str| std::fs::metadata(state.join(f)).unwrap();
    assert!(meta("control").file_type().is_fifo());
    assert!(meta("ok").file_type().is_fifo());
    assert_eq!(meta("control").permissions().mode() & 0o777, 0o600);
    assert_eq!(meta("lock").permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::read(state.join("status")).unwrap().len(), 20);
    assert_eq!(
        std::fs::read_to_string(state.join("pid")).unwrap(),
        format!("{pid}\n")
    );
    assert_eq!(
        std::fs::read_to_string(state.join("stat")).unwrap(),
        "run\n"
    );
    // A fresh supervise dir is 0700.
    let other = root.path().join("other");
    script(&other.join("run"), "exec sleep 1000");
    let sup2 = Sup::start(&other);
    let mode = std::fs::metadata(other.join("supervise"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);
    drop(sup2);
}

#[test]
fn env_dir_cwd_and_stdio_are_passed_to_run() {
    let root = tempfile::tempdir().unwrap();
    let svc = root.path().join("svc");
    script(
        &svc.join("run"),
        "echo \"$GREETING from $(pwd)\"\necho to-stderr >&2\n[ -z \"$GONE\" ] && echo gone-unset\nexec sleep 1000",
    );
    std::fs::create_dir(svc.join("env")).unwrap();
    std::fs::write(svc.join("env/GREETING"), "hello\n").unwrap();
    std::fs::write(svc.join("env/GONE"), "").unwrap();
    let sup = Sup::start(&svc);
    sup.wait_run();
    wait_until("output", WAIT, || {
        std::fs::read_to_string(&sup.out)
            .unwrap_or_default()
            .contains("gone-unset")
    });
    let out = std::fs::read_to_string(&sup.out).unwrap();
    assert!(
        out.contains(&format!("hello from {}", svc.display())),
        "{out}"
    );
    sup.wait_stderr("to-stderr");
}

#[test]
fn missing_run_is_reported_retried_and_rescued() {
    let root = tempfile::tempdir().unwrap();
    let svc = root.path().join("svc");
    std::fs::create_dir_all(&svc).unwrap();
    let sup = Sup::start(&svc);
    let message = format!(
        "supervise: warning: unable to start ./run in {}: No such file or directory",
        svc.display()
    );
    sup.wait_stderr(&message);
    sup.wait("last_error", |_, x| {
        x.last_error
            .as_deref()
            .is_some_and(|e| e.contains("No such file or directory"))
    });
    // Fixed: a later retry starts it, and the error is cleared.
    script(&svc.join("run"), "exec sleep 1000");
    sup.wait_run();
    sup.wait("error cleared", |_, x| x.last_error.is_none());
}

#[test]
fn run_not_executable_or_a_directory_is_reported_and_rescued() {
    use std::os::unix::fs::PermissionsExt;
    let root = tempfile::tempdir().unwrap();
    let svc = root.path().join("svc");
    std::fs::create_dir_all(&svc).unwrap();
    std::fs::write(svc.join("run"), "#!/bin/sh\nexec sleep 1000\n").unwrap();
    let sup = Sup::start(&svc);
    sup.wait_stderr(&format!(
        "unable to start ./run in {}: Permission denied",
        svc.display()
    ));
    std::fs::set_permissions(svc.join("run"), std::fs::Permissions::from_mode(0o755)).unwrap();
    sup.wait_run();
    drop(sup);

    let svc = root.path().join("dir");
    std::fs::create_dir_all(svc.join("run")).unwrap();
    let sup = Sup::start(&svc);
    sup.wait_stderr(&format!(
        "unable to start ./run in {}: it is a directory",
        svc.display()
    ));
    std::fs::remove_dir(svc.join("run")).unwrap();
    script(&svc.join("run"), "exec sleep 1000");
    sup.send(b"u");
    sup.wait_run();
}

#[test]
fn junk_on_the_control_fifo_is_reported_and_survived() {
    let root = tempfile::tempdir().unwrap();
    let svc = root.path().join("svc");
    script(&svc.join("run"), "exec sleep 1000");
    let sup = Sup::start(&svc);
    let pid = sup.wait_run();
    sup.send(b"\xff\x00zZ\n");
    sup.wait_stderr(&format!(
        "supervise: warning: ignoring unknown byte 0xff on {}/supervise/control",
        svc.display()
    ));
    sup.sync();
    assert_eq!(sup.status().pid, pid);
    // More than one read's worth in one write: the `d` at the end is not lost.
    let mut long = vec![b'\n'; 200];
    long.push(b'd');
    sup.send(&long);
    sup.wait_down();
}

#[test]
fn nothing_starts_after_x_in_the_same_write() {
    let root = tempfile::tempdir().unwrap();
    let svc = root.path().join("svc");
    script(&svc.join("run"), "echo started >> log\nexec sleep 1000");
    std::fs::write(svc.join("down"), "").unwrap();
    let mut sup = Sup::start(&svc);
    sup.send(b"xu");
    assert_eq!(sup.exit_code(), Some(0));
    let s = sup.status();
    assert_eq!(
        (s.state, s.pid),
        (RunState::Down, 0),
        "a run started after x"
    );
    assert!(!svc.join("log").exists());
}

#[test]
fn unreadable_env_file_is_reported_and_rescued() {
    let root = tempfile::tempdir().unwrap();
    let svc = root.path().join("svc");
    script(&svc.join("run"), "exec sleep 1000");
    std::fs::create_dir(svc.join("env")).unwrap();
    std::os::unix::fs::symlink("/nonexistent", svc.join("env/BROKEN")).unwrap();
    let sup = Sup::start(&svc);
    sup.wait_stderr(&format!(
        "unable to read {}/env/BROKEN: No such file or directory",
        svc.display()
    ));
    sup.wait("last_error", |_, x| {
        x.last_error
            .as_deref()
            .is_some_and(|e| e.contains("env/BROKEN"))
    });
    std::fs::remove_file(svc.join("env/BROKEN")).unwrap();
    sup.wait_run();
}

#[test]
fn bad_setting_file_is_reported_and_the_default_used() {
    let root = tempfile::tempdir().unwrap();
    let svc = root.path().join("svc");
    script(&svc.join("run"), "exec sleep 1000");
    std::fs::write(svc.join("timeout-kill"), "soon\n").unwrap();
    std::fs::write(svc.join("down-signal"), "SIGBOGUS\n").unwrap();
    let sup = Sup::start(&svc);
    let pid = sup.wait_run();
    sup.wait_stderr(&format!(
        "supervise: warning: unable to use {}/timeout-kill",
        svc.display()
    ));
    sup.wait_stderr(&format!("{}/down-signal", svc.display()));
    sup.wait("last_error", |_, x| x.last_error.is_some());
    // The default down-signal (TERM) still stops it.
    sup.send(b"d");
    sup.wait_down();
    assert!(!alive(pid as i32));
}

#[test]
fn run_after_killing_stubborn_leftovers_stays_up() {
    // Regression: KILL through cgroup.kill made the kernel kill every later child cloned into
    // the cgroup, so each new run died at once.
    let root = tempfile::tempdir().unwrap();
    let svc = root.path().join("svc");
    script(
        &svc.join("run"),
        "sh -c \"trap '' TERM; echo \\$\\$ >> stubborn; exec sleep 1000\" &\nexec sleep 1000",
    );
    std::fs::write(svc.join("timeout-kill"), "300ms").unwrap();
    let sup = Sup::start(&svc);
    let pid = sup.wait_run();
    wait_until("the stubborn child", WAIT, || {
        read_lines(&svc.join("stubborn")).len() == 1
    });
    let stubborn: i32 = read_lines(&svc.join("stubborn"))[0].parse().unwrap();
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid as i32).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    sup.wait("a new run", |s, _| s.pid != pid && s.state == RunState::Run);
    assert!(!alive(stubborn), "stubborn leftover {stubborn} survived");
    let new = sup.status().pid;
    sup.sync();
    sup.sync();
    assert_eq!(sup.status().pid, new, "the new run was killed");
    assert!(alive(new as i32));
    sup.wait("one restart", |_, x| x.restarts == 1);
}

#[test]
fn event_fifos_get_a_byte_on_each_status_change() {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    use rustix::fs::{Mode, OFlags};
    let root = tempfile::tempdir().unwrap();
    let svc = root.path().join("svc");
    script(&svc.join("run"), "exec sleep 1000");
    let sup = Sup::start(&svc);
    sup.wait_run();
    let fifo = svc.join("supervise/event/client");
    rustix::fs::mkfifoat(rustix::fs::CWD, &fifo, Mode::from_raw_mode(0o600)).unwrap();
    let reader = rustix::fs::open(&fifo, OFlags::RDONLY | OFlags::NONBLOCK, Mode::empty()).unwrap();
    sup.send(b"d");
    let mut fds = [PollFd::new(&reader, PollFlags::IN)];
    let timeout = Timespec {
        tv_sec: 10,
        tv_nsec: 0,
    };
    assert_eq!(poll(&mut fds, Some(&timeout)).unwrap(), 1, "no event byte");
    let mut buf = [0u8; 16];
    let n = rustix::io::read(&reader, &mut buf).unwrap();
    assert!(n >= 1 && buf[..n].iter().all(|&b| b == b's'));
    sup.wait_down();
    // A FIFO nobody reads is left alone and does not disturb the supervisor.
    drop(reader);
    sup.send(b"u");
    sup.wait_run();
    assert!(fifo.exists());
}

#[test]
fn ok_is_opened_only_after_the_first_status() {
    // A status left by a dead supervisor must never be read as ours: once `ok` says a
    // supervisor runs, `status` is already its own.
    let root = tempfile::tempdir().unwrap();
    let svc = root.path().join("svc");
    script(&svc.join("run"), "exec sleep 1000");
    std::fs::write(svc.join("down"), "").unwrap();
    std::fs::create_dir(svc.join("supervise")).unwrap();
    let stale = Status {
        stamp: warden::Tai64N::now(),
        pid: 4_000_000,
        paused: false,
        want: Want::Up,
        term_sent: false,
        state: RunState::Run,
    };
    std::fs::write(svc.join("supervise/status"), stale.encode()).unwrap();
    let sup = Sup::start_nowait(&svc);
    wait_until("ok", WAIT, || sup.dir().liveness() == Ok(Liveness::Running));
    let s = sup.status();
    assert_eq!((s.state, s.pid, s.want), (RunState::Down, 0, Want::Down));
}

#[test]
fn without_cgroup2_it_falls_back_silently_to_the_process_group() {
    // cgroup2 unmounted in a private mount namespace of the supervisor's own (never the host).
    warden_tests::require("unshare", "util-linux");
    if warden_tests::warden::cgroupfs::mount().is_none() {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let svc = root.path().join("svc");
    script(
        &svc.join("run"),
        "sleep 1000 &\necho $! > child\nexec sleep 1000",
    );
    let mount = warden_tests::warden::cgroupfs::mount().unwrap();
    let err = svc.with_extension("err");
    let mut child = Spawned::new(
        Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg(format!(
                "umount -l '{}' && exec '{}' '{}'",
                mount.display(),
                bin("supervise").display(),
                svc.display()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&err).unwrap()),
    );
    let dir = ServiceDir::new(&svc);
    wait_until("run", WAIT, || {
        dir.status().is_ok_and(|s| s.state == RunState::Run) && dir.extended().is_some()
    });
    assert_eq!(dir.extended().unwrap().cgroup, None);
    let kid = read_pid_wait(&svc.join("child"));
    dir.send(b"d").unwrap();
    wait_until("down", WAIT, || {
        dir.status().is_ok_and(|s| s.state == RunState::Down)
    });
    assert!(!alive(kid), "child {kid} left behind");
    dir.send(b"x").unwrap();
    assert_eq!(child.wait_exit(WAIT).code(), Some(0));
    assert_eq!(std::fs::read_to_string(&err).unwrap(), "", "not silent");
}

fn context_switches(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("voluntary_ctxt") || l.starts_with("nonvoluntary_ctxt"))
        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum()
}

#[test]
fn idle_supervisor_never_wakes_up() {
    let root = tempfile::tempdir().unwrap();
    let svc = root.path().join("svc");
    script(&svc.join("run"), "exec sleep 1000");
    let sup = Sup::start(&svc);
    sup.wait_run();
    sup.sync();
    let pid = sup.child.pid();
    wait_until("supervise asleep in poll", WAIT, || {
        std::fs::read_to_string(format!("/proc/{pid}/wchan")).is_ok_and(|w| w.contains("poll"))
    });
    let before = context_switches(pid);
    // Measuring an absence needs a window; nothing is awaited here.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        context_switches(sup.child.pid()),
        before,
        "woke up while idle"
    );
}

/// The names renamed into `dir` (IN_MOVED_TO) or created there (IN_CREATE), in order, from an
/// inotify instance made with NONBLOCK.
fn arrivals(inotify: &std::os::fd::OwnedFd) -> Vec<(String, &'static str)> {
    use rustix::fs::inotify::{ReadFlags, Reader};
    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 8192];
    let mut reader = Reader::new(inotify, &mut buf);
    let mut out = Vec::new();
    while let Ok(event) = reader.next() {
        let how = if event.events().contains(ReadFlags::MOVED_TO) {
            "moved"
        } else {
            "created"
        };
        if let Some(name) = event.file_name() {
            out.push((name.to_string_lossy().into_owned(), how));
        }
    }
    out
}

#[test]
fn warden_file_is_in_place_before_the_first_status() {
    // svctl tells warden's supervise from runsv by supervise/warden alone: it must never see a
    // status of ours without it. Watched from before supervise starts.
    use rustix::fs::inotify::{self, CreateFlags, WatchFlags};
    let root = tempfile::tempdir().unwrap();
    let svc = root.path().join("svc");
    script(&svc.join("run"), "exec sleep 1000");
    std::fs::create_dir(svc.join("supervise")).unwrap();
    let watcher = inotify::init(CreateFlags::CLOEXEC | CreateFlags::NONBLOCK).unwrap();
    inotify::add_watch(
        &watcher,
        svc.join("supervise"),
        WatchFlags::MOVED_TO | WatchFlags::CREATE,
    )
    .unwrap();
    let sup = Sup::start(&svc);
    sup.wait_run();
    let events = arrivals(&watcher);
    let first = |name: &str| events.iter().position(|(n, _)| n == name);
    let (Some(warden), Some(status)) = (first("warden"), first("status")) else {
        panic!("no warden or status among {events:?}");
    };
    assert!(
        warden < status,
        "supervise/status appeared before supervise/warden: {events:?}"
    );
    for (name, how) in &events {
        if name == "status" || name == "warden" {
            assert_eq!(
                *how, "moved",
                "{name} must appear whole, by rename: {events:?}"
            );
        }
    }
    // Later updates keep `status` first (waiting clients wake on it at once).
    sup.send(b"d");
    sup.wait_down();
    // The status says down as soon as it is renamed in; the extended status follows it.
    let mut later = Vec::new();
    wait_until(
        "supervise/warden rewritten",
        Duration::from_secs(10),
        || {
            later.extend(arrivals(&watcher));
            later.iter().any(|(n, _)| n == "warden")
        },
    );
    let status_at = later.iter().position(|(n, _)| n == "status");
    let warden_at = later.iter().position(|(n, _)| n == "warden");
    assert!(
        matches!((status_at, warden_at), (Some(s), Some(w)) if s < w),
        "after the first publish, status goes first: {later:?}"
    );
}

#[test]
fn default_log_runs_logger_until_a_run_appears() {
    let root = tempfile::tempdir().unwrap();
    let svc = root.path().join("log");
    std::fs::create_dir(&svc).unwrap();
    // stdin a pipe the test holds open, as svscan's log pipe.
    let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
    let mut sup = Sup::start_with(&svc, &["--default-log"], Stdio::from(read));
    let pid = sup.wait_run();
    // The status names the child as soon as it is forked: its cmdline is supervise's until
    // the exec, and empty while the exec is under way.
    let cmdline = || std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    wait_until("the child's exec", WAIT, || {
        let c = cmdline();
        !c.is_empty() && !c.split(|&b| b == 0).any(|a| a == b"--default-log")
    });
    let cmdline = cmdline();
    let argv: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
    assert!(
        argv.first().is_some_and(|a| a.ends_with(b"/logger"))
            && argv.get(1) == Some(&&b"./main"[..]),
        "{:?}",
        String::from_utf8_lossy(&cmdline)
    );
    rustix::io::write(&write, b"first line\n").unwrap();
    wait_until("the line in main/current", WAIT, || {
        std::fs::read_to_string(svc.join("main/current")).is_ok_and(|t| t.contains("first line"))
    });
    assert!(sup.ext().supervisor_pid.is_some());
    assert!(!svc.join("run").exists());
    // A run that appears is used at the next start.
    script(&svc.join("run"), "echo $$ > started\nexec cat >> lines");
    sup.send(b"t");
    wait_until("the new run", WAIT * 2, || svc.join("started").exists());
    rustix::io::write(&write, b"second line\n").unwrap();
    wait_until("the line through run", WAIT, || {
        std::fs::read_to_string(svc.join("lines")).is_ok_and(|t| t.contains("second line"))
    });
    // `e` (HUP), then the pipe closed: the logger drains to EOF, then supervise exits 0.
    sup.send(b"e");
    rustix::io::write(&write, b"last line\n").unwrap();
    drop(write);
    assert_eq!(sup.exit_code(), Some(0), "{}", sup.stderr());
    assert!(std::fs::read_to_string(svc.join("lines"))
        .unwrap()
        .contains("last line"));
}

/// runit's "customize control": `control/t` stops a daemon that ignores TERM (as Debian's
/// apache2 and postfix dirs do with `apache2ctl stop`), CONT follows, `control/d` runs after
/// it with the pid, and `control/u` runs before every start whatever its exit. runit's own
/// `sv -w` sees the hook-driven stop like any other.
#[test]
fn control_hooks_t_d_u_stop_a_daemon_that_ignores_term() {
    warden_tests::require("sv", "runit");
    let root = tempfile::tempdir().unwrap();
    let svc = root.path().join("svc");
    script(
        &svc.join("run"),
        "trap '' TERM\ntrap 'exit 7' USR1\necho $$ > runpid\nwhile :; do sleep 1000 & wait $!; done",
    );
    script(
        &svc.join("control/t"),
        "echo \"t $1 $PWD\" >> hooks\nkill -USR1 \"$1\"\nexit 0",
    );
    script(&svc.join("control/d"), "echo \"d $1\" >> hooks\nexit 3");
    script(&svc.join("control/u"), "echo u >> hooks\nexit 1");
    let sup = Sup::start(&svc);
    let pid = sup.wait_run();
    wait_until("runpid", WAIT, || svc.join("runpid").exists());
    assert_eq!(read_lines(&svc.join("hooks")), vec!["u"]);
    let (code, out, err) = run(
        Command::new("sv").args(["-w", "10", "down"]).arg(&svc),
        WAIT * 2,
    );
    assert_eq!(code, Some(0), "sv down: {out} {err}");
    assert!(out.starts_with("ok: down: "), "{out}");
    sup.wait_down();
    assert!(!alive(pid as i32));
    assert_eq!(
        sup.ext().last_exit,
        Some(Exit::Code(7)),
        "stopped by the hook's USR1"
    );
    wait_until("control/d", WAIT, || {
        read_lines(&svc.join("hooks")).len() == 3
    });
    let here = std::fs::canonicalize(&svc).unwrap();
    assert_eq!(
        read_lines(&svc.join("hooks")),
        vec![
            "u".to_owned(),
            format!("t {pid} {}", here.display()),
            format!("d {pid}")
        ]
    );
    // `u` runs control/u again before starting.
    sup.send(b"u");
    let again = sup.wait_run();
    assert_ne!(again, pid);
    wait_until("control/u again", WAIT, || {
        read_lines(&svc.join("hooks")).len() == 4
    });
    assert_eq!(
        read_lines(&svc.join("hooks")).last().map(String::as_str),
        Some("u")
    );
    // svctl -w waits through the hook-driven stop as through any other.
    let (code, out, err) = run(
        Command::new(bin("svctl"))
            .args(["-w", "10", "down"])
            .arg(&svc),
        WAIT * 2,
    );
    assert_eq!(code, Some(0), "svctl -w down: {out} {err}");
    assert_eq!(sup.status().state, RunState::Down);
    assert!(!alive(again as i32));
    wait_until("control/d again", WAIT, || {
        read_lines(&svc.join("hooks")).len() == 6
    });
    assert_eq!(
        read_lines(&svc.join("hooks")).get(4..),
        Some(
            &[
                format!("t {again} {}", here.display()),
                format!("d {again}")
            ][..]
        )
    );
}

/// A signalling command's hook replaces the signal when it exits 0; otherwise the signal is
/// sent as without it. A hook that is not executable is not there.
#[test]
fn control_hook_exit_0_suppresses_the_signal() {
    let root = tempfile::tempdir().unwrap();
    let svc = root.path().join("svc");
    script(&svc.join("run"), TRAPPER);
    script(
        &svc.join("control/h"),
        "echo h >> hooks\nexit \"$(cat hcode)\"",
    );
    std::fs::write(svc.join("control/a"), "#!/bin/sh\nexit 0\n").unwrap();
    std::fs::write(svc.join("hcode"), "0").unwrap();
    let sup = Sup::start(&svc);
    sup.wait_run();
    wait_until("pids", WAIT, || svc.join("pids").exists());
    let sigs = svc.join("sigs");
    sup.send(b"h");
    wait_until("control/h", WAIT, || {
        read_lines(&svc.join("hooks")).len() == 1
    });
    // `a` comes after `h` is done: its ALRM proves the HUP was not sent.
    sup.send(b"a");
    wait_until("ALRM", WAIT, || {
        read_lines(&sigs).contains(&"ALRM".to_owned())
    });
    assert_eq!(read_lines(&sigs), vec!["ALRM"], "exit 0: no HUP");
    std::fs::write(svc.join("hcode"), "1").unwrap();
    sup.send(b"h");
    wait_until("HUP", WAIT, || read_lines(&sigs).len() == 2);
    assert_eq!(read_lines(&sigs), vec!["ALRM", "HUP"]);
    assert_eq!(read_lines(&svc.join("hooks")).len(), 2);
}

/// A hook that hangs is killed after `timeout-finish`, and the default action follows.
#[test]
fn a_hanging_control_hook_is_killed_after_timeout_finish() {
    let root = tempfile::tempdir().unwrap();
    let svc = root.path().join("svc");
    script(&svc.join("run"), "exec sleep 1000");
    script(&svc.join("control/t"), "echo $$ > hookpid\nexec sleep 1000");
    std::fs::write(svc.join("timeout-finish"), "300ms").unwrap();
    let sup = Sup::start(&svc);
    let pid = sup.wait_run();
    let asked = Instant::now();
    sup.send(b"d");
    wait_until("hookpid", WAIT, || svc.join("hookpid").exists());
    let hook = read_pid_wait(&svc.join("hookpid"));
    sup.wait("down after TERM", |s, x| {
        s.state == RunState::Down && x.last_exit == Some(Exit::Signal(15))
    });
    assert!(asked.elapsed() >= Duration::from_millis(250));
    assert!(!alive(pid as i32));
    wait_until("the hook killed", WAIT, || !alive(hook));
}

/// A log service is not customised (as runsv): its `control/t` is never run.
#[test]
fn a_log_service_has_no_control_hooks() {
    let root = tempfile::tempdir().unwrap();
    let svc = root.path().join("log");
    script(&svc.join("run"), "exec sleep 1000");
    script(&svc.join("control/t"), "touch ran\nexit 0");
    let sup = Sup::start_with(&svc, &["--default-log"], Stdio::null()).ready();
    let pid = sup.wait_run();
    sup.send(b"d");
    sup.wait_down();
    assert!(!alive(pid as i32));
    assert!(!svc.join("ran").exists());
}

/// Issue 11 item 7: a FIFO in `env/` must not block supervise in its open, and a symlink to
/// `/dev/zero` must not be read without bound: both are skipped with a message naming the
/// file, the other variables apply and the service starts.
#[test]
fn env_fifo_and_dev_zero_are_skipped_and_the_service_starts() {
    let root = tempfile::tempdir().unwrap();
    let svc = root.path().join("svc");
    script(&svc.join("run"), "echo \"$GOOD\" > seen\nexec sleep 1000");
    std::fs::create_dir(svc.join("env")).unwrap();
    std::fs::write(svc.join("env/GOOD"), "yes\n").unwrap();
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        svc.join("env/FIFO"),
        rustix::fs::Mode::from_raw_mode(0o600),
    )
    .unwrap();
    std::os::unix::fs::symlink("/dev/zero", svc.join("env/ZERO")).unwrap();
    let sup = Sup::start(&svc);
    sup.wait_run();
    sup.wait_stderr(&format!(
        "unable to use {}/env/FIFO: not a regular file (a FIFO): ignored",
        svc.display()
    ));
    sup.wait_stderr(&format!(
        "unable to use {}/env/ZERO: not a regular file (a character device): ignored",
        svc.display()
    ));
    wait_until("run to see GOOD", WAIT, || {
        std::fs::read_to_string(svc.join("seen")).is_ok_and(|s| s == "yes\n")
    });
    // Status and control still work.
    sup.send(b"d");
    sup.wait_down();
    sup.send(b"u");
    sup.wait_run();
}

/// Issue 11 item 7: an `env/` file whose first line is longer than the cap is skipped with a
/// message, not read to its end.
#[test]
fn env_file_with_an_overlong_first_line_is_skipped() {
    let root = tempfile::tempdir().unwrap();
    let svc = root.path().join("svc");
    script(
        &svc.join("run"),
        "echo \"${BIG-unset}\" > seen\nexec sleep 1000",
    );
    std::fs::create_dir(svc.join("env")).unwrap();
    std::fs::write(svc.join("env/BIG"), vec![b'x'; 200 * 1024]).unwrap();
    let sup = Sup::start(&svc);
    sup.wait_run();
    sup.wait_stderr(&format!(
        "unable to use {}/env/BIG: its first line is longer than 65536 bytes: ignored",
        svc.display()
    ));
    wait_until("run to start without BIG", WAIT, || {
        std::fs::read_to_string(svc.join("seen")).is_ok_and(|s| s == "unset\n")
    });
}

/// utime + stime of a process, in clock ticks, from /proc/PID/stat.
fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let (_, rest) = stat.rsplit_once(") ").unwrap();
    let fields: Vec<&str> = rest.split(' ').collect();
    // Fields 14 and 15 of stat(5), counted from the state, which is field 3.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// Issue 11 item 10: a service that floods its notification-fd with bytes and no newline
/// must not keep supervise busy: the pipe is closed with a message after a small limit. A
/// proper ready line after a few bytes still makes the service ready.
#[test]
fn a_flooded_notification_fd_is_closed_and_costs_little_cpu() {
    let root = tempfile::tempdir().unwrap();
    let svc = root.path().join("svc");
    // One byte per write, without end and without a newline, until the pipe is closed (the
    // subshell then dies of SIGPIPE): each write wakes supervise.
    script(
        &svc.join("run"),
        "(while :; do printf x; done) >&3 2>/dev/null\nexec sleep 1000 3>&-",
    );
    std::fs::write(svc.join("notification-fd"), "3\n").unwrap();
    let sup = Sup::start(&svc);
    sup.wait_run();
    let before = cpu_ticks(sup.child.pid());
    std::thread::sleep(Duration::from_millis(1500));
    let used = cpu_ticks(sup.child.pid()) - before;
    assert!(
        used < 30,
        "supervise used {used} clock ticks in 1.5 s on a flooded notification-fd"
    );
    sup.wait_stderr(&format!(
        "closing the notification-fd pipe of {}: 512 bytes or more without a newline",
        svc.display()
    ));
    assert_eq!(sup.ext().ready_at, None, "garbage is not readiness");
    sup.wait("last_error", |_, x| {
        x.last_error
            .as_deref()
            .is_some_and(|e| e.contains("notification-fd"))
    });

    let good = root.path().join("good");
    script(
        &good.join("run"),
        "printf 'starting ' >&3\nsleep 0.1\nprintf 'ready\\n' >&3\nexec sleep 1000",
    );
    std::fs::write(good.join("notification-fd"), "3\n").unwrap();
    let sup = Sup::start(&good);
    sup.wait_run();
    sup.wait("ready", |_, x| x.ready_at.is_some());
}

/// Issue 11 item 9: once the service runs, supervise must not exit and leave it unsupervised
/// when it cannot open `supervise/ok`: it says so, keeps the service supervised and tries
/// again with a back-off until it can. The fault is real: the run replaces `ok` by a
/// dangling symlink before supervise gets to open it (the many event FIFOs that supervise wakes
/// first give the run that time).
#[test]
fn a_failure_to_open_ok_after_the_first_start_is_retried_not_fatal() {
    let root = tempfile::tempdir().unwrap();
    let svc = root.path().join("svc");
    script(
        &svc.join("run"),
        "rm -f supervise/ok && ln -s /nonexistent supervise/ok\necho $$ > pid\nexec sleep 1000",
    );
    let event = svc.join("supervise/event");
    std::fs::create_dir_all(&event).unwrap();
    for i in 0..50_000 {
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            event.join(i.to_string()),
            rustix::fs::Mode::from_raw_mode(0o600),
        )
        .unwrap();
    }
    let mut sup = Sup::start_nowait(&svc);
    let ok = svc.join("supervise/ok");
    let pid = read_pid_wait(&svc.join("pid"));
    // Without the fix the run is orphaned: the test stops it, pass or fail.
    struct KillOnDrop(i32);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            warden_tests::kill_group(self.0);
        }
    }
    let _run = KillOnDrop(pid);
    sup.wait_stderr(&ok.display().to_string());
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        sup.child.child.try_wait().unwrap().is_none(),
        "supervise exited with its service running: {}",
        sup.stderr()
    );
    assert!(alive(pid));
    sup.wait_stderr(&format!(
        // A symlink planted as `ok` is never followed (issue 11 item 2): it is refused as it is.
        "unable to use {}: it exists but is not a FIFO; trying again in",
        ok.display()
    ));
    std::fs::remove_file(&ok).unwrap();
    let sup = sup.ready();
    assert_eq!(
        sup.status().pid,
        pid as u32,
        "the same run, still supervised"
    );
    sup.send(b"d");
    sup.wait_down();
    assert!(!alive(pid));
}

#[test]
fn issue_11_item_12_a_dead_run_pid_is_never_published_while_leftovers_are_stopped() {
    let root = tempfile::tempdir().unwrap();
    let svc = root.path().join("svc");
    // The run leaves a child that ignores TERM and exits: its leftovers keep the service in
    // state finish until the KILL, 3 s later.
    script(
        &svc.join("run"),
        "if [ -e ran ]; then exec sleep 1000; fi\n: > ran\n\
         trap '' TERM\nsleep 1000 &\necho $! > leftover\nexit 0",
    );
    std::fs::write(svc.join("timeout-kill"), "3s\n").unwrap();
    let sup = Sup::start_nowait(&svc);
    let leftover = read_pid_wait(&svc.join("leftover"));
    sup.wait("finish", |s, _| s.state == RunState::Finish);
    assert!(alive(leftover), "the leftover is still being stopped");
    let status = sup.status();
    assert_eq!(status.pid, 0, "a dead run's pid is published: {status:?}");
    assert_eq!(
        std::fs::read_to_string(svc.join("supervise/pid")).unwrap(),
        ""
    );
    if warden_tests::have("svstat") {
        let (_, out, _) = run(Command::new("svstat").arg(&svc), WAIT);
        assert!(!out.contains(": up"), "svstat says {out:?}");
    }
    sup.wait_run();
    wait_until("the leftover to be KILLed", WAIT, || !alive(leftover));
}

#[test]
fn issue_11_item_12_the_recorded_process_group_is_cleared_once_the_service_is_down() {
    let root = tempfile::tempdir().unwrap();
    let svc = root.path().join("svc");
    script(&svc.join("run"), "exec sleep 1000");
    let sup = Sup::start(&svc);
    let pid = sup.wait_run();
    assert_eq!(sup.ext().pgid, Some(pid));
    sup.send(b"d");
    // svscan KILLs this group at shutdown: a down service must not name one. `status` is
    // published before `extended`, so the two are read together until both say so.
    sup.wait("down with no process group", |s, x| {
        s.state == RunState::Down && s.pid == 0 && x.pgid.is_none()
    });
}

/// A process the test keeps in a cgroup below a service's: its Drop KILLs it and removes that
/// cgroup, before the supervisor's own cgroup is removed.
struct Remnant {
    pid_file: PathBuf,
    cgroup_file: PathBuf,
}

impl Drop for Remnant {
    fn drop(&mut self) {
        if let Some(pid) = read_pid(&self.pid_file) {
            warden_tests::kill_group(pid);
            if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
            wait_until("the remnant to die", WAIT, || !alive(pid));
        }
        if let Ok(dir) = std::fs::read_to_string(&self.cgroup_file) {
            let dir = PathBuf::from(dir.trim());
            wait_until("the remnant's cgroup to go", WAIT, || {
                std::fs::remove_dir(&dir).is_ok() || !dir.exists()
            });
        }
    }
}

#[test]
fn issue_11_item_13_no_new_run_until_the_cgroup_reports_empty() {
    let Some(mount) = warden_tests::warden::cgroupfs::mount() else {
        panic!("cgroup v2 is mounted here (/sys/fs/cgroup/unified), so this test needs it");
    };
    let root = tempfile::tempdir().unwrap();
    let svc = root.path().join("svc");
    // The first run leaves a process that its KILL sweep does not reach (it sits in a cgroup
    // below the service's and in a session of its own), as one in D state outlives KILL:
    // the service's cgroup stays populated.
    script(
        &svc.join("run"),
        &format!(
            "if [ -e ran ]; then : > second; exec sleep 1000; fi\n: > ran\n\
             cg={}$(sed -n 's/^0:://p' /proc/self/cgroup)/remnant\nmkdir \"$cg\"\n\
             echo \"$cg\" > remnant_cg\nsetsid sleep 1000 &\necho $! > \"$cg/cgroup.procs\"\n\
             echo $! > remnant\nexit 0",
            mount.display()
        ),
    );
    std::fs::write(svc.join("timeout-kill"), "200ms\n").unwrap();
    let sup = Sup::start_nowait(&svc);
    let _remnant = Remnant {
        pid_file: svc.join("remnant"),
        cgroup_file: svc.join("remnant_cg"),
    };
    let remnant = read_pid_wait(&svc.join("remnant"));
    assert!(sup.ext().cgroup.is_some(), "cgroup v2 is mounted here");
    // TERM, then KILL 200 ms later; the remnant survives both. For 3 s (the 1 s restart
    // back-off and the KILL long past) no new run may start beside it.
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        assert!(alive(remnant));
        assert!(
            !svc.join("second").exists(),
            "a new run started beside a process of the old one: {:?}",
            sup.status()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(sup.status().state, RunState::Finish);
    // Once the cgroup reports empty, the new run starts at once (cgroup.events woke it).
    let killed = Instant::now();
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(remnant).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    wait_until("the second run", WAIT, || svc.join("second").exists());
    assert!(
        killed.elapsed() < Duration::from_secs(2),
        "the new run came {:?} after the cgroup emptied",
        killed.elapsed()
    );
}

/// Issue 11 item 8: a supervise whose directory has no warden `logger` never runs one from
/// PATH (util-linux's `logger ./main` would exit at once and drop the log) nor a `logger`
/// beside it that is not warden's: it says so, keeps the log pipe (its data waits) and
/// retries; once warden's logger is installed beside it, the data written meanwhile is logged.
#[test]
fn default_log_runs_only_warden_s_logger_from_its_own_directory() {
    let root = tempfile::tempdir().unwrap();
    let alone = root.path().join("bin");
    std::fs::create_dir(&alone).unwrap();
    std::fs::copy(bin("supervise"), alone.join("supervise")).unwrap();
    let path = root.path().join("path");
    let fake_ran = root.path().join("fake-ran");
    script(
        &path.join("logger"),
        &format!("touch {}\nexit 0", fake_ran.display()),
    );
    let svc = root.path().join("log");
    std::fs::create_dir(&svc).unwrap();
    let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
    let err = svc.with_extension("err");
    let child = Spawned::new(
        Command::new(alone.join("supervise"))
            .arg("--default-log")
            .arg(&svc)
            .env("PATH", &path)
            .stdin(Stdio::from(read))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&err).unwrap()),
    );
    let sup = Sup::of(&svc, child);
    sup.wait_stderr(&format!(
        "unable to start the default logger ./main in {}: unable to find warden's logger at {}: \
         No such file or directory; PATH is not searched",
        svc.display(),
        alone.join("logger").display()
    ));
    rustix::io::write(&write, b"kept line\n").unwrap();
    // A `logger` beside it that is not warden's is not run either.
    script(
        &alone.join("logger"),
        &format!("touch {}\nexit 0", fake_ran.display()),
    );
    sup.wait_stderr(&format!(
        "unable to use {}: it is not warden's logger",
        alone.join("logger").display()
    ));
    assert!(!fake_ran.exists(), "a logger that is not warden's ran");
    assert!(
        !svc.join("main").exists(),
        "nothing may have consumed the pipe"
    );
    std::fs::remove_file(alone.join("logger")).unwrap();
    std::fs::copy(bin("logger"), alone.join("logger")).unwrap();
    wait_until("the kept line in main/current", WAIT * 3, || {
        std::fs::read_to_string(svc.join("main/current")).is_ok_and(|t| t.contains("kept line"))
    });
    assert!(!fake_ran.exists());
    let pid = sup.wait_run();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(
        cmdline.starts_with(alone.join("logger").as_os_str().as_encoded_bytes()),
        "{}",
        String::from_utf8_lossy(&cmdline)
    );
}

#[test]
fn issue_11_item_11_foo_log_and_foo_colon_log_get_cgroups_of_their_own() {
    let root = tempfile::tempdir().unwrap();
    two_services_side_by_side(&root.path().join("foo/log"), &root.path().join("foo:log"));
}

#[test]
fn issue_11_item_11_long_paths_alike_in_their_first_255_bytes_get_cgroups_of_their_own() {
    let root = tempfile::tempdir().unwrap();
    let long = root.path().join("x".repeat(200)).join("y".repeat(100));
    two_services_side_by_side(&long.join("a"), &long.join("b"));
}

/// Two services whose paths read the same in a cgroup name made of the path alone: each
/// keeps its own process (neither takes the other's for a leftover).
fn two_services_side_by_side(nested: &Path, colon: &Path) {
    script(&nested.join("run"), "exec sleep 1000");
    script(&colon.join("run"), "exec sleep 1000");
    let first = Sup::start(nested);
    let pid = first.wait_run();
    assert!(first.ext().cgroup.is_some(), "cgroup v2 is mounted here");
    let second = Sup::start(colon);
    second.wait_run();
    second.sync();
    first.sync();
    assert!(
        alive(pid as i32),
        "the other service's process was stopped as a leftover"
    );
    assert_eq!(first.status().pid, pid);
    assert_eq!(first.ext().restarts, 0);
    assert_ne!(first.ext().cgroup, second.ext().cgroup);
}

#[test]
fn issue_11_item_11_a_new_dir_under_an_old_name_never_adopts_the_old_cgroup() {
    let root = tempfile::tempdir().unwrap();
    let svc = root.path().join("a");
    script(&svc.join("run"), "exec sleep 1000");
    let mut sup = Sup::start(&svc);
    let old = sup.wait_run() as i32;
    let old_cgroup = sup.ext().cgroup;
    assert!(old_cgroup.is_some(), "cgroup v2 is mounted here");
    // The supervisor dies hard, its service lives on; the dir is moved away (`mv a a.old`)
    // and a new service dir takes the name.
    let _ = sup.child.child.kill();
    let _ = sup.child.child.wait();
    std::mem::forget(sup);
    std::fs::rename(&svc, root.path().join("a.old")).unwrap();
    script(&svc.join("run"), "exec sleep 1000");
    let sup = Sup::start(&svc);
    sup.wait_run();
    sup.sync();
    assert!(
        alive(old),
        "the old dir's service was taken for a leftover of the new one"
    );
    assert_ne!(sup.ext().cgroup, old_cgroup);
    assert_eq!(sup.ext().restarts, 0);
    warden_tests::kill_group(old);
    wait_until("the old service to die", WAIT, || !alive(old));
    // The supervisor killed hard could not remove its cgroup: the test does.
    drop(sup);
    let left = warden_tests::remove_cgroups_under(root.path(), WAIT);
    assert!(left.is_empty(), "cgroups left: {left:?}");
}
