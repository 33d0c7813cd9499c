//! `container-exit` (issue 12, "svscan in a container"): `init -- svscan DIR` as process 1 of a
//! fresh PID namespace ends when its main service ends, with that service's status, after an
//! orderly teardown in which every other service is stopped and every logger drained.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;
use warden_tests::{bin, service, wait_until, Spawned};

const LONG: Duration = Duration::from_secs(30);

/// Removes, when the test ends, the cgroups of the supervisors under `0` that were killed
/// with the namespace (a supervisor KILLed cannot remove its own).
struct CgroupSweep(std::path::PathBuf);

impl Drop for CgroupSweep {
    fn drop(&mut self) {
        warden_tests::remove_cgroups_under(&self.0, Duration::from_secs(5));
    }
}

/// `unshare ... init -- svscan -g 5s DIR`, its output to `out` (svscan's and init's messages).
fn init_svscan(dir: &Path, out: &Path) -> Spawned {
    let log = std::fs::File::create(out).unwrap();
    let mut cmd = warden_tests::unshare_pid_and_mount();
    // A test that fails leaves no namespace behind: its process 1 dies with unshare.
    cmd.arg("--kill-child")
        .arg(bin("init"))
        .args(["--"])
        .arg(bin("svscan"))
        .args(["-g", "5s"])
        .arg(dir)
        .env("WARDEN_GRACE", "2s")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    Spawned::new(&mut cmd)
}

/// The numbers of the lines `word N` in a logger's `current`, in order.
fn numbered(current: &Path, word: &str) -> Vec<u64> {
    let text = std::fs::read_to_string(current).unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let (_, rest) = line.split_once(&format!("{word} "))?;
            rest.trim().parse().ok()
        })
        .collect()
}

/// A service that writes `other N` lines until TERM, then a last `other stopped` line.
fn chatty_other(scan: &Path) {
    let other = service(
        scan,
        "other",
        "trap 'echo other stopped; exit 0' TERM\n\
         i=0\n\
         while :; do i=$((i+1)); echo \"other $i\"; sleep 0.01; done",
    );
    std::fs::create_dir(other.join("log")).unwrap();
}

fn assert_orderly(scan: &Path, out: &Path) {
    // The other service was stopped (its TERM trap ran) and its logger drained to the end.
    let current = scan.join("other/log/main/current");
    let text = std::fs::read_to_string(&current).unwrap_or_default();
    assert!(
        text.lines()
            .last()
            .is_some_and(|l| l.ends_with("other stopped")),
        "the other service's last line is not its TERM line:\n{}\n--- output:\n{}",
        text.lines().rev().take(3).collect::<Vec<_>>().join("\n"),
        std::fs::read_to_string(out).unwrap_or_default()
    );
    let others = numbered(&current, "other");
    assert!(!others.is_empty());
    let expected: Vec<u64> = (1..=others.len() as u64).collect();
    assert_eq!(others, expected, "the other service's log lost lines");
    let said = std::fs::read_to_string(out).unwrap_or_default();
    assert!(
        !said.contains("did not stop in time"),
        "the teardown needed KILL:\n{said}"
    );
}

#[test]
fn a_container_exit_service_ends_init_svscan_with_its_code_after_an_orderly_teardown() {
    let root = tempfile::tempdir().unwrap();
    let _sweep = CgroupSweep(root.path().to_path_buf());
    let scan = root.path().join("service");
    std::fs::create_dir(&scan).unwrap();
    // The main service: 3000 numbered lines through its logger, then exit 3, whatever
    // supervise would do next (`always`).
    let main = service(
        &scan,
        "main",
        "sleep 0.5\n\
         i=0\n\
         while [ $i -lt 3000 ]; do i=$((i+1)); echo \"main $i\"; done\n\
         exit 3",
    );
    std::fs::create_dir(main.join("log")).unwrap();
    std::fs::write(main.join("container-exit"), "always\n").unwrap();
    chatty_other(&scan);
    let out = root.path().join("out");
    let mut init = init_svscan(&scan, &out);
    let status = init.wait_exit(LONG);
    let said = std::fs::read_to_string(&out).unwrap_or_default();
    assert_eq!(status.code(), Some(3), "init's status; output:\n{said}");
    assert!(
        said.contains(
            "\"main\" has container-exit and ended (status 3): tearing down, then exiting 3"
        ),
        "{said}"
    );
    let mains = numbered(&scan.join("main/log/main/current"), "main");
    let expected: Vec<u64> = (1..=3000).collect();
    assert_eq!(
        mains, expected,
        "the main service's log lost lines:\n{said}"
    );
    assert_orderly(&scan, &out);
}

#[test]
fn killed_by_a_signal_is_128_plus_n_and_a_restarted_exit_does_not_end_it() {
    let root = tempfile::tempdir().unwrap();
    let _sweep = CgroupSweep(root.path().to_path_buf());
    let scan = root.path().join("service");
    std::fs::create_dir(&scan).unwrap();
    // Empty container-exit: only an end supervise will not restart counts. The first run
    // exits 5 and is restarted (the container goes on); the second asks for `once` (want
    // down) and is killed by USR1 after its lines: 128 + 10.
    let main = service(
        &scan,
        "main",
        "n=$(cat ../runs 2>/dev/null || echo 0); n=$((n+1)); echo $n > ../runs\n\
         sleep 0.3\n\
         if [ $n -eq 1 ]; then echo 'main first'; exit 5; fi\n\
         printf o > supervise/control\n\
         i=0\n\
         while [ $i -lt 2000 ]; do i=$((i+1)); echo \"main $i\"; done\n\
         kill -USR1 $$",
    );
    std::fs::create_dir(main.join("log")).unwrap();
    std::fs::write(main.join("container-exit"), "").unwrap();
    chatty_other(&scan);
    let out = root.path().join("out");
    let mut init = init_svscan(&scan, &out);
    let status = init.wait_exit(LONG);
    let said = std::fs::read_to_string(&out).unwrap_or_default();
    assert_eq!(status.code(), Some(138), "init's status; output:\n{said}");
    assert_eq!(
        std::fs::read_to_string(scan.join("runs")).unwrap().trim(),
        "2",
        "the first exit (restarted) ended the container:\n{said}"
    );
    let mains = numbered(&scan.join("main/log/main/current"), "main");
    let expected: Vec<u64> = (1..=2000).collect();
    assert_eq!(
        mains, expected,
        "the main service's log lost lines:\n{said}"
    );
    assert_orderly(&scan, &out);
}

#[test]
fn without_container_exit_a_service_ending_leaves_svscan_running() {
    // The same service without the file: svscan keeps supervising (the end of `once` is an
    // ordinary down service), until it is told to stop.
    let root = tempfile::tempdir().unwrap();
    let _sweep = CgroupSweep(root.path().to_path_buf());
    let scan = root.path().join("service");
    std::fs::create_dir(&scan).unwrap();
    service(
        &scan,
        "main",
        "printf o > supervise/control\necho done > ../ran\nexit 4",
    );
    let out = root.path().join("out");
    let log = std::fs::File::create(&out).unwrap();
    let mut svscan = Spawned::new(
        Command::new(bin("svscan"))
            .arg(&scan)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log),
    );
    wait_until("main to run", LONG, || scan.join("ran").exists());
    let sv = warden_tests::warden::svdir::ServiceDir::new(scan.join("main"));
    wait_until("main to be down", LONG, || {
        sv.extended().is_some_and(|x| x.last_exit.is_some())
            && sv
                .status()
                .is_ok_and(|s| s.state == warden_tests::warden::status::RunState::Down)
    });
    std::thread::sleep(Duration::from_millis(300));
    assert!(svscan.child.try_wait().unwrap().is_none(), "svscan ended");
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(svscan.pid()).unwrap(),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    assert_eq!(svscan.wait_exit(LONG).code(), Some(0));
}

#[test]
fn as_process_1_after_stage_1_the_container_ends_through_stage_3_with_the_code() {
    // `docker run IMAGE /sbin/init`: init's stage 1 execs svscan as process 1; the main
    // service's end goes through `init --stage3 halt`, which in a container exits with it.
    let root = tempfile::tempdir().unwrap();
    let _sweep = CgroupSweep(root.path().to_path_buf());
    let scan = root.path().join("service");
    std::fs::create_dir(&scan).unwrap();
    let main = service(
        &scan,
        "main",
        "sleep 0.5\n\
         i=0\n\
         while [ $i -lt 1000 ]; do i=$((i+1)); echo \"main $i\"; done\n\
         exit 7",
    );
    std::fs::create_dir(main.join("log")).unwrap();
    std::fs::write(main.join("container-exit"), "always").unwrap();
    chatty_other(&scan);
    let out = root.path().join("out");
    let log = std::fs::File::create(&out).unwrap();
    let mut cmd = warden_tests::unshare_pid_and_mount();
    cmd.arg("--kill-child")
        .arg(bin("init"))
        .env("WARDEN_SCANDIR", &scan)
        .env("WARDEN_GRACE", "2s")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    let mut init = Spawned::new(&mut cmd);
    let status = init.wait_exit(LONG);
    let said = std::fs::read_to_string(&out).unwrap_or_default();
    assert_eq!(status.code(), Some(7), "init's status; output:\n{said}");
    assert!(said.contains("init: stage 3: halt"), "{said}");
    let mains = numbered(&scan.join("main/log/main/current"), "main");
    let expected: Vec<u64> = (1..=1000).collect();
    assert_eq!(
        mains, expected,
        "the main service's log lost lines:\n{said}"
    );
    assert_orderly(&scan, &out);
}
