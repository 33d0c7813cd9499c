//! `init` as process 1 of a fresh PID + mount namespace (`unshare --pid --fork --mount
//! --propagation private --mount-proc`): the container mode. Never run init as process 1 any
//! other way on a development machine: stage 3 signals every process of its namespace.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use warden_tests::{bin, children_of, script, wait_until, Spawned};

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
