//! svscan as process 1 never just dies (issue 13): a panic (injected with
//! `WARDEN_TEST_PANIC=svscan`, honoured by debug builds only) goes to the last resort, which
//! execs `SCANDIR/.svscan/crash` as process 1, with the supervisors still running, or, in a
//! container without one, exits 111 with a message: never an abort.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;
use warden_tests::warden::status::RunState;
use warden_tests::warden::svdir::{Liveness, ServiceDir};
use warden_tests::{bin, script, service, wait_until, Spawned};

const LONG: Duration = Duration::from_secs(20);

/// Removes, when the test ends, the cgroups of the supervisors under `0` that were killed
/// with the namespace (a supervisor KILLed cannot remove its own).
struct CgroupSweep(std::path::PathBuf);

impl Drop for CgroupSweep {
    fn drop(&mut self) {
        warden_tests::remove_cgroups_under(&self.0, Duration::from_secs(5));
    }
}

/// `unshare ... svscan -U DIR` with the panic injected right after svscan's first scan.
fn panicking_svscan(scan: &Path, out: &Path) -> Command {
    let log = std::fs::File::create(out).unwrap();
    let mut cmd = warden_tests::unshare_pid_and_mount();
    cmd.arg("--kill-child")
        .arg(bin("svscan"))
        .arg("-U")
        .arg(scan)
        .env("WARDEN_TEST_PANIC", "svscan")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    cmd
}

#[test]
fn a_panic_of_svscan_as_process_1_execs_the_crash_program_and_the_services_go_on() {
    let root = tempfile::tempdir().unwrap();
    let _sweep = CgroupSweep(root.path().to_path_buf());
    let scan = root.path().join("service");
    let started = root.path().join("started");
    service(
        &scan,
        "steady",
        &format!("echo $$ > {}\nexec sleep 1000", started.display()),
    );
    let record = root.path().join("crashed");
    script(
        &scan.join(".svscan/crash"),
        &format!(
            "echo \"pid=$$ reason=$WARDEN_CRASH_REASON\" > {r}.new\nmv {r}.new {r}\nexec sleep 1000",
            r = record.display()
        ),
    );
    let out = root.path().join("out");
    let mut unshare = Spawned::new(&mut panicking_svscan(&scan, &out));
    wait_until("the crash program to run", LONG, || record.exists());
    let said = std::fs::read_to_string(&out).unwrap_or_default();
    let text = std::fs::read_to_string(&record).unwrap();
    assert!(text.starts_with("pid=1 "), "not process 1: {text}");
    assert!(
        text.contains("svscan panicked") && text.contains("WARDEN_TEST_PANIC=svscan"),
        "{text}"
    );
    assert!(said.contains("svscan: fatal: internal error"), "{said}");
    // Process 1 lives on (as the crash program), and so does the service svscan started.
    assert!(unshare.child.try_wait().unwrap().is_none(), "{said}");
    wait_until("the service to have started", LONG, || started.exists());
    let sv = ServiceDir::new(scan.join("steady"));
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(sv.liveness(), Ok(Liveness::Running), "its supervisor died");
    assert!(
        sv.status()
            .is_ok_and(|s| s.state == RunState::Run && s.pid != 0),
        "the service did not go on"
    );
}

#[test]
fn without_a_crash_program_svscan_as_process_1_of_a_container_exits_111_never_aborts() {
    let root = tempfile::tempdir().unwrap();
    let _sweep = CgroupSweep(root.path().to_path_buf());
    let scan = root.path().join("service");
    std::fs::create_dir(&scan).unwrap();
    let out = root.path().join("out");
    let mut unshare = Spawned::new(&mut panicking_svscan(&scan, &out));
    let status = unshare.wait_exit(LONG);
    let said = std::fs::read_to_string(&out).unwrap_or_default();
    assert_eq!(status.code(), Some(111), "{said}");
    assert!(said.contains("svscan: fatal: internal error"), "{said}");
    assert!(
        said.contains("exiting (process 1 of a container)"),
        "{said}"
    );
}
