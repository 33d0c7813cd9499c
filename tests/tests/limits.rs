//! Issue 17: what a service runs as and with. Real supervisors on temp service dirs with
//! `memory.max`, `pids.max`, `cpu.max`, `user`, `limits`, `nice`, `umask` and
//! `restart-limit`, checked from the kernel's side (/proc/PID/status, /proc/PID/limits, the
//! cgroup's files) and from `svctl status --json`. Needs root (cgroups, setuid); on this host
//! (hybrid layout: memory, pids and cpu bound to v1) the limits land in the v1 hierarchies,
//! on a pure cgroup2 host in the service's cgroup2 cgroup.

use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use warden::status::{Exit, Extended, RunState, Status, Want};
use warden::svdir::{Liveness, ServiceDir};
use warden_tests::{bin, run, script, wait_until, Spawned};

const WAIT: Duration = Duration::from_secs(20);

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
                .stdout(std::fs::File::create(svc.with_extension("out")).unwrap())
                .stderr(std::fs::File::create(&err).unwrap()),
        );
        let sup = Sup {
            svc: svc.to_owned(),
            child,
            err,
        };
        wait_until("supervise to take over", WAIT, || {
            sup.dir().liveness() == Ok(Liveness::Running) && sup.dir().status().is_ok()
        });
        sup
    }

    fn dir(&self) -> ServiceDir {
        ServiceDir::new(&self.svc)
    }

    fn wait(&self, what: &str, cond: impl Fn(&Status, &Extended) -> bool) -> (Status, Extended) {
        let mut seen = None;
        wait_until(what, WAIT, || {
            let (Ok(s), Some(x)) = (self.dir().status(), self.dir().extended()) else {
                return false;
            };
            let ok = cond(&s, &x);
            seen = Some((s, x));
            ok
        });
        seen.unwrap()
    }

    fn wait_run(&self) -> u32 {
        self.wait("run", |s, _| s.state == RunState::Run && s.pid != 0)
            .0
            .pid
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    fn json(&self) -> Value {
        let (code, out, err) = run(
            Command::new(bin("svctl"))
                .args(["status", "--json"])
                .arg(&self.svc),
            WAIT,
        );
        // LSB's exit codes: 3 for a service that is down.
        assert!(matches!(code, Some(0 | 3)), "{code:?} {err}");
        let v: Value = serde_json::from_str(&out).unwrap();
        v[0].clone()
    }

    /// The service's cgroup dirs: its cgroup2 one and those of the v1 hierarchies.
    fn cgroups(&self) -> Vec<PathBuf> {
        let st = rustix::fs::stat(&self.svc).unwrap();
        let leaf = warden::svdir::cgroup_leaf(&self.svc, st.st_dev, st.st_ino);
        let mut found = Vec::new();
        let text = std::fs::read_to_string("/proc/self/cgroup").unwrap();
        for line in text.lines() {
            let mut f = line.splitn(3, ':');
            let (_, controllers, path) = (f.next(), f.next().unwrap(), f.next().unwrap());
            let mount = match controllers {
                "" => warden::cgroupfs::mount(),
                c if !c.starts_with("name=") => Some(Path::new("/sys/fs/cgroup").join(c)),
                _ => None,
            };
            if let Some(mount) = mount {
                let dir = mount.join(path.trim_start_matches('/')).join(&leaf);
                if dir.is_dir() {
                    found.push(dir);
                }
            }
        }
        found
    }

    /// The file `name` of whichever of the service's cgroups has it.
    fn cgroup_file(&self, name: &str) -> Option<String> {
        self.cgroups()
            .iter()
            .find_map(|d| std::fs::read_to_string(d.join(name)).ok())
    }
}

impl Drop for Sup {
    fn drop(&mut self) {
        let cgroups = self.cgroups();
        let _ = self.dir().send(b"x");
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if self.child.child.try_wait().ok().flatten().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        // Whatever is left (supervise killed by the harness): kill it and remove the cgroups.
        for dir in &cgroups {
            for pid in std::fs::read_to_string(dir.join("cgroup.procs"))
                .unwrap_or_default()
                .lines()
            {
                if let Ok(pid) = pid.trim().parse::<i32>() {
                    warden_tests::kill_group(pid);
                    unsafe_free_kill(pid);
                }
            }
        }
        let _ = self.child.child.kill();
        let _ = self.child.child.wait();
        for dir in cgroups {
            let deadline = Instant::now() + Duration::from_secs(5);
            while dir.exists() && std::fs::remove_dir(&dir).is_err() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

fn unsafe_free_kill(pid: i32) {
    if let Some(pid) = rustix::process::Pid::from_raw(pid) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// A temp dir others can traverse (services that run as another user must reach `run`).
fn tempdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

fn service(root: &Path, name: &str, run_body: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = root.join(name);
    script(&dir.join("run"), run_body);
    for (file, text) in files {
        std::fs::write(dir.join(file), text).unwrap();
    }
    dir
}

/// A status field of /proc/PID/status, its words.
fn proc_status(pid: u32, field: &str) -> Vec<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

#[test]
fn issue_17_a_service_over_memory_max_is_oom_killed_and_reported_so() {
    if !is_root() {
        return;
    }
    let root = tempdir();
    // tail keeps the whole "line" of /dev/zero: it grows until the OOM killer stops it.
    let svc = service(
        root.path(),
        "hog",
        "exec tail /dev/zero",
        &[("memory.max", "32M\n"), ("down", "")],
    );
    let sup = Sup::start(&svc);
    // Once: no restart after the kill.
    sup.dir().send(b"o").unwrap();
    let (s, x) = sup.wait("the OOM kill", |s, x| {
        x.last_exit.is_some() && s.state == RunState::Down
    });
    assert_eq!(x.last_exit, Some(Exit::Signal(9)), "{x:?}");
    assert_eq!(x.last_exit_oom.as_deref(), Some("memory.max 32M"), "{x:?}");
    assert_eq!(
        x.last_exit_text().as_deref(),
        Some("killed by the OOM killer (memory.max 32M)")
    );
    assert!(x.settings.contains(&("memory.max".into(), "32M".into())));
    assert_eq!(s.pid, 0);
    let v = sup.json();
    assert_eq!(v["last_exit"]["oom"], "memory.max 32M", "{v}");
    assert_eq!(
        v["last_exit"]["text"],
        "killed by the OOM killer (memory.max 32M)"
    );
    wait_until("the supervisor to say so", WAIT, || {
        sup.stderr()
            .contains("was killed by the OOM killer (memory.max 32M)")
    });
}

#[test]
fn issue_17_pids_max_stops_a_fork_bomb() {
    if !is_root() {
        return;
    }
    let root = tempdir();
    // 200 sleeps and more: only those pids.max lets through start (the shell may give up
    // at the first fork refused; supervise then stops what it left and starts it again).
    let svc = service(
        root.path(),
        "bomb",
        "i=0; while [ $i -lt 200 ]; do sleep 60 & i=$((i+1)); done\nexec sleep 60",
        &[("pids.max", "20\n")],
    );
    let sup = Sup::start(&svc);
    sup.wait_run();
    let refused = || -> u64 {
        let events = sup.cgroup_file("pids.events").unwrap_or_default();
        events
            .lines()
            .find_map(|l| l.strip_prefix("max ")?.trim().parse().ok())
            .unwrap_or(0)
    };
    wait_until("pids.max to refuse forks", WAIT, || refused() > 0);
    for _ in 0..20 {
        let current: u64 = sup
            .cgroup_file("pids.current")
            .expect("pids.current")
            .trim()
            .parse()
            .unwrap();
        assert!(current <= 20, "pids.current {current}");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        sup.cgroup_file("pids.max").unwrap().trim(),
        "20",
        "the limit is in the cgroup"
    );
}

/// CPU time of a process, from /proc/PID/stat (utime + stime), in clock ticks of 10 ms.
fn cpu_ticks(pid: u32) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &text[text.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

#[test]
fn issue_17_cpu_max_holds_a_busy_loop_near_its_quota() {
    if !is_root() {
        return;
    }
    let root = tempdir();
    let svc = service(
        root.path(),
        "spin",
        "exec sh -c 'while :; do :; done'",
        &[("cpu.max", "20000 100000\n")],
    );
    let sup = Sup::start(&svc);
    let pid = sup.wait_run();
    let (t0, c0) = (Instant::now(), cpu_ticks(pid));
    let stat0 = sup.cgroup_file("cpu.stat").unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let (wall, used) = (t0.elapsed(), cpu_ticks(pid) - c0);
    let share = used as f64 * 0.01 / wall.as_secs_f64();
    // 20 % of a CPU: under load the loop may get less, never much more.
    assert!(share < 0.3, "the loop had {:.0} % of a CPU", share * 100.0);
    assert!(share > 0.05, "the loop had {:.0} % of a CPU", share * 100.0);
    let stat = sup.cgroup_file("cpu.stat").unwrap();
    let field = |text: &str, key: &str| -> Option<u64> {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{key} "))?.trim().parse().ok())
    };
    // cgroup2 counts the time used; v1's cpu.stat how often the quota held the loop back.
    match field(&stat, "usage_usec") {
        Some(usec) => {
            let usec = usec - field(&stat0, "usage_usec").unwrap();
            let share = usec as f64 / 1e6 / wall.as_secs_f64();
            assert!(share < 0.3, "cpu.stat: {:.0} % of a CPU", share * 100.0);
        }
        None => {
            let throttled = field(&stat, "nr_throttled").unwrap();
            assert!(throttled > field(&stat0, "nr_throttled").unwrap(), "{stat}");
        }
    }
}

#[test]
fn issue_17_a_value_the_kernel_refuses_is_reported_and_the_service_not_started() {
    if !is_root() {
        return;
    }
    let root = tempdir();
    let svc = service(
        root.path(),
        "bad",
        "touch ran; exec sleep 60",
        &[("memory.max", "lots\n")],
    );
    let sup = Sup::start(&svc);
    let (s, x) = sup.wait("the refusal", |_, x| x.last_error.is_some());
    let error = x.last_error.unwrap();
    assert!(
        error.contains(&format!("{}/memory.max", svc.display()))
            && error.contains("\"lots\"")
            && error.contains("Invalid argument"),
        "{error}"
    );
    assert_eq!((s.state, s.pid), (RunState::Down, 0));
    assert!(!svc.join("ran").exists(), "the service must not have run");
    wait_until("the supervisor to say so", WAIT, || {
        sup.stderr().contains("Invalid argument")
    });
    // A bad user is refused as well: no start as root in its place.
    let svc = service(
        root.path(),
        "nouser",
        "touch ran; exec sleep 60",
        &[("user", "no-such-user-17\n")],
    );
    let sup = Sup::start(&svc);
    let (s, x) = sup.wait("the refusal", |_, x| x.last_error.is_some());
    assert!(
        x.last_error
            .as_deref()
            .unwrap()
            .contains("unknown user \"no-such-user-17\""),
        "{x:?}"
    );
    assert_eq!(s.pid, 0);
    assert!(!svc.join("ran").exists());
}

/// A user and a group made for the test, removed afterwards.
struct TestUser;

const TEST_USER: &str = "wdn17u";
const TEST_GROUP: &str = "wdn17g";

impl TestUser {
    /// `None` only where there is no useradd; a useradd that fails is a failed test (retried
    /// a few times: another program may hold the lock on /etc/passwd for a moment).
    fn create() -> Option<TestUser> {
        if !warden_tests::have("useradd") {
            return None;
        }
        let made = || {
            let _ = Command::new("userdel").arg(TEST_USER).status();
            let _ = Command::new("groupdel").arg(TEST_GROUP).status();
            let group = Command::new("groupadd").arg(TEST_GROUP).status();
            let user = Command::new("useradd")
                .args(["-M", "-N", "-g", "nogroup", "-G", TEST_GROUP])
                .args(["-d", "/nonexistent", "-s", "/usr/sbin/nologin", TEST_USER])
                .status();
            group.is_ok_and(|s| s.success()) && user.is_ok_and(|s| s.success())
        };
        for _ in 0..10 {
            if made() {
                return Some(TestUser);
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        panic!("unable to make the test user {TEST_USER} with useradd");
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(TEST_USER).status();
        let _ = Command::new("groupdel").arg(TEST_GROUP).status();
    }
}

fn id_of(db: &str, name: &str) -> u32 {
    let text = std::fs::read_to_string(db).unwrap();
    text.lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f[0] == name).then(|| f[2].parse().unwrap())
        })
        .unwrap()
}

#[test]
fn issue_17_user_runs_run_and_finish_as_that_user_with_its_groups() {
    if !is_root() {
        return;
    }
    let Some(_user) = TestUser::create() else {
        return;
    };
    let uid = id_of("/etc/passwd", TEST_USER);
    let gid = id_of("/etc/group", "nogroup");
    let extra = id_of("/etc/group", TEST_GROUP);
    let root = tempdir();
    let svc = service(
        root.path(),
        "as-user",
        "exec sleep 60",
        &[("user", &format!("{TEST_USER}\n"))],
    );
    script(&svc.join("finish"), "exec sleep 5");
    // The control/ hooks too: control/u runs before each start.
    let out = root.path().join("out");
    std::fs::create_dir(&out).unwrap();
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o777)).unwrap();
    script(
        &svc.join("control/u"),
        &format!(
            "id -u > {}/u.new && mv {}/u.new {}/u",
            out.display(),
            out.display(),
            out.display()
        ),
    );
    // svctl runs ./check as the service's user too: it passes only as that user.
    script(
        &svc.join("check"),
        &format!("[ \"$(id -u)\" = {uid} ] && [ \"$USER\" = {TEST_USER} ] && [ \"$(id -G | tr ' ' '\\n' | sort | tr '\\n' ' ')\" = \"$(printf '%s\\n' {gid} {extra} | sort | tr '\\n' ' ')\" ]"),
    );
    let sup = Sup::start(&svc);
    let pid = sup.wait_run();
    let id = |n: u32| n.to_string();
    assert_eq!(
        proc_status(pid, "Uid"),
        [id(uid), id(uid), id(uid), id(uid)]
    );
    assert_eq!(
        proc_status(pid, "Gid"),
        [id(gid), id(gid), id(gid), id(gid)]
    );
    let mut groups = vec![id(gid), id(extra)];
    groups.sort();
    let mut seen = proc_status(pid, "Groups");
    seen.sort();
    assert_eq!(seen, groups);
    // run is a script that execs sleep: while that second execve swaps the image, the
    // kernel shows an empty environ, so read it once the process has settled in sleep.
    wait_until("run to exec sleep", WAIT, || {
        std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "sleep")
            && std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|e| !e.is_empty())
    });
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let environ = String::from_utf8_lossy(&environ);
    for var in [
        format!("USER={TEST_USER}"),
        format!("LOGNAME={TEST_USER}"),
        "HOME=/nonexistent".to_owned(),
    ] {
        assert!(
            environ.split('\0').any(|v| v == var),
            "{var} in {environ:?}"
        );
    }
    wait_until("control/u to run", WAIT, || out.join("u").exists());
    let hook_uid = std::fs::read_to_string(out.join("u")).unwrap();
    assert_eq!(
        hook_uid.trim(),
        uid.to_string(),
        "control/u runs as the user"
    );
    let (code, _, err) = run(
        Command::new(bin("svctl"))
            .args(["-w", "5", "check"])
            .arg(&svc),
        WAIT,
    );
    assert_eq!(code, Some(0), "./check did not pass as {TEST_USER}: {err}");
    // finish runs as the user too.
    warden_tests::kill_group(pid as i32);
    let finish = sup
        .wait("finish", |s, _| s.state == RunState::Finish && s.pid != 0)
        .0
        .pid;
    assert_eq!(proc_status(finish, "Uid")[0], id(uid));
    let x = sup.dir().extended().unwrap();
    assert!(
        x.settings
            .iter()
            .any(|(n, v)| n == "user" && v.starts_with(TEST_USER)),
        "{:?}",
        x.settings
    );
}

#[test]
fn issue_17_limits_nice_and_umask_are_applied() {
    if !is_root() {
        return;
    }
    let root = tempdir();
    let svc = service(
        root.path(),
        "limited",
        "exec sleep 60",
        &[
            (
                "limits",
                "# as chpst -o -c -a\nnofile 123\ncore unlimited\nas 1G\nstack 8M:16M\n",
            ),
            ("nice", "7\n"),
            ("umask", "027\n"),
        ],
    );
    let sup = Sup::start(&svc);
    let pid = sup.wait_run();
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let row = |name: &str| -> Vec<String> {
        let line = limits.lines().find(|l| l.starts_with(name)).unwrap();
        line[name.len()..]
            .split_whitespace()
            .take(2)
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(row("Max open files"), ["123", "123"], "{limits}");
    assert_eq!(row("Max core file size"), ["unlimited", "unlimited"]);
    assert_eq!(row("Max address space"), ["1073741824", "1073741824"]);
    assert_eq!(row("Max stack size"), ["8388608", "16777216"]);
    assert_eq!(proc_status(pid, "Umask"), ["0027"]);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..]
        .split_whitespace()
        .collect();
    assert_eq!(after[16], "7", "nice in /proc/PID/stat");
    // A bad line names the file and the line; the service is not started.
    std::fs::write(svc.join("limits"), "nofile 10\nfiles 3\n").unwrap();
    warden_tests::kill_group(pid as i32);
    let (_, x) = sup.wait("the refusal", |_, x| x.last_error.is_some());
    let error = x.last_error.unwrap();
    assert!(
        error.contains(&format!("{}/limits", svc.display())) && error.contains("line 2"),
        "{error}"
    );
}

#[test]
fn issue_17_restart_limit_fails_the_service_and_svctl_up_or_a_change_clears_it() {
    let root = tempdir();
    let svc = service(
        root.path(),
        "crashy",
        "echo run >> runs; exit 3",
        &[("restart-limit", "2 1m\n")],
    );
    let runs = || {
        std::fs::read_to_string(svc.join("runs"))
            .unwrap_or_default()
            .lines()
            .count()
    };
    let sup = Sup::start(&svc);
    let (s, x) = sup.wait("failed", |_, x| x.failed);
    assert_eq!((s.state, s.want), (RunState::Down, Want::Down));
    assert_eq!(x.last_exit, Some(Exit::Code(3)));
    assert_eq!(runs(), 2);
    let v = sup.json();
    assert_eq!(v["failed"], true, "{v}");
    assert_eq!(v["last_exit"]["code"], 3);
    wait_until("the supervisor to say so", WAIT, || {
        sup.stderr()
            .contains("not restarting until svctl up (restart-limit)")
            || sup.stderr().contains("(restart-limit); not restarting")
    });
    // svctl up clears it: two more runs, then failed again.
    let (code, _, err) = run(Command::new(bin("svctl")).arg("up").arg(&svc), WAIT);
    assert!(code == Some(0) || code == Some(1), "{err}");
    // (restarts counts the starts after the first: 3 is the fourth run.)
    let (_, x) = sup.wait("failed again", |_, x| x.failed && x.restarts == 3);
    assert_eq!(runs(), 4);
    assert_eq!(x.last_exit, Some(Exit::Code(3)));
    // A change of the file clears it too, and the new limit applies.
    std::fs::write(svc.join("restart-limit"), "1 1m\n").unwrap();
    wait_until("a run after the change", WAIT, || runs() >= 5);
    let (_, x) = sup.wait("failed by the new limit", |_, x| {
        x.failed && x.restarts == 4
    });
    assert!(x
        .settings
        .iter()
        .any(|(n, v)| n == "restart-limit" && v.starts_with("1 ")));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(runs(), 5, "one run for a limit of 1");
}
