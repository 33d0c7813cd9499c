//! Dependencies and oneshots (issue 14) with the real svscan, supervise and svctl: services
//! write timestamps (ns since the epoch) into their directories, and the tests read the order
//! from them.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use warden_tests::warden::status::RunState;
use warden_tests::warden::svdir::{Liveness, ServiceDir};
use warden_tests::{bin, run, script, wait_until, Spawned};

const LONG: Duration = Duration::from_secs(20);

struct Scan {
    root: tempfile::TempDir,
    dir: PathBuf,
    svscan: Option<Spawned>,
}

impl Scan {
    fn new() -> Scan {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("service");
        fs::create_dir(&dir).unwrap();
        Scan {
            root,
            dir,
            svscan: None,
        }
    }

    fn start(&mut self) {
        let mut cmd = Command::new(bin("svscan"));
        cmd.arg(&self.dir);
        self.launch(cmd);
    }

    fn launch(&mut self, mut cmd: Command) {
        let log = fs::File::create(self.root.path().join("svscan.stderr")).unwrap();
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        self.svscan = Some(Spawned::new(&mut cmd));
        let fifo = self.dir.join(".svscan/control");
        wait_until("svscan's control FIFO", LONG, || fifo.exists());
    }

    fn stderr(&self) -> String {
        fs::read_to_string(self.root.path().join("svscan.stderr")).unwrap_or_default()
    }

    fn stage(&self) -> PathBuf {
        let stage = self.root.path().join("stage");
        fs::create_dir_all(&stage).unwrap();
        stage
    }

    fn svctl(&self, args: &[&str]) -> (Option<i32>, String, String) {
        run(
            Command::new(bin("svctl"))
                .arg("-d")
                .arg(&self.dir)
                .args(args),
            LONG,
        )
    }

    /// TERM to svscan, and its exit within the deadline.
    fn stop(&mut self) -> Option<i32> {
        let mut svscan = self.svscan.take()?;
        signal(svscan.pid(), rustix::process::Signal::TERM);
        svscan.wait_exit(LONG).code()
    }
}

impl Drop for Scan {
    fn drop(&mut self) {
        self.stop();
        warden_tests::kill_under(self.root.path());
    }
}

fn signal(pid: i32, sig: rustix::process::Signal) {
    if let Some(pid) = rustix::process::Pid::from_raw(pid).filter(|_| pid > 1) {
        let _ = rustix::process::kill_process(pid, sig);
    }
}

/// A run script that notes when it started (`started`, appended, once its TERM trap is set:
/// a test that sees `started` and stops it then finds `stopped`), becomes ready after
/// `ready_after` (notification-fd 3, noting `ready`), notes when it was told to stop
/// (`stopped`), and lingers `linger` seconds after TERM.
fn timed_service(root: &Path, name: &str, ready_after: &str, linger: &str) -> PathBuf {
    let dir = root.join(name);
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("notification-fd"), "3\n").unwrap();
    script(
        &dir.join("run"),
        &format!(
            "trap 'date +%s%N >> stopped; sleep {linger}; exit 0' TERM\n\
             date +%s%N >> started\n\
             sleep {ready_after}\n\
             date +%s%N >> ready\n\
             echo >&3\n\
             exec 3>&-\n\
             while :; do sleep 1 & wait $!; done"
        ),
    );
    dir
}

/// A plain service (ready once it runs): notes `started` (its TERM trap already set) and
/// `stopped`.
fn plain_service(root: &Path, name: &str) -> PathBuf {
    let dir = root.join(name);
    script(
        &dir.join("run"),
        "trap 'date +%s%N >> stopped; exit 0' TERM\ndate +%s%N >> started\n\
         while :; do sleep 1 & wait $!; done",
    );
    dir
}

fn stamps(dir: &Path, file: &str) -> Vec<u128> {
    let text = fs::read_to_string(dir.join(file)).unwrap_or_default();
    text.lines().filter_map(|l| l.trim().parse().ok()).collect()
}

fn first(dir: &Path, file: &str) -> u128 {
    stamps(dir, file)
        .first()
        .copied()
        .unwrap_or_else(|| panic!("no {file} in {}", dir.display()))
}

fn last(dir: &Path, file: &str) -> u128 {
    stamps(dir, file)
        .last()
        .copied()
        .unwrap_or_else(|| panic!("no {file} in {}", dir.display()))
}

fn has(dir: &Path, file: &str) -> bool {
    !stamps(dir, file).is_empty()
}

fn dep(dir: &Path, kind: &str, name: &str) {
    fs::create_dir_all(dir.join(kind)).unwrap();
    fs::write(dir.join(kind).join(name), "").unwrap();
}

/// `cache`, down by its `down` file, and `web`, with no edges yet; returns web's directory.
fn web_and_a_down_cache(s: &Path) -> PathBuf {
    let cache = plain_service(s, "cache");
    fs::write(cache.join("down"), "").unwrap();
    plain_service(s, "web")
}

fn wait_stopped_for_its_new_need(web: &Path) {
    wait_until("web stopped for its new need", LONG, || has(web, "stopped"));
}

/// The need of cache goes: web starts again.
fn remove_the_need_and_wait_for_a_second_start(web: &Path) {
    fs::remove_file(web.join("needs/cache")).unwrap();
    wait_until("web started again", LONG, || {
        stamps(web, "started").len() == 2
    });
}

fn is_up(dir: &Path) -> bool {
    ServiceDir::new(dir)
        .status()
        .is_ok_and(|s| s.state == RunState::Run && s.pid != 0)
}

#[test]
fn a_three_level_graph_comes_up_in_order_each_level_after_the_previous_is_ready() {
    let mut scan = Scan::new();
    let s = scan.dir.clone();
    let disk = timed_service(&s, "disk", "0.3", "0");
    let db = timed_service(&s, "db", "0.3", "0");
    let app = timed_service(&s, "app", "0", "0");
    dep(&db, "needs", "disk");
    dep(&app, "needs", "db");
    scan.start();
    wait_until("app started", LONG, || has(&app, "started"));
    assert!(
        first(&db, "started") >= first(&disk, "ready"),
        "db before disk was ready"
    );
    assert!(
        first(&app, "started") >= first(&db, "ready"),
        "app before db was ready"
    );
    assert_eq!(
        stamps(&db, "started").len(),
        1,
        "db was started once, not restarted"
    );
    assert_eq!(stamps(&app, "started").len(), 1);
    // Waiting did not count as restarts.
    let x = ServiceDir::new(&app).extended().unwrap();
    assert_eq!(x.restarts, 0);
}

#[test]
fn a_need_that_dies_stops_its_dependents_and_they_come_back_after_it_is_ready() {
    let mut scan = Scan::new();
    let s = scan.dir.clone();
    let db = timed_service(&s, "db", "0.2", "0");
    let app = plain_service(&s, "app");
    dep(&app, "needs", "db");
    scan.start();
    wait_until("app started", LONG, || has(&app, "started"));
    let db_pid = ServiceDir::new(&db).status().unwrap().pid as i32;
    signal(db_pid, rustix::process::Signal::KILL);
    wait_until("app stopped", LONG, || has(&app, "stopped"));
    wait_until("app started again", LONG, || {
        stamps(&app, "started").len() == 2
    });
    assert!(
        last(&app, "started") >= last(&db, "ready"),
        "app came back before db was ready again"
    );
}

#[test]
fn wants_and_after_order_without_requiring() {
    let mut scan = Scan::new();
    let s = scan.dir.clone();
    let net = timed_service(&s, "net", "0.5", "0");
    let web = plain_service(&s, "web");
    dep(&web, "after", "net");
    dep(&web, "wants", "metrics"); // no such service: not waited for
    let cron = plain_service(&s, "cron");
    dep(&cron, "wants", "net");
    scan.start();
    wait_until("web and cron started", LONG, || {
        has(&web, "started") && has(&cron, "started")
    });
    assert!(first(&web, "started") >= first(&net, "ready"));
    assert!(first(&cron, "started") >= first(&net, "ready"));
    // net going down stops neither.
    let (code, _, err) = scan.svctl(&["-w", "10s", "down", "net"]);
    assert_eq!(code, Some(0), "{err}");
    std::thread::sleep(Duration::from_millis(300));
    assert!(!has(&web, "stopped") && !has(&cron, "stopped"));
    assert!(is_up(&web) && is_up(&cron));
}

#[test]
fn a_want_or_an_order_held_for_its_own_need_stops_nothing_that_runs() {
    let mut scan = Scan::new();
    let s = scan.dir.clone();
    let db = timed_service(&s, "db", "0", "0");
    let app = timed_service(&s, "app", "0.2", "0");
    dep(&app, "needs", "db");
    let web = plain_service(&s, "web");
    dep(&web, "wants", "app");
    let cron = plain_service(&s, "cron");
    dep(&cron, "after", "app");
    scan.start();
    wait_until("web and cron started", LONG, || {
        has(&web, "started") && has(&cron, "started")
    });
    assert!(first(&web, "started") >= first(&app, "ready"));
    assert!(first(&cron, "started") >= first(&app, "ready"));
    // app is held (still wanted up) while its need is down: web and cron run on.
    let (code, _, err) = scan.svctl(&["-w", "10s", "down", "db"]);
    assert_eq!(code, Some(0), "{err}");
    wait_until("app held", LONG, || has(&app, "stopped"));
    std::thread::sleep(Duration::from_millis(300));
    assert!(!has(&web, "stopped") && !has(&cron, "stopped"));
    assert!(is_up(&web) && is_up(&cron));
    let (code, _, err) = scan.svctl(&["-w", "10s", "up", "db"]);
    assert_eq!(code, Some(0), "{err}");
    wait_until("app back", LONG, || stamps(&app, "ready").len() == 2);
    assert_eq!(
        stamps(&web, "started").len(),
        1,
        "web was not started again"
    );
    assert!(is_up(&db));
}

#[test]
fn a_want_that_fails_to_start_is_not_waited_for_and_a_need_that_does_is() {
    let mut scan = Scan::new();
    let s = scan.dir.clone();
    // Never ready: it ends before it says so.
    let broken = s.join("broken");
    script(&broken.join("run"), "date +%s%N >> started\nexit 1");
    fs::write(broken.join("notification-fd"), "3\n").unwrap();
    let web = plain_service(&s, "web");
    dep(&web, "wants", "broken");
    let app = plain_service(&s, "app");
    dep(&app, "needs", "broken");
    scan.start();
    // broken fails, and waits out a back-off before it tries again: web goes.
    wait_until("web started", LONG, || has(&web, "started"));
    let web_start = first(&web, "started");
    let tries = stamps(&broken, "started");
    assert!(
        tries.iter().any(|&t| t < web_start),
        "web started before broken tried: {tries:?} {web_start}"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(!has(&app, "started"), "app needs broken: it waits");
    let (_, out, _) = scan.svctl(&["status", "app"]);
    assert!(out.contains("waiting for broken"), "{out}");
}

#[test]
fn a_dependency_dropped_in_later_starts_the_waiting_service_at_once() {
    let mut scan = Scan::new();
    let s = scan.dir.clone();
    let app = plain_service(&s, "app");
    dep(&app, "needs", "db");
    scan.start();
    wait_until("app's supervisor", LONG, || {
        ServiceDir::new(&app).status().is_ok()
    });
    std::thread::sleep(Duration::from_millis(300));
    assert!(!has(&app, "started"), "app started without db");
    let x = ServiceDir::new(&app).extended().unwrap();
    assert!(x.held, "the waiting service's status says it is held");
    assert_eq!(x.restarts, 0);
    let staged = timed_service(&scan.stage(), "db", "0", "0");
    fs::rename(&staged, s.join("db")).unwrap();
    wait_until("app started", LONG, || has(&app, "started"));
    let db = s.join("db");
    let latency = first(&app, "started").saturating_sub(first(&db, "ready"));
    // A shell's fork and exec of `date` are in there too: the bench measures the real figure.
    assert!(
        latency < 500_000_000,
        "app started {latency} ns after db was ready"
    );
}

/// A dependent dropped in next to a service that has run for a while, with no dependents
/// until then: the dependency joins the graph by that edge, and its status (up and ready by
/// running) lets the dependent start, although nothing more happens in its directory. (It was
/// held for good: the dependency's status was watched only once its own directory changed.)
#[test]
fn a_dependent_dropped_in_next_to_a_running_service_starts() {
    let mut scan = Scan::new();
    let s = scan.dir.clone();
    let db = plain_service(&s, "db");
    scan.start();
    wait_until("db started", LONG, || has(&db, "started"));
    std::thread::sleep(Duration::from_millis(300));
    let staged = plain_service(&scan.stage(), "app");
    dep(&staged, "needs", "db");
    fs::rename(&staged, s.join("app")).unwrap();
    let app = s.join("app");
    wait_until("app started after db, which runs", LONG, || {
        has(&app, "started")
    });
    assert_eq!(stamps(&db, "started").len(), 1, "db was not restarted");
}

/// Four pairs `dbN` and `appN` (which needs `dbN`), listed in whatever order the directory
/// gives, under a running svscan, each app started.
fn four_pairs_running() -> (Scan, Vec<(PathBuf, PathBuf)>) {
    let mut scan = Scan::new();
    let s = scan.dir.clone();
    let pairs: Vec<(PathBuf, PathBuf)> = (0..4)
        .map(|i| {
            let need = plain_service(&s, &format!("db{i}"));
            let app = plain_service(&s, &format!("app{i}"));
            dep(&app, "needs", &format!("db{i}"));
            (need, app)
        })
        .collect();
    scan.start();
    for (_, app) in &pairs {
        wait_until("each app started", LONG, || has(app, "started"));
    }
    (scan, pairs)
}

/// svscan started again on a tree whose `supervise/` directories are left from an earlier
/// one (as on a restart of svscan, or under a supervise/ kept on disk): no supervisor makes
/// its `supervise/` then, and every dependency's status must still be watched, whatever
/// order the directory lists them in (four pairs: a dependency listed before its dependent
/// was read as taking no part in the graph).
#[test]
fn a_second_svscan_over_supervise_dirs_left_by_the_first_starts_every_dependent() {
    let (mut scan, pairs) = four_pairs_running();
    assert_eq!(scan.stop(), Some(0));
    for (db, app) in &pairs {
        assert!(db.join("supervise").is_dir() && app.join("supervise").is_dir());
    }
    scan.start();
    for (_, app) in &pairs {
        wait_until("each app started again", LONG, || {
            stamps(app, "started").len() == 2
        });
    }
}

/// svscan killed and started again adopts the running supervisors: no dependent is held (or
/// stopped) while the new svscan reads the graph, whatever order the pairs are listed in, and a
/// dependency's status is watched again: one stopped afterwards stops its dependent first.
#[test]
fn a_restarted_svscan_adopts_a_running_graph_without_stopping_a_dependent() {
    let (mut scan, pairs) = four_pairs_running();
    let mut svscan = scan.svscan.take().unwrap();
    signal(svscan.pid(), rustix::process::Signal::KILL);
    svscan.wait_exit(LONG);
    scan.start();
    std::thread::sleep(Duration::from_millis(500));
    for (db, app) in &pairs {
        assert!(!has(app, "stopped"), "{} was stopped", app.display());
        assert_eq!(stamps(app, "started").len(), 1);
        assert!(is_up(db) && is_up(app));
    }
    // Straight to db0's supervisor, as runit's `sv down` does: only svscan, watching db0's
    // status, can tell app0.
    let (db0, app0) = &pairs[0];
    ServiceDir::new(db0).send(b"d").unwrap();
    wait_until("app0 stopped for its need", LONG, || has(app0, "stopped"));
    ServiceDir::new(db0).send(b"u").unwrap();
    wait_until("app0 started again with db0", LONG, || {
        stamps(app0, "started").len() == 2
    });
}

/// runit's packaging keeps the state on a tmpfs: `supervise -> /run/runit/supervise.NAME`,
/// dangling until the supervisor makes its target at its start. Nothing is made in the
/// service directory then, so svscan waits for the target in the nearest directory of its
/// path that exists: the dependents start (they were held for good), by an absolute link
/// whose target's parents are made by the supervisor too, and by a relative one; and a
/// dependency that goes down later still stops its dependent.
#[test]
fn dependencies_whose_supervise_is_a_dangling_symlink_into_run_start_their_dependents() {
    let mut scan = Scan::new();
    let s = scan.dir.clone();
    let state = scan.root.path().join("run-runit");
    fs::create_dir(&state).unwrap();
    // Debian's layout, two levels of it not made yet: its supervisor makes them.
    let db = plain_service(&s, "db");
    std::os::unix::fs::symlink(state.join("runit/supervise/db"), db.join("supervise")).unwrap();
    let cache = plain_service(&s, "cache");
    std::os::unix::fs::symlink("../../run-runit/supervise.cache", cache.join("supervise")).unwrap();
    let app = plain_service(&s, "app");
    std::os::unix::fs::symlink(state.join("supervise.app"), app.join("supervise")).unwrap();
    dep(&app, "needs", "db");
    dep(&app, "needs", "cache");
    scan.start();
    wait_until("app started", LONG, || has(&app, "started"));
    assert!(state.join("runit/supervise/db/status").exists());
    assert!(state.join("supervise.cache/status").exists());
    ServiceDir::new(&cache).send(b"d").unwrap();
    wait_until("app stopped for its need", LONG, || has(&app, "stopped"));
}

/// A `supervise` symlink into the scan directory itself (a dot-name there, which svscan
/// ignores as a service): its target is awaited on the scan directory's own watch, and that
/// watch, shared, is never ended with the wait (svscan saw no new service after it was).
#[test]
fn a_supervise_symlink_into_the_scan_directory_is_waited_for_and_the_scan_goes_on() {
    let mut scan = Scan::new();
    let s = scan.dir.clone();
    let db = plain_service(&s, "db");
    std::os::unix::fs::symlink("../.state-db", db.join("supervise")).unwrap();
    let app = plain_service(&s, "app");
    dep(&app, "needs", "db");
    scan.start();
    wait_until("app started", LONG, || has(&app, "started"));
    assert!(s.join(".state-db/status").exists());
    // db's supervise/ is watched now through the link, no longer awaited.
    ServiceDir::new(&db).send(b"d").unwrap();
    wait_until("app stopped for its need", LONG, || has(&app, "stopped"));
    let staged = plain_service(&scan.stage(), "late");
    fs::rename(&staged, s.join("late")).unwrap();
    let late = s.join("late");
    wait_until("a service made afterwards started", LONG, || {
        has(&late, "started")
    });
}

#[test]
fn an_edge_added_live_holds_and_removed_live_releases() {
    let mut scan = Scan::new();
    let s = scan.dir.clone();
    let web = web_and_a_down_cache(&s);
    scan.start();
    wait_until("web started", LONG, || has(&web, "started"));
    dep(&web, "needs", "cache");
    wait_stopped_for_its_new_need(&web);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(stamps(&web, "started").len(), 1);
    remove_the_need_and_wait_for_a_second_start(&web);
}

/// The bytes svscan has read so far (`rchar` of /proc/PID/io): its inotify events, and the
/// files it reads.
fn bytes_read_by(pid: i32) -> u64 {
    let io = fs::read_to_string(format!("/proc/{pid}/io")).unwrap();
    io.lines()
        .find_map(|l| l.strip_prefix("rchar: "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap()
}

/// Files a service writes into its own directory (runit's idiom writes `ready` there) are no
/// concern of the graph: svscan, which watches that directory for dependency entries and
/// `supervise/`, reads nothing for them (it read the two services' statuses on each before).
#[test]
fn files_services_write_into_their_directories_cost_svscan_no_reads() {
    let mut scan = Scan::new();
    let s = scan.dir.clone();
    let db = plain_service(&s, "db");
    let app = plain_service(&s, "app");
    dep(&app, "needs", "db");
    scan.start();
    wait_until("app started", LONG, || has(&app, "started"));
    std::thread::sleep(Duration::from_millis(300));
    let svscan = scan.svscan.as_ref().unwrap().pid();
    let before = bytes_read_by(svscan);
    for i in 0..20 {
        for dir in [&db, &app] {
            fs::write(dir.join("state"), format!("{i}\n")).unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    // 32 bytes an inotify event (a header and "state" padded to 16), one or two per file
    // written; the statuses svscan read for each before (`status` and the extended status)
    // were another 60 or more.
    let read = bytes_read_by(svscan) - before;
    assert!(
        read <= 40 * 2 * 32,
        "svscan read {read} bytes for 40 files written into the service directories"
    );
    // And a dependency entry made among them is still seen: app is held for its new need.
    fs::write(app.join("state"), "last\n").unwrap();
    let cache = plain_service(&s, "cache");
    fs::write(cache.join("down"), "").unwrap();
    dep(&app, "needs", "cache");
    wait_stopped_for_its_new_need(&app);
}

#[test]
fn a_need_written_into_an_empty_needs_dir_made_earlier_holds() {
    let mut scan = Scan::new();
    let s = scan.dir.clone();
    let web = web_and_a_down_cache(&s);
    scan.start();
    wait_until("web started", LONG, || has(&web, "started"));
    // An empty needs/ first, read as no edges; its file only later, seen only through a watch
    // on needs/ itself (the service directory's watch does not see into it).
    fs::create_dir(web.join("needs")).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    fs::write(web.join("needs/cache"), "").unwrap();
    wait_stopped_for_its_new_need(&web);
    remove_the_need_and_wait_for_a_second_start(&web);
}

#[test]
fn out_of_inotify_watches_a_live_edge_is_still_seen_and_the_shortage_said_once() {
    let mut scan = Scan::new();
    let s = scan.dir.clone();
    let web = web_and_a_down_cache(&s);
    // One watch: the scan directory's. None is left for web's directory or its needs/.
    scan.launch(warden_tests::svscan_with_inotify_limits(&s, 8, 1));
    wait_until("web started", LONG, || has(&web, "started"));
    dep(&web, "needs", "cache");
    wait_stopped_for_its_new_need(&web);
    remove_the_need_and_wait_for_a_second_start(&web);
    // Said once, with what is done about it.
    let said = scan.stderr();
    assert_eq!(said.matches("unable to watch").count(), 1, "{said}");
    assert!(
        said.contains("dependency files and statuses are then read again every second"),
        "{said}"
    );
}

#[test]
fn a_cycle_is_reported_once_and_breaking_it_starts_its_services() {
    let mut scan = Scan::new();
    let s = scan.dir.clone();
    let a = plain_service(&s, "a");
    let b = plain_service(&s, "b");
    let c = plain_service(&s, "c");
    dep(&a, "needs", "b");
    dep(&b, "wants", "a");
    scan.start();
    wait_until("c started", LONG, || has(&c, "started"));
    wait_until("the cycle reported", LONG, || {
        scan.stderr().contains("dependency cycle: a -> b -> a")
    });
    std::thread::sleep(Duration::from_millis(300));
    assert!(!has(&a, "started") && !has(&b, "started"));
    assert_eq!(
        scan.stderr()
            .matches("dependency cycle: a -> b -> a")
            .count(),
        1
    );
    let (_, out, _) = scan.svctl(&["status", "--short", "a"]);
    assert!(out.contains("dependency cycle: a -> b -> a"), "{out}");
    fs::remove_file(b.join("wants/a")).unwrap();
    wait_until("a and b started", LONG, || {
        has(&a, "started") && has(&b, "started")
    });
}

#[test]
fn a_oneshot_dependency_runs_up_first_and_down_at_shutdown_after_its_dependent() {
    let mut scan = Scan::new();
    let s = scan.dir.clone();
    let mount = s.join("mount");
    fs::create_dir(&mount).unwrap();
    fs::write(mount.join("type"), "oneshot\n").unwrap();
    script(&mount.join("up"), "sleep 0.2\ndate +%s%N >> ready");
    script(&mount.join("down"), "date +%s%N >> stopped");
    let app = plain_service(&s, "app");
    dep(&app, "needs", "mount");
    scan.start();
    wait_until("app started", LONG, || has(&app, "started"));
    assert!(first(&app, "started") >= first(&mount, "ready"));
    // Its `down` is its program, not runit's marker.
    let (_, out, err) = scan.svctl(&["status", "mount"]);
    assert!(out.starts_with("mount: up (oneshot)"), "{out}{err}");
    assert!(out.contains("normally up"), "{out}");
    assert_eq!(scan.stop(), Some(0));
    assert!(has(&mount, "stopped"), "the oneshot's down did not run");
    assert!(
        first(&mount, "stopped") >= first(&app, "stopped"),
        "down ran before app stopped"
    );
}

#[test]
fn a_oneshot_brought_up_again_lets_its_dependent_go_only_once_its_up_has_run_again() {
    let mut scan = Scan::new();
    let s = scan.dir.clone();
    let setup = s.join("setup");
    fs::create_dir(&setup).unwrap();
    fs::write(setup.join("type"), "oneshot\n").unwrap();
    script(&setup.join("up"), "sleep 0.2\ndate +%s%N >> ready");
    let app = plain_service(&s, "app");
    dep(&app, "needs", "setup");
    scan.start();
    wait_until("app started", LONG, || has(&app, "started"));
    // Each new run's status is renamed in before the extended status that says the last
    // run's `up` worked is replaced: read between the two, it looked ready at once.
    for round in 2..=4 {
        let (code, _, err) = scan.svctl(&["-w", "10s", "down", "setup"]);
        assert_eq!(code, Some(0), "{err}");
        let (code, _, err) = scan.svctl(&["-w", "10s", "up", "app"]);
        assert_eq!(code, Some(0), "{err}");
        wait_until("app started again", LONG, || {
            stamps(&app, "started").len() == round
        });
        let (started, ready) = (stamps(&app, "started"), stamps(&setup, "ready"));
        assert_eq!(ready.len(), round, "setup's up ran {} times", ready.len());
        assert!(
            last(&app, "started") >= last(&setup, "ready"),
            "app started before setup's up had run again: {started:?} {ready:?}"
        );
    }
}

#[test]
fn a_failing_oneshot_up_is_retried_and_its_dependent_waits() {
    let mut scan = Scan::new();
    let s = scan.dir.clone();
    let setup = s.join("setup");
    fs::create_dir(&setup).unwrap();
    fs::write(setup.join("type"), "oneshot\n").unwrap();
    // Fails twice, then works.
    script(
        &setup.join("up"),
        "date +%s%N >> tries\n[ $(wc -l < tries) -ge 3 ]",
    );
    let app = plain_service(&s, "app");
    dep(&app, "needs", "setup");
    scan.start();
    wait_until("app started", LONG, || has(&app, "started"));
    let tries = stamps(&setup, "tries");
    assert_eq!(tries.len(), 3, "{tries:?}");
    assert!(first(&app, "started") >= tries[2]);
}

#[test]
fn shutdown_stops_dependents_first() {
    let mut scan = Scan::new();
    let s = scan.dir.clone();
    let db = timed_service(&s, "db", "0", "0");
    let app = timed_service(&s, "app", "0", "0.3");
    let web = timed_service(&s, "web", "0", "0.3");
    dep(&app, "needs", "db");
    dep(&web, "needs", "app");
    scan.start();
    wait_until("web ready", LONG, || has(&web, "ready"));
    assert_eq!(scan.stop(), Some(0));
    let (w, a, d) = (
        first(&web, "stopped"),
        first(&app, "stopped"),
        first(&db, "stopped"),
    );
    // Each lingers 0.3 s after TERM: the next one in line is told only after it exited.
    assert!(
        a >= w + 250_000_000,
        "app told to stop {} ns after web",
        a as i128 - w as i128
    );
    assert!(
        d >= a + 250_000_000,
        "db told to stop {} ns after app",
        d as i128 - a as i128
    );
}

#[test]
fn a_dependent_that_does_not_stop_leaves_its_dependency_a_share_of_the_grace_to_stop_cleanly() {
    let mut scan = Scan::new();
    let s = scan.dir.clone();
    let db = timed_service(&s, "db", "0", "0");
    // app ignores TERM, and its own timeout-kill is longer than the whole grace.
    let app = s.join("app");
    script(
        &app.join("run"),
        "trap 'date +%s%N >> stopped' TERM\ndate +%s%N >> started\n\
         while :; do sleep 1 & wait $!; done",
    );
    fs::write(app.join("timeout-kill"), "30000\n").unwrap();
    dep(&app, "needs", "db");
    let mut cmd = Command::new(bin("svscan"));
    cmd.arg("-g").arg("3s").arg(&s);
    scan.launch(cmd);
    wait_until("app started", LONG, || has(&app, "started"));
    assert_eq!(scan.stop(), Some(0));
    // db was told to stop (and could) after two thirds of the grace, not KILLed at its end
    // without a word.
    assert!(
        has(&db, "stopped"),
        "db never got its TERM: {}",
        scan.stderr()
    );
    let waited = first(&db, "stopped").saturating_sub(first(&app, "stopped"));
    assert!(
        (1_500_000_000..2_900_000_000).contains(&waited),
        "db told to stop {waited} ns after app"
    );
    assert!(
        scan.stderr().contains("stopping \"db\" now"),
        "{}",
        scan.stderr()
    );
}

#[test]
fn an_s6_rc_longrun_dir_with_dependencies_d_runs_unchanged() {
    let mut scan = Scan::new();
    let s = scan.dir.clone();
    let db = timed_service(&s, "db", "0.2", "0");
    fs::write(db.join("type"), "longrun\n").unwrap();
    let app = plain_service(&s, "app");
    fs::write(app.join("type"), "longrun\n").unwrap();
    dep(&app, "dependencies.d", "db");
    scan.start();
    wait_until("app started", LONG, || has(&app, "started"));
    assert!(first(&app, "started") >= first(&db, "ready"));
}

#[test]
fn the_runit_idiom_sv_start_in_run_still_works() {
    warden_tests::require("sv", "runit");
    let mut scan = Scan::new();
    let s = scan.dir.clone();
    let db = plain_service(&s, "db");
    // `sv start` waits for `check` where there is one: here, for db's first line.
    script(&db.join("check"), "[ -s started ]");
    let app = s.join("app");
    script(
        &app.join("run"),
        &format!(
            "SVDIR={} sv -w 10 start db || exit 1\ndate +%s%N >> started\nexec sleep 1000",
            s.display()
        ),
    );
    scan.start();
    wait_until("app started", LONG, || has(&app, "started"));
    assert!(first(&app, "started") >= first(&db, "started"));
}

#[test]
fn bad_dependency_files_are_reported_once_naming_the_file_and_hold_only_that_service() {
    let mut scan = Scan::new();
    let s = scan.dir.clone();
    let bad = plain_service(&s, "bad");
    fs::create_dir(bad.join("needs")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/db", bad.join("needs/db")).unwrap();
    let odd = plain_service(&s, "odd");
    fs::write(odd.join("type"), "bundle\n").unwrap();
    let shot = s.join("shot");
    fs::create_dir(&shot).unwrap();
    fs::write(shot.join("type"), "oneshot\n").unwrap();
    let good = plain_service(&s, "good");
    scan.start();
    wait_until("good started", LONG, || has(&good, "started"));
    wait_until("the three reports", LONG, || {
        let err = scan.stderr();
        err.contains("\"bad\": needs/db: dangling symlink to /nonexistent/db")
            && err.contains("\"odd\": type: unknown type \"bundle\"")
            && err.contains("\"shot\": up: missing")
    });
    std::thread::sleep(Duration::from_millis(300));
    assert!(!has(&bad, "started") && !has(&odd, "started"));
    assert_eq!(scan.stderr().matches("needs/db: dangling").count(), 1);
    // Fixed: started.
    fs::remove_file(bad.join("needs/db")).unwrap();
    wait_until("bad started once fixed", LONG, || has(&bad, "started"));
    let _ = Instant::now();
}

#[test]
fn a_dependency_made_ready_by_its_check_run_by_supervise() {
    let mut scan = Scan::new();
    let s = scan.dir.clone();
    let db = s.join("db");
    script(
        &db.join("run"),
        "date +%s%N >> started\nsleep 0.3\ndate +%s%N >> ready\n: > ok\nexec sleep 1000",
    );
    script(&db.join("check"), "[ -e ok ]");
    let app = plain_service(&s, "app");
    dep(&app, "needs", "db");
    scan.start();
    wait_until("app started", LONG, || has(&app, "started"));
    assert!(first(&app, "started") >= first(&db, "ready"));
    let x = ServiceDir::new(&db).extended().unwrap();
    assert_eq!(x.ready_by.as_deref(), Some("check"));
    assert!(x.ready_at.is_some());
}

fn json_of(scan: &Scan, name: &str) -> serde_json::Value {
    let (code, out, err) = scan.svctl(&["status", "--json", name]);
    assert!(code.is_some(), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v[0].clone()
}

#[test]
fn svctl_status_says_what_a_held_service_waits_for() {
    let mut scan = Scan::new();
    let s = scan.dir.clone();
    let db = plain_service(&s, "db");
    fs::write(db.join("down"), "").unwrap();
    let app = plain_service(&s, "app");
    dep(&app, "needs", "db");
    dep(&app, "needs", "cache");
    dep(&app, "wants", "metrics");
    scan.start();
    // Held in its status, and announced: supervise opens `ok` only after its first status,
    // and svctl says "supervise not running" until then.
    wait_until("app held", LONG, || {
        let app = ServiceDir::new(&app);
        app.extended().is_some_and(|x| x.held) && app.liveness() == Ok(Liveness::Running)
    });
    let (_, out, _) = scan.svctl(&["status", "--short", "app"]);
    assert!(
        out.contains("waiting for cache (no such service), db (down)"),
        "{out}"
    );
    let v = json_of(&scan, "app");
    assert_eq!(v["held"], true);
    let waiting: Vec<(String, String)> = v["waiting"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            (
                w["name"].as_str().unwrap().into(),
                w["state"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        waiting,
        [
            ("cache".into(), "missing".into()),
            ("db".into(), "down".into())
        ]
    );
    assert_eq!(v["wants"][0]["name"], "metrics");
    assert_eq!(v["needs"].as_array().unwrap().len(), 2);
    // The long form lists the dependencies too.
    let (_, long, _) = scan.svctl(&["status", "app"]);
    assert!(
        long.contains("needs: cache (no such service), db (down)"),
        "{long}"
    );
}

#[test]
fn svctl_up_brings_up_what_a_service_needs_and_wants() {
    let mut scan = Scan::new();
    let s = scan.dir.clone();
    let db = timed_service(&s, "db", "0.2", "0");
    fs::write(db.join("down"), "").unwrap();
    let cache = plain_service(&s, "cache");
    fs::write(cache.join("down"), "").unwrap();
    let app = plain_service(&s, "app");
    fs::write(app.join("down"), "").unwrap();
    dep(&app, "needs", "db");
    dep(&db, "wants", "cache");
    scan.start();
    wait_until("app's supervisor", LONG, || {
        ServiceDir::new(&app).status().is_ok()
    });
    let (code, _, err) = scan.svctl(&["-w", "10", "up", "app"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(is_up(&app) && is_up(&db) && is_up(&cache));
    wait_until("app's run", LONG, || has(&app, "started"));
    assert!(first(&app, "started") >= first(&db, "ready"));
}

/// db (ready `db_ready_after` after its start) and app, which needs it and lingers 0.3 s
/// after TERM, both up and ready.
fn app_needing_db(scan: &mut Scan, db_ready_after: &str) -> (PathBuf, PathBuf) {
    let s = scan.dir.clone();
    let db = timed_service(&s, "db", db_ready_after, "0");
    let app = timed_service(&s, "app", "0", "0.3");
    dep(&app, "needs", "db");
    scan.start();
    wait_until("app ready", LONG, || has(&app, "ready"));
    (db, app)
}

/// `svctl -w 10 VERB db`, and app was told to stop first: db only once app had exited.
fn svctl_stops_app_before_db(scan: &Scan, verb: &str, db: &Path, app: &Path) {
    let (code, _, err) = scan.svctl(&["-w", "10", verb, "db"]);
    assert_eq!(code, Some(0), "{err}");
    let (a, d) = (first(app, "stopped"), first(db, "stopped"));
    assert!(
        d >= a + 250_000_000,
        "db told to stop {} ns after app",
        d as i128 - a as i128
    );
}

#[test]
fn svctl_down_stops_the_services_that_need_it_first_and_they_come_back_with_it() {
    let mut scan = Scan::new();
    let (db, app) = app_needing_db(&mut scan, "0");
    svctl_stops_app_before_db(&scan, "down", &db, &app);
    let x = ServiceDir::new(&app).extended().unwrap();
    assert!(x.held);
    assert_eq!(
        ServiceDir::new(&app).status().unwrap().want,
        warden_tests::warden::status::Want::Up
    );
    let (code, _, err) = scan.svctl(&["-w", "10", "up", "db"]);
    assert_eq!(code, Some(0), "{err}");
    wait_until("app back", LONG, || stamps(&app, "started").len() == 2);
}

#[test]
fn svctl_restart_stops_the_services_that_need_it_first_and_they_come_back_after_it() {
    let mut scan = Scan::new();
    let (db, app) = app_needing_db(&mut scan, "0.2");
    svctl_stops_app_before_db(&scan, "restart", &db, &app);
    wait_until("app back", LONG, || stamps(&app, "started").len() == 2);
    assert!(
        last(&app, "started") >= last(&db, "ready"),
        "app before db was ready"
    );
}

#[test]
fn svctl_w_up_ends_at_once_when_what_it_needs_fails_for_good() {
    let mut scan = Scan::new();
    let s = scan.dir.clone();
    let db = s.join("db");
    script(&db.join("run"), "date +%s%N >> started\nexit 1");
    fs::write(db.join("notification-fd"), "3\n").unwrap();
    fs::write(db.join("restart-limit"), "2 1m\n").unwrap();
    let app = plain_service(&s, "app");
    fs::write(app.join("down"), "").unwrap();
    dep(&app, "needs", "db");
    scan.start();
    let started = std::time::Instant::now();
    let (code, _, err) = scan.svctl(&["-w", "30", "up", "app"]);
    let took = started.elapsed();
    assert_eq!(code, Some(3), "{err}");
    assert!(took < Duration::from_secs(15), "waited {took:?}");
    assert!(err.contains("db will not be up: failed"), "{err}");
    assert!(
        err.contains("app will not be up: it needs db, which failed"),
        "{err}"
    );
    assert!(!has(&app, "started"));
}

#[test]
fn svctl_w_up_ends_at_once_for_a_service_held_by_a_cycle_or_a_bad_file() {
    let mut scan = Scan::new();
    let s = scan.dir.clone();
    let a = plain_service(&s, "a");
    let b = plain_service(&s, "b");
    dep(&a, "needs", "b");
    dep(&b, "after", "a");
    let bad = plain_service(&s, "bad");
    fs::create_dir(bad.join("needs")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/db", bad.join("needs/db")).unwrap();
    scan.start();
    for (name, why) in [
        ("a", "a will not be up: dependency cycle: a -> b -> a"),
        ("bad", "bad will not be up: needs/db: dangling symlink"),
    ] {
        let started = std::time::Instant::now();
        let (code, _, err) = scan.svctl(&["-w", "30", "up", name]);
        assert_eq!(code, Some(3), "{err}");
        assert!(started.elapsed() < Duration::from_secs(15), "{name}: {err}");
        assert!(err.contains(why), "{err}");
    }
}

#[test]
fn svctl_deps_prints_the_graph_under_a_service() {
    let mut scan = Scan::new();
    let s = scan.dir.clone();
    let web = plain_service(&s, "web");
    let app = plain_service(&s, "app");
    plain_service(&s, "db");
    dep(&web, "needs", "app");
    dep(&web, "wants", "metrics");
    dep(&app, "needs", "db");
    dep(&web, "after", "db");
    scan.start();
    // Its run may stamp `started` before supervise has published the run: wait for the status.
    wait_until("web up", LONG, || is_up(&web));
    let (code, out, err) = scan.svctl(&["deps", "web"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        out,
        "web: up, ready\n\
         ├─ needs app: up, ready\n\
         │  └─ needs db: up, ready\n\
         ├─ wants metrics: no such service\n\
         └─ after db: up, ready (see above)\n"
    );
}

#[test]
fn a_oneshot_that_is_up_reads_as_up_to_svctl_and_sv() {
    let mut scan = Scan::new();
    let s = scan.dir.clone();
    let setup = s.join("setup");
    fs::create_dir(&setup).unwrap();
    fs::write(setup.join("type"), "oneshot\n").unwrap();
    script(&setup.join("up"), "exit 0");
    scan.start();
    wait_until("setup up", LONG, || {
        ServiceDir::new(&setup)
            .extended()
            .is_some_and(|x| x.ready_at.is_some())
    });
    let (code, out, err) = scan.svctl(&["status", "--short", "setup"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.starts_with("setup: up (oneshot)"), "{out}");
    let (code, _, err) = scan.svctl(&["-w", "5", "up", "setup"]);
    assert_eq!(code, Some(0), "{err}");
    if warden_tests::have("sv") {
        let (code, out, _) = run(Command::new("sv").arg("status").arg(&setup), LONG);
        assert_eq!(code, Some(0));
        assert!(out.starts_with("run: "), "{out}");
    }
}
