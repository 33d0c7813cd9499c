//! `init` as process 1 of a fresh PID + mount namespace (`unshare --pid --fork --mount
//! --propagation private --mount-proc`): the container mode. Never run init as process 1 any
//! other way on a development machine: stage 3 signals every process of its namespace.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use warden_tests::{alive, bin, children_of, require, script, wait_until, Pty, Spawned};

/// `unshare ... PROGRAM ARGS`: PROGRAM becomes process 1 of a new PID namespace, with a
/// private mount namespace and its own /proc. Unprivileged users get a user namespace too.
fn in_namespace(program: &Path, args: &[&str]) -> Command {
    let mut cmd = warden_tests::unshare_pid_and_mount();
    cmd.arg(program).args(args);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// The host pid of the namespace's process 1: unshare's only child.
fn namespace_init(unshare: &Spawned) -> i32 {
    let pid = unshare.pid();
    let children = format!("/proc/{pid}/task/{pid}/children");
    let mut found = None;
    wait_until("unshare to fork process 1", Duration::from_secs(10), || {
        found = std::fs::read_to_string(&children)
            .ok()
            .and_then(|t| t.split_whitespace().next().and_then(|p| p.parse().ok()));
        found.is_some()
    });
    found.unwrap()
}

/// Every descendant of `root` (pid, state), from the host's /proc.
fn descendants(root: i32) -> Vec<(i32, char)> {
    let mut found = children_of(root);
    let mut i = 0;
    while let Some(&(pid, _)) = found.get(i) {
        found.extend(children_of(pid));
        i += 1;
    }
    found
}

fn finish(mut unshare: Spawned, timeout: Duration) -> (Option<i32>, String) {
    let status = unshare.wait_exit(timeout);
    let mut stderr = String::new();
    if let Some(mut err) = unshare.child.stderr.take() {
        use std::io::Read;
        let _ = err.read_to_string(&mut stderr);
    }
    (status.code(), stderr)
}

fn signal(pid: i32, sig: rustix::process::Signal) {
    rustix::process::kill_process(rustix::process::Pid::from_raw(pid).unwrap(), sig).unwrap();
}

#[test]
fn command_mode_reaps_orphans_forwards_term_and_exits_with_the_command_status() {
    let tmp = tempfile::tempdir().unwrap();
    let cmd = tmp.path().join("cmd");
    // An orphan that outlives its parent (double fork), a leftover background child, and a
    // main process that exits 7 on TERM.
    script(&cmd, "trap 'exit 7' TERM\n(sleep 2 &)\nsleep 60 &\nwait");
    let unshare = Spawned::new(&mut in_namespace(
        &bin("init"),
        &["--", cmd.to_str().unwrap()],
    ));
    let init = namespace_init(&unshare);
    // The orphan is handed to init, then exits: init must reap it, leaving no zombie.
    wait_until(
        "the orphan to be reparented to init",
        Duration::from_secs(10),
        || children_of(init).len() >= 2,
    );
    wait_until("init to reap the orphan", Duration::from_secs(10), || {
        let children = children_of(init);
        children.len() == 1 && children.iter().all(|(_, state)| *state != 'Z')
    });
    signal(init, rustix::process::Signal::TERM);
    let (code, stderr) = finish(unshare, Duration::from_secs(10));
    assert_eq!(code, Some(7), "stderr: {stderr}");
}

#[test]
fn command_mode_reports_a_missing_command_with_127() {
    let unshare = Spawned::new(&mut in_namespace(&bin("init"), &["--", "/nonexistent/cmd"]));
    let (code, stderr) = finish(unshare, Duration::from_secs(10));
    assert_eq!(code, Some(127), "stderr: {stderr}");
    assert!(
        stderr.contains("init: fatal: unable to run /nonexistent/cmd"),
        "stderr: {stderr}"
    );
}

/// Starts `init --stage3 ACTION` as process 1 of a namespace where `setup` left processes.
fn stage3_with(setup: &str, grace: &str) -> (Option<i32>, String, Duration) {
    let tmp = tempfile::tempdir().unwrap();
    let boot = tmp.path().join("boot");
    script(
        &boot,
        &format!("{setup}\nexec {} --stage3 poweroff", bin("init").display()),
    );
    let mut cmd = in_namespace(&boot, &[]);
    cmd.env("WARDEN_GRACE", grace).current_dir(tmp.path());
    let started = std::time::Instant::now();
    let (code, stderr) = finish(Spawned::new(&mut cmd), Duration::from_secs(20));
    (code, stderr, started.elapsed())
}

#[test]
fn stage3_in_a_container_terms_everything_and_exits_0_when_all_cooperate() {
    let tmp = tempfile::tempdir().unwrap();
    let marker = tmp.path().join("got-term");
    // The child says it is ready through a FIFO once its TERM trap is set. Its own child is
    // forked before the trap: a child forked after it runs dash's handler until it execs, and a
    // TERM landing in that window would be swallowed, leaving a process that needs KILL.
    let setup = format!(
        "mkfifo ready\n\
         sh -c 'sleep 60 & trap \"echo TERM > {m}; exit 0\" TERM; echo > ready; wait' &\n\
         read line < ready\n\
         (sleep 60 &)",
        m = marker.display()
    );
    let (code, stderr, took) = stage3_with(&setup, "10s");
    assert_eq!(code, Some(0), "stderr: {stderr}");
    assert!(
        stderr.contains("init: stage 3: poweroff"),
        "stderr: {stderr}"
    );
    assert!(
        stderr.contains("every process exited after TERM"),
        "stderr: {stderr}"
    );
    assert!(
        stderr.contains("init: container stopped (poweroff)"),
        "stderr: {stderr}"
    );
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "TERM\n");
    assert!(
        took < Duration::from_secs(5),
        "took {took:?}: the grace was waited out"
    );
}

/// Issue 11 item 6: a grace of more seconds than an Instant can be ahead by (from
/// `WARDEN_GRACE`, as from `warden.grace=` on the kernel's command line) is as good as
/// forever, not a panic in stage 3 after TERM has gone to everything: what cooperates is
/// reaped and the container stops with 0.
#[test]
fn issue_11_6_stage3_takes_a_huge_grace() {
    let (code, stderr, _) = stage3_with("(sleep 60 &)", "10000000000000000000s");
    assert_eq!(code, Some(0), "stderr: {stderr}");
    assert!(
        stderr.contains("every process exited after TERM"),
        "stderr: {stderr}"
    );
    assert!(
        stderr.contains("init: container stopped (poweroff)"),
        "stderr: {stderr}"
    );
}

#[test]
fn stage3_in_a_container_kills_what_ignores_term_after_the_grace_and_exits_1() {
    let setup = "mkfifo ready\n\
                 sh -c 'trap \"\" TERM; echo > ready; while :; do sleep 1; done' &\n\
                 read line < ready";
    let (code, stderr, took) = stage3_with(setup, "500ms");
    assert_eq!(code, Some(1), "stderr: {stderr}");
    assert!(stderr.contains("sending KILL"), "stderr: {stderr}");
    assert!(
        took >= Duration::from_millis(500),
        "took {took:?}: KILL before the grace"
    );
}

/// A stand-in svscan that records how it was started, runs a "service", and on TERM (what
/// svscan as process 1 maps to reboot) execs init --stage3 reboot found next to itself.
/// The record appears (by rename) only once the TERM trap is set, so the test's TERM is never
/// ignored by a process 1 without a handler.
const FAKE_SVSCAN: &str = r#"trap 'exec "$(dirname "$0")/init" --stage3 reboot' TERM
sleep 60 &
echo "scandir=$1 pid=$$" > "$1/../svscan.tmp"
mv "$1/../svscan.tmp" "$1/../svscan.started"
wait"#;

fn copy_exe(from: &Path, to: &Path) {
    std::fs::copy(from, to).unwrap();
}

#[test]
fn stage1_in_a_container_runs_the_hook_execs_svscan_and_term_ends_with_status_0() {
    let tmp = tempfile::tempdir().unwrap();
    let sbin = tmp.path().join("sbin");
    std::fs::create_dir_all(&sbin).unwrap();
    copy_exe(&bin("init"), &sbin.join("init"));
    script(&sbin.join("svscan"), FAKE_SVSCAN);
    let scandir = tmp.path().join("service");
    std::fs::create_dir_all(&scandir).unwrap();
    let hook = tmp.path().join("boot-hook");
    script(
        &hook,
        &format!("echo hook ran > {}/hook.ran", tmp.path().display()),
    );
    let mut cmd = in_namespace(&sbin.join("init"), &[]);
    cmd.env("WARDEN_SCANDIR", &scandir)
        .env("WARDEN_HOOK", &hook);
    let unshare = Spawned::new(&mut cmd);
    let init = namespace_init(&unshare);
    let started: PathBuf = tmp.path().join("svscan.started");
    wait_until("svscan to start", Duration::from_secs(10), || {
        started.exists()
    });
    let record = std::fs::read_to_string(&started).unwrap();
    assert!(
        record.contains(&format!("scandir={} pid=1", scandir.display())),
        "svscan must be exec'd as process 1 on the scan dir: {record}"
    );
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("hook.ran")).unwrap(),
        "hook ran\n"
    );
    signal(init, rustix::process::Signal::TERM);
    let (code, stderr) = finish(unshare, Duration::from_secs(10));
    assert_eq!(code, Some(0), "stderr: {stderr}");
    assert!(stderr.contains("init: container mode"), "stderr: {stderr}");
    assert!(stderr.contains("init: stage 3: reboot"), "stderr: {stderr}");
    assert!(
        stderr.contains("init: container stopped (reboot)"),
        "stderr: {stderr}"
    );
}

/// Issue 11 item 5: a word of the kernel's command line that is not UTF-8 reaches stage 1 as
/// an argument; std::env::args would panic on it before anything else. Stage 1 says it
/// ignores the word (shown lossily), runs the hook and execs svscan as process 1.
#[test]
fn issue_11_5_stage1_boots_with_a_non_utf8_argument() {
    use std::os::unix::ffi::OsStrExt;
    let tmp = tempfile::tempdir().unwrap();
    let sbin = tmp.path().join("sbin");
    std::fs::create_dir_all(&sbin).unwrap();
    copy_exe(&bin("init"), &sbin.join("init"));
    script(&sbin.join("svscan"), FAKE_SVSCAN);
    let scandir = tmp.path().join("service");
    std::fs::create_dir_all(&scandir).unwrap();
    let hook = tmp.path().join("boot-hook");
    script(
        &hook,
        &format!("echo ran > {}/hook.ran", tmp.path().display()),
    );
    let mut cmd = in_namespace(&sbin.join("init"), &[]);
    cmd.arg(std::ffi::OsStr::from_bytes(b"quiet\xffword"))
        .env("WARDEN_SCANDIR", &scandir)
        .env("WARDEN_HOOK", &hook);
    let unshare = Spawned::new(&mut cmd);
    let init = namespace_init(&unshare);
    let started = tmp.path().join("svscan.started");
    wait_until("svscan to start", Duration::from_secs(10), || {
        started.exists() || !alive(unshare.pid())
    });
    assert!(
        tmp.path().join("hook.ran").exists(),
        "the boot hook did not run"
    );
    let record = std::fs::read_to_string(&started).unwrap_or_default();
    assert!(
        record.contains(&format!("scandir={} pid=1", scandir.display())),
        "svscan must be exec'd as process 1 on the scan dir: {record}"
    );
    signal(init, rustix::process::Signal::TERM);
    let (code, stderr) = finish(unshare, Duration::from_secs(10));
    assert_eq!(code, Some(0), "stderr: {stderr}");
    assert!(
        stderr.contains("init: warning: ignoring arguments: quiet\u{fffd}word"),
        "stderr: {stderr}"
    );
}

#[test]
fn stage1_in_a_container_without_svscan_exits_instead_of_hanging() {
    let tmp = tempfile::tempdir().unwrap();
    let sbin = tmp.path().join("sbin");
    std::fs::create_dir_all(&sbin).unwrap();
    copy_exe(&bin("init"), &sbin.join("init"));
    let mut cmd = in_namespace(&sbin.join("init"), &[]);
    cmd.env("WARDEN_SCANDIR", tmp.path())
        .env("PATH", "/nonexistent");
    let (code, stderr) = finish(Spawned::new(&mut cmd), Duration::from_secs(10));
    // /sbin/svscan may exist on a machine with warden installed; then it is found and runs.
    if Path::new("/sbin/svscan").exists() {
        return;
    }
    assert_eq!(code, Some(111), "stderr: {stderr}");
    assert!(
        stderr.contains("init: fatal: unable to find svscan"),
        "stderr: {stderr}"
    );
}

#[test]
fn init_refuses_stage1_and_stage3_when_not_process_1() {
    let (code, _, stderr) =
        warden_tests::run(&mut Command::new(bin("init")), Duration::from_secs(10));
    assert_eq!(code, Some(100));
    assert!(stderr.contains("must run as process 1"), "{stderr}");
    let (code, _, stderr) = warden_tests::run(
        Command::new(bin("init")).args(["--stage3", "poweroff"]),
        Duration::from_secs(10),
    );
    assert_eq!(code, Some(100));
    assert!(stderr.contains("must run as process 1"), "{stderr}");
}

#[test]
fn stage1_in_a_container_with_the_real_svscan_stops_services_on_term_and_exits_0() {
    // init, svscan and supervise side by side in target/<profile>: svscan finds supervise and
    // init next to itself, as in /sbin.
    let tmp = tempfile::tempdir().unwrap();
    let scandir = tmp.path().join("service");
    let marker = tmp.path().join("stopped");
    let started = tmp.path().join("started");
    script(
        &scandir.join("polite/run"),
        &format!(
            "sleep 60 &\ntrap 'echo TERM > {m}; exit 0' TERM\necho up > {s}\n(sleep 0.2 &)\nwait",
            m = marker.display(),
            s = started.display()
        ),
    );
    for program in ["svscan", "supervise"] {
        bin(program);
    }
    let mut cmd = in_namespace(&bin("init"), &[]);
    cmd.env("WARDEN_SCANDIR", &scandir);
    let unshare = Spawned::new(&mut cmd);
    let init = namespace_init(&unshare);
    wait_until("the service to start", Duration::from_secs(20), || {
        started.exists()
    });
    // The orphan the service double-forked exits and is reaped: no zombie is left in the
    // namespace, and no `sleep 0.2`.
    wait_until(
        "the orphan to exit and be reaped",
        Duration::from_secs(10),
        || {
            let tree = descendants(init);
            tree.iter().all(|(_, state)| *state != 'Z')
                && !tree.iter().any(|(pid, _)| {
                    std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default()
                        == b"sleep\x000.2\x00"
                })
        },
    );
    signal(init, rustix::process::Signal::TERM);
    let (code, stderr) = finish(unshare, Duration::from_secs(30));
    assert_eq!(code, Some(0), "stderr: {stderr}");
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "TERM\n");
    assert!(stderr.contains("init: stage 3: reboot"), "stderr: {stderr}");
    assert!(
        stderr.contains("init: container stopped (reboot)"),
        "stderr: {stderr}"
    );
}

#[test]
fn stage1_without_the_right_to_mount_skips_those_mounts_and_says_so_once() {
    warden_tests::require("setpriv", "util-linux");
    if !rustix::process::geteuid().is_root() {
        return; // dropping CAP_SYS_ADMIN from the bounding set needs root
    }
    let tmp = tempfile::tempdir().unwrap();
    let sbin = tmp.path().join("sbin");
    std::fs::create_dir_all(&sbin).unwrap();
    copy_exe(&bin("init"), &sbin.join("init"));
    script(&sbin.join("svscan"), "exit 0");
    // Process 1 of the namespace: make sure /run is missing there (private mounts), then
    // become init without the right to mount, as in a default docker container.
    let boot = tmp.path().join("boot");
    script(
        &boot,
        &format!(
            "umount -l /run 2>/dev/null\nexec setpriv --bounding-set=-sys_admin \
             --inh-caps=-sys_admin {}",
            sbin.join("init").display()
        ),
    );
    let mut cmd = in_namespace(&boot, &[]);
    cmd.env("WARDEN_SCANDIR", tmp.path());
    let (code, stderr) = finish(Spawned::new(&mut cmd), Duration::from_secs(10));
    assert_eq!(code, Some(0), "stderr: {stderr}");
    assert_eq!(
        stderr.matches("not allowed to mount").count(),
        1,
        "stderr: {stderr}"
    );
    assert!(
        stderr.contains("init: warning: not allowed to mount (a container?): skipping")
            && stderr.contains("/run"),
        "stderr: {stderr}"
    );
    assert!(stderr.contains("init: exec"), "the boot goes on: {stderr}");
}

// ---- `init -- CMD` as tini and dumb-init behave (issue 12), run as a subreaper. ----

/// `(state, ppid, pgrp, session, tty_nr, tpgid)` of a process, from /proc/PID/stat.
fn stat_of(pid: i32) -> Option<(char, i32, i32, i32, i32, i32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(") ")?;
    let f: Vec<&str> = rest.split(' ').collect();
    let num = |i: usize| f.get(i).and_then(|s| s.parse::<i32>().ok());
    Some((
        f.first()?.chars().next()?,
        num(1)?,
        num(2)?,
        num(3)?,
        num(4)?,
        num(5)?,
    ))
}

fn state_of(pid: i32) -> char {
    stat_of(pid).map_or('?', |s| s.0)
}

/// `init -- CMD` started directly (a subreaper, not process 1), everything it leaves behind
/// killed when the test ends.
struct Tree(Spawned);

impl Tree {
    fn start(cmd: &mut Command) -> Tree {
        Tree(Spawned::new(cmd))
    }

    fn init(&self) -> i32 {
        self.0.pid()
    }

    /// init's only child, CMD, once it runs `comm`.
    fn cmd(&self, comm: &str) -> i32 {
        let mut found = 0;
        wait_until(
            &format!("CMD to run {comm}"),
            Duration::from_secs(10),
            || {
                found = children_of(self.init())
                    .first()
                    .map(|c| c.0)
                    .filter(|pid| {
                        std::fs::read_to_string(format!("/proc/{pid}/comm"))
                            .is_ok_and(|c| c.trim() == comm)
                    })
                    .unwrap_or(0);
                found != 0
            },
        );
        found
    }

    fn exit_code(&mut self, timeout: Duration) -> Option<i32> {
        self.0.wait_exit(timeout).code()
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        for (pid, _) in descendants(self.init()) {
            let _ = rustix::process::kill_process(
                rustix::process::Pid::from_raw(pid).unwrap(),
                rustix::process::Signal::KILL,
            );
        }
    }
}

fn init_cmd(args: &[&str]) -> Command {
    let mut cmd = Command::new(bin("init"));
    cmd.arg("--").args(args).stdin(Stdio::null());
    cmd
}

fn raw_signal(pid: i32, sig: i32) {
    // SAFETY: kill on a pid this test started.
    assert_eq!(unsafe { libc::kill(pid, sig) }, 0, "kill {pid} {sig}");
}

/// The pids that recorded `what` (`ready` or a signal number) in a sigcatch output file.
fn recorded(out: &Path, what: &str) -> Vec<i32> {
    std::fs::read_to_string(out)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once(' '))
        .filter(|(_, w)| *w == what)
        .filter_map(|(p, _)| p.parse().ok())
        .collect()
}

#[test]
fn command_mode_forwards_every_async_signal_to_cmds_group_and_survives_them() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("signals");
    let mut tree = Tree::start(&mut init_cmd(&[
        bin("sigcatch").to_str().unwrap(),
        out.to_str().unwrap(),
        "--fork",
    ]));
    let init = tree.init();
    wait_until(
        "CMD and its child to be ready",
        Duration::from_secs(10),
        || recorded(&out, "ready").len() == 2,
    );
    let group = recorded(&out, "ready");
    // CMD leads a session and a group of its own; its child is in that group.
    let cmd = tree.cmd("sigcatch");
    let (_, _, pgrp, sid, _, _) = stat_of(cmd).unwrap();
    assert_eq!((pgrp, sid), (cmd, cmd), "CMD's group and session");
    assert!(group.contains(&cmd));
    // Everything but KILL, STOP, CHLD, the job-control stops (tested apart: they stop init)
    // and TERM (last: it ends the test), then the real-time signals glibc leaves to programs.
    let skip = [
        libc::SIGKILL,
        libc::SIGSTOP,
        libc::SIGCHLD,
        libc::SIGTSTP,
        libc::SIGTTIN,
        libc::SIGTTOU,
        libc::SIGTERM,
    ];
    let mut signals: Vec<i32> = (1..32).filter(|s| !skip.contains(s)).collect();
    signals.extend(libc::SIGRTMIN()..=libc::SIGRTMAX());
    signals.push(libc::SIGTERM);
    for sig in signals {
        raw_signal(init, sig);
        wait_until(
            &format!("signal {sig} to reach CMD and its child"),
            Duration::from_secs(5),
            || {
                let got = recorded(&out, &sig.to_string());
                group.iter().all(|p| got.contains(p))
            },
        );
        if sig != libc::SIGTERM {
            assert!(alive(init), "init died of signal {sig}");
        }
    }
    assert_eq!(tree.exit_code(Duration::from_secs(10)), Some(0));
}

#[test]
fn command_mode_stops_with_cmds_group_on_tstp_ttin_ttou_and_continues_with_it() {
    let mut tree = Tree::start(&mut init_cmd(&["sh", "-c", "sleep 1000 & exec sleep 1001"]));
    let init = tree.init();
    let cmd = tree.cmd("sleep");
    let mut group = Vec::new();
    wait_until(
        "both sleeps in CMD's group",
        Duration::from_secs(10),
        || {
            group = descendants(init)
                .into_iter()
                .map(|(p, _)| p)
                .filter(|p| stat_of(*p).is_some_and(|s| s.2 == cmd))
                .collect();
            group.len() == 2
        },
    );
    for sig in [libc::SIGTSTP, libc::SIGTTIN, libc::SIGTTOU] {
        raw_signal(init, sig);
        wait_until(
            &format!("signal {sig} to stop init and the group"),
            Duration::from_secs(5),
            || state_of(init) == 'T' && group.iter().all(|p| state_of(*p) == 'T'),
        );
        raw_signal(init, libc::SIGCONT);
        wait_until(
            "CONT to resume init and the group",
            Duration::from_secs(5),
            || state_of(init) != 'T' && group.iter().all(|p| state_of(*p) == 'S'),
        );
    }
    raw_signal(init, libc::SIGTERM);
    assert_eq!(tree.exit_code(Duration::from_secs(10)), Some(128 + 15));
}

#[test]
fn command_mode_hands_its_terminal_to_cmd_so_a_shell_has_job_control() {
    use std::io::Write;
    require("busybox", "busybox-static");
    let pty = Pty::open();
    let mut master = &pty.master;
    // As a terminal session's leader, the way `docker run -it` starts its entry point.
    let mut cmd = Command::new(bin("init"));
    cmd.args(["--", "busybox", "sh", "-i"])
        .env("PS1", "$ ")
        .env_remove("ENV");
    pty.attach(&mut cmd, true);
    let mut tree = Tree::start(&mut cmd);
    let init = tree.init();
    let shown = || pty.shown();
    let sh = tree.cmd("busybox");
    let (_, _, _, _, tty, _) = stat_of(init).unwrap();
    wait_until(
        "the shell to lead its own session on the terminal, in the foreground",
        Duration::from_secs(10),
        || {
            stat_of(sh).is_some_and(|(_, _, pgrp, sid, sh_tty, tpgid)| {
                sid == sh && sh_tty != 0 && tpgid == pgrp
            })
        },
    );
    assert_eq!(tty, 0, "init gave its terminal up");
    master.write_all(b"sleep 1000 | sleep 1001\n").unwrap();
    let mut job = Vec::new();
    wait_until(
        "the job to run in the foreground",
        Duration::from_secs(10),
        || {
            job = children_of(sh).into_iter().map(|c| c.0).collect();
            job.len() == 2
                && job.iter().all(|p| {
                    stat_of(*p).is_some_and(|(state, _, pgrp, _, _, tpgid)| {
                        state == 'S' && pgrp != sh && tpgid == pgrp
                    })
                })
        },
    );
    master.write_all(b"\x1a").unwrap();
    wait_until(
        "ctrl-Z to stop the whole job",
        Duration::from_secs(10),
        || job.iter().all(|p| state_of(*p) == 'T'),
    );
    master.write_all(b"bg\n").unwrap();
    wait_until(
        "bg to resume the job in the background",
        Duration::from_secs(10),
        || {
            job.iter().all(|p| {
                stat_of(*p)
                    .is_some_and(|(state, _, pgrp, _, _, tpgid)| state == 'S' && tpgid != pgrp)
            })
        },
    );
    master.write_all(b"fg\n").unwrap();
    wait_until(
        "fg to bring the job to the foreground",
        Duration::from_secs(10),
        || {
            job.iter().all(|p| {
                stat_of(*p)
                    .is_some_and(|(state, _, pgrp, _, _, tpgid)| state == 'S' && tpgid == pgrp)
            })
        },
    );
    master.write_all(b"\x03").unwrap();
    wait_until("ctrl-C to end the job", Duration::from_secs(10), || {
        job.iter().all(|p| !alive(*p))
    });
    master.write_all(b"exit 7\n").unwrap();
    assert_eq!(
        tree.exit_code(Duration::from_secs(10)),
        Some(7),
        "shell said: {}",
        shown()
    );
}

#[test]
fn command_mode_terms_every_process_of_cmds_session_at_once_when_cmd_exits() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // CMD leaves a child that ignores TERM (it execs into sleep with TERM ignored) and that
    // child's own child, which records its TERM: it is in CMD's session but not init's child,
    // so only a TERM to the whole session reaches it before the grace ends.
    script(
        &dir.join("grandchild"),
        &format!(
            "trap 'echo term > {m}; exit 0' TERM\necho ok > {f}\nsleep 1000 & wait",
            m = dir.join("got-term").display(),
            f = dir.join("fifo").display()
        ),
    );
    script(
        &dir.join("child"),
        &format!(
            "{} &\ntrap '' TERM\nexec sleep 1000",
            dir.join("grandchild").display()
        ),
    );
    script(
        &dir.join("cmd"),
        &format!(
            "mkfifo {f}\n{c} &\nread x < {f}\nexit 3",
            f = dir.join("fifo").display(),
            c = dir.join("child").display()
        ),
    );
    let mut cmd = init_cmd(&[dir.join("cmd").to_str().unwrap()]);
    cmd.env("WARDEN_GRACE", "2s").stderr(Stdio::piped());
    let mut tree = Tree::start(&mut cmd);
    assert_eq!(tree.exit_code(Duration::from_secs(20)), Some(3));
    assert!(
        dir.join("got-term").exists(),
        "the grandchild in CMD's session never got TERM"
    );
}

#[test]
fn command_mode_terms_a_process_orphaned_after_the_first_term_without_waiting_for_the_grace() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // CMD's child dies of the first TERM; its child is in a session of its own, so that TERM
    // missed it; it comes to init as an orphan and must get TERM then, not KILL at the end.
    script(
        &dir.join("late"),
        &format!(
            "trap 'echo term > {m}; exit 0' TERM\necho ok > {f}\nsleep 1000 & wait",
            m = dir.join("got-term").display(),
            f = dir.join("fifo").display()
        ),
    );
    script(
        &dir.join("child"),
        &format!("setsid {} &\nexec sleep 1000", dir.join("late").display()),
    );
    script(
        &dir.join("cmd"),
        &format!(
            "mkfifo {f}\n{c} &\nread x < {f}\nexit 5",
            f = dir.join("fifo").display(),
            c = dir.join("child").display()
        ),
    );
    let mut cmd = init_cmd(&[dir.join("cmd").to_str().unwrap()]);
    cmd.env("WARDEN_GRACE", "30s").stderr(Stdio::piped());
    let started = std::time::Instant::now();
    let mut tree = Tree::start(&mut cmd);
    assert_eq!(tree.exit_code(Duration::from_secs(60)), Some(5));
    assert!(
        dir.join("got-term").exists(),
        "the late orphan never got TERM"
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "init waited {:?}: the late orphan waited for the grace",
        started.elapsed()
    );
}

/// The SigIgn and SigBlk masks of a process.
fn ignored_and_blocked(pid: i32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let mask = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .map(|v| u64::from_str_radix(v.trim(), 16).unwrap())
            .unwrap()
    };
    (mask("SigIgn:"), mask("SigBlk:"))
}

/// Signals 1-31. glibc's posix_spawn, with which std starts a program, sets its two internal
/// real-time signals (32, 33) to ignored in the child: they say nothing about init.
const STANDARD: u64 = (1 << 31) - 1;

fn bit(sig: i32) -> u64 {
    1 << (sig - 1)
}

#[test]
fn command_mode_gives_cmd_the_ignored_and_blocked_signals_it_inherited() {
    use std::os::unix::process::CommandExt;
    let mut cmd = init_cmd(&["sleep", "1000"]);
    // SAFETY: signal and sigprocmask in the child before its exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGINT, libc::SIG_IGN);
            libc::signal(libc::SIGPIPE, libc::SIG_IGN);
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGUSR1);
            libc::sigaddset(&mut set, libc::SIGHUP);
            libc::pthread_sigmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
            Ok(())
        });
    }
    let mut tree = Tree::start(&mut cmd);
    let sleep = tree.cmd("sleep");
    let (ignored, blocked) = ignored_and_blocked(sleep);
    assert_eq!(
        ignored & STANDARD,
        bit(libc::SIGINT) | bit(libc::SIGPIPE),
        "SigIgn {ignored:x}"
    );
    assert_eq!(
        blocked,
        bit(libc::SIGUSR1) | bit(libc::SIGHUP),
        "SigBlk {blocked:x}"
    );
    raw_signal(tree.init(), libc::SIGTERM);
    assert_eq!(tree.exit_code(Duration::from_secs(10)), Some(128 + 15));

    // And nothing of init's own leaks into a CMD started with defaults.
    let mut tree = Tree::start(&mut init_cmd(&["sleep", "1000"]));
    let sleep = tree.cmd("sleep");
    let (ignored, blocked) = ignored_and_blocked(sleep);
    assert_eq!((ignored & STANDARD, blocked), (0, 0));
    raw_signal(tree.init(), libc::SIGTERM);
    assert_eq!(tree.exit_code(Duration::from_secs(10)), Some(128 + 15));
}

#[test]
fn command_mode_starts_cmd_in_its_cwd_and_moves_its_own_to_root() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cmd = init_cmd(&["sleep", "1000"]);
    cmd.current_dir(tmp.path());
    let mut tree = Tree::start(&mut cmd);
    let sleep = tree.cmd("sleep");
    let cwd = |pid: i32| std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap();
    assert_eq!(cwd(sleep), tmp.path().canonicalize().unwrap());
    let init = tree.init();
    wait_until("init to move to /", Duration::from_secs(10), || {
        cwd(init) == Path::new("/")
    });
    raw_signal(init, libc::SIGTERM);
    assert_eq!(tree.exit_code(Duration::from_secs(10)), Some(128 + 15));
}

#[test]
fn command_mode_passes_every_exit_status_through() {
    for code in 0..=255 {
        let mut cmd = init_cmd(&["sh", "-c", &format!("exit {code}")]);
        cmd.stderr(Stdio::null());
        let mut tree = Tree::start(&mut cmd);
        assert_eq!(tree.exit_code(Duration::from_secs(10)), Some(code));
    }
    let mut cmd = init_cmd(&["sh", "-c", "kill -KILL $$"]);
    cmd.stderr(Stdio::null());
    assert_eq!(
        Tree::start(&mut cmd).exit_code(Duration::from_secs(10)),
        Some(128 + 9)
    );
    // Not executable: 126, and the message names it.
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("not-executable");
    std::fs::write(&file, "#!/bin/sh\n").unwrap();
    let (code, _, stderr) = warden_tests::run(
        &mut init_cmd(&[file.to_str().unwrap()]),
        Duration::from_secs(10),
    );
    assert_eq!(code, Some(126), "stderr: {stderr}");
    assert!(
        stderr.contains(&format!("unable to run {}", file.display())),
        "stderr: {stderr}"
    );
}
