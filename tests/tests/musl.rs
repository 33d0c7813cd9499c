//! The programs built for musl (`x86_64-unknown-linux-musl`, as on Alpine) take their
//! command line. supervise, logger and init have a C `main`; std fills `std::env::args` from
//! glibc's `.init_array` call, which musl does not make, so those three once saw no
//! arguments at all there: supervise and logger stopped at their usage, and `init -- CMD`
//! took itself for stage 1. `.ci/run` installs the target (`rustup target add`).

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use warden_tests::{alive, run, service, wait_until, Spawned};

const TARGET: &str = "x86_64-unknown-linux-musl";
const WAIT: Duration = Duration::from_secs(20);

/// Builds the five programs for musl in `target/musl` and returns their directory.
fn musl_bins() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let target_dir = exe.ancestors().nth(3).unwrap().join("musl");
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let (code, _, err) = run(
        Command::new(cargo)
            .current_dir(workspace)
            .env("CARGO_TARGET_DIR", &target_dir)
            .args(["build", "--quiet", "--locked", "--workspace", "--bins"])
            .args(["--target", TARGET]),
        Duration::from_secs(1200),
    );
    assert_eq!(
        code,
        Some(0),
        "cargo build --target {TARGET} failed (the target comes with \
         `rustup target add {TARGET}`, which .ci/run does): {err}"
    );
    target_dir.join(TARGET).join("debug")
}

/// Ends what the test started under its temp dir, pass or fail (svscan is stopped first by
/// the test itself; a failed test leaves its supervisor and service to this).
struct Cleanup<'a>(&'a Path);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        warden_tests::kill_under(self.0);
    }
}

/// Whether the musl target is installed.
fn have_musl_target() -> bool {
    Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .is_ok_and(|out| {
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .any(|l| l == TARGET)
        })
}

#[test]
fn the_musl_programs_take_their_arguments() {
    // Only .ci/run sets this, when Rust's download server could not be reached.
    if std::env::var_os("WARDEN_SKIP_MUSL").is_some() && !have_musl_target() {
        eprintln!("SKIPPED: the {TARGET} target is not installed and could not be (.ci/run)");
        return;
    }
    let bins = musl_bins();

    let (code, out, err) = run(Command::new(bins.join("supervise")).arg("--help"), WAIT);
    assert_eq!(code, Some(0), "supervise --help: {out}{err}");
    assert!(out.starts_with("usage: supervise"), "{out}");

    let (code, out, err) = run(
        Command::new(bins.join("init")).args([
            "--",
            "sh",
            "-c",
            "echo \"$0 $1\"; exit 7",
            "a",
            "b",
        ]),
        WAIT,
    );
    assert_eq!(code, Some(7), "init -- CMD: {out}{err}");
    assert_eq!(out, "a b\n");

    let tmp = tempfile::tempdir().unwrap();
    let _cleanup = Cleanup(tmp.path());
    let logdir = tmp.path().join("log");
    let mut logger = Command::new(bins.join("logger"))
        .arg(&logdir)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write as _;
        let mut stdin = logger.stdin.take().unwrap();
        stdin.write_all(b"hello from musl\n").unwrap();
    }
    let mut logger = Spawned { child: logger };
    assert!(logger.wait_exit(WAIT).success());
    let current = std::fs::read_to_string(logdir.join("current")).unwrap();
    assert!(current.ends_with(" hello from musl\n"), "{current}");

    // svscan starts the musl supervise next to it, which runs the service.
    let scan = tmp.path().join("service");
    let started = tmp.path().join("started");
    service(
        &scan,
        "a",
        &format!("echo \"$PWD\" > {}\nexec sleep 1000", started.display()),
    );
    let mut svscan = Spawned::new(
        Command::new(bins.join("svscan"))
            .arg(&scan)
            .stdin(Stdio::null())
            .process_group(0),
    );
    wait_until("the service started by the musl supervise", WAIT, || {
        std::fs::read_to_string(&started)
            .is_ok_and(|s| s.trim() == scan.join("a").to_str().unwrap())
    });
    let service_pid: i32 = std::fs::read_to_string(scan.join("a/supervise/pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let pid = rustix::process::Pid::from_raw(svscan.pid()).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    assert!(svscan.wait_exit(WAIT).success());
    assert!(!alive(service_pid), "svscan left the service running");
}
