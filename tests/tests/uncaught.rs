//! svscan's catch-all logger (`svscan -u DIR`, the default as PID 1): what services without a
//! `log/` write goes through one pipe svscan holds to a supervised `logger` in DIR, not to
//! svscan's stderr, and a logger killed with KILL loses none of it.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use warden_tests::{alive, bin, service, wait_until, Spawned};

const LONG: Duration = Duration::from_secs(20);

fn pid_in(dir: &Path) -> Option<i32> {
    std::fs::read_to_string(dir.join("supervise/pid"))
        .ok()
        .and_then(|p| p.trim().parse::<i32>().ok())
        .filter(|p| *p > 0)
}

/// Every line of a logger's directory, oldest first, without the TAI64N stamps.
fn logged(main: &Path) -> Vec<String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(main)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.retain(|p| {
        p.file_name()
            .map(|n| n.to_string_lossy())
            .is_some_and(|n| n == "current" || n.starts_with('@'))
    });
    // `@...` names sort by time, before `current`.
    files.sort_by_key(|p| p.file_name().map(|n| n.to_string_lossy() == "current"));
    let mut lines = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        for line in text.lines() {
            let body = line.split_once(' ').map_or(line, |(_, b)| b);
            lines.push(body.to_owned());
        }
    }
    lines
}

fn kill(pid: i32, sig: rustix::process::Signal) {
    if let Some(pid) = rustix::process::Pid::from_raw(pid) {
        let _ = rustix::process::kill_process(pid, sig);
    }
}

/// Ends whatever the test started that still runs under `root` (by cwd), pass or fail.
struct Cleanup<'a>(&'a Path);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        warden_tests::kill_under(self.0);
    }
}

#[test]
fn output_of_services_without_a_log_goes_to_the_catch_all_log_and_survives_its_kill() {
    let root = tempfile::tempdir().unwrap();
    let root_path = root.path().canonicalize().unwrap();
    let _cleanup = Cleanup(&root_path);
    let scandir = root_path.join("service");
    let uncaught = root_path.join("uncaught");
    std::fs::create_dir(&scandir).unwrap();
    // Numbered lines on stdout until TERM, then `last N` (N counts the lines written).
    service(
        &scandir,
        "counter",
        "i=0\ntrap 'echo last $i; exit 0' TERM\nwhile :; do echo $((i+1)); i=$((i+1)); \
         [ $((i % 20)) -eq 0 ] && sleep 0.01; done",
    );
    // stderr goes there too.
    service(
        &scandir,
        "complainer",
        "echo complaint-on-stderr >&2\nexec sleep 1000",
    );
    let stderr_path = root_path.join("svscan.stderr");
    let stderr = std::fs::File::create(&stderr_path).unwrap();
    let mut svscan = Spawned::new(
        Command::new(bin("svscan"))
            .arg("-u")
            .arg(&uncaught)
            .arg(&scandir)
            .stdin(Stdio::null())
            .stdout(stderr.try_clone().unwrap())
            .stderr(stderr),
    );

    let main = uncaught.join("main");
    wait_until("the services' lines in the catch-all log", LONG, || {
        let lines = logged(&main);
        lines.iter().any(|l| l == "complaint-on-stderr") && lines.iter().any(|l| l == "100")
    });
    // The logger is KILLed three times; svscan holds the pipe, the next logger reads on.
    let mut previous = None;
    for _ in 0..3 {
        let mut pid = None;
        wait_until("a new running catch-all logger", LONG, || {
            pid = pid_in(&uncaught).filter(|p| alive(*p) && Some(*p) != previous);
            pid.is_some()
        });
        let pid = pid.unwrap();
        // Past supervise's quick-death throttle, so the next logger starts at once.
        std::thread::sleep(Duration::from_millis(1100));
        kill(pid, rustix::process::Signal::KILL);
        wait_until("the catch-all logger to die", LONG, || !alive(pid));
        previous = Some(pid);
    }
    std::thread::sleep(Duration::from_millis(300));
    std::fs::OpenOptions::new()
        .write(true)
        .open(scandir.join(".svscan/control"))
        .unwrap()
        .write_all(b"t")
        .unwrap();
    let status = svscan.wait_exit(LONG);
    assert_eq!(status.code(), Some(0));

    // Drained at the teardown: the counter's last line is there, and no number is missing.
    let lines = logged(&main);
    let mut seen = BTreeMap::<u64, u32>::new();
    let mut last = None;
    for line in &lines {
        if let Some(n) = line.strip_prefix("last ") {
            last = n.parse::<u64>().ok();
        } else if let Ok(n) = line.parse::<u64>() {
            *seen.entry(n).or_default() += 1;
        }
    }
    let last = last.expect("the counter's last line reached the catch-all log");
    for n in 1..=last {
        assert!(seen.contains_key(&n), "line {n} of {last} lost");
    }
    assert!(lines.iter().any(|l| l == "complaint-on-stderr"));
    // None of it on svscan's own stderr.
    let own = std::fs::read_to_string(&stderr_path).unwrap();
    assert!(
        !own.contains("complaint-on-stderr") && !own.contains("last "),
        "services' lines on svscan's stderr:\n{own}"
    );
    assert!(
        !own.lines().any(|l| l.trim().parse::<u64>().is_ok()),
        "the counter's lines on svscan's stderr:\n{own}"
    );

    // `svctl log .uncaught` finds it through the scan directory.
    let out = Command::new(bin("svctl"))
        .args(["-d"])
        .arg(&scandir)
        .args(["log", ".uncaught", "-n", "100000"])
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(shown.contains("complaint-on-stderr"), "{shown}");
    assert!(shown.contains(&format!("last {last}")), "{shown}");
    println!("{last} lines through the catch-all log, 3 SIGKILLs of its logger, none lost");
}

#[test]
fn without_u_and_not_pid_1_services_without_a_log_write_where_svscan_does() {
    let root = tempfile::tempdir().unwrap();
    let root_path = root.path().canonicalize().unwrap();
    let _cleanup = Cleanup(&root_path);
    let scandir = root_path.join("service");
    std::fs::create_dir(&scandir).unwrap();
    service(
        &scandir,
        "talker",
        "echo plain-stderr-line >&2\nexec sleep 1000",
    );
    let stderr_path = root_path.join("svscan.stderr");
    let stderr = std::fs::File::create(&stderr_path).unwrap();
    let mut svscan = Spawned::new(
        Command::new(bin("svscan"))
            .arg(&scandir)
            .stdin(Stdio::null())
            .stdout(stderr.try_clone().unwrap())
            .stderr(stderr),
    );
    wait_until("the line on svscan's stderr", LONG, || {
        std::fs::read_to_string(&stderr_path).is_ok_and(|s| s.contains("plain-stderr-line"))
    });
    assert!(!scandir.join(".svscan/uncaught").exists());
    kill(svscan.pid(), rustix::process::Signal::TERM);
    assert_eq!(svscan.wait_exit(LONG).code(), Some(0));
}

#[test]
fn as_pid_1_the_catch_all_log_is_on_by_default_in_run_warden_uncaught() {
    let root = tempfile::tempdir().unwrap();
    let root_path = root.path().canonicalize().unwrap();
    let _cleanup = Cleanup(&root_path);
    let scandir = root_path.join("service");
    std::fs::create_dir(&scandir).unwrap();
    // svscan finds supervise and init next to its own executable; this init only records.
    let bindir = root_path.join("bin");
    std::fs::create_dir(&bindir).unwrap();
    std::fs::copy(bin("svscan"), bindir.join("svscan")).unwrap();
    std::os::unix::fs::symlink(bin("supervise"), bindir.join("supervise")).unwrap();
    let marker = root_path.join("stage3");
    warden_tests::script(
        &bindir.join("init"),
        &format!("echo \"$*\" > {}", marker.display()),
    );
    service(
        &scandir,
        "talker",
        "echo talker-line-$$ >&2\nexec sleep 1000",
    );
    let stderr_path = root_path.join("svscan.stderr");
    let stderr = std::fs::File::create(&stderr_path).unwrap();
    // A /run of its own (a tmpfs in the namespace's private mounts), then svscan as PID 1.
    let mut cmd = warden_tests::unshare_pid_and_mount();
    cmd.args([
        "sh",
        "-c",
        "mount -t tmpfs tmpfs /run && exec \"$0\" \"$1\"",
    ])
    .arg(bindir.join("svscan"))
    .arg(&scandir)
    .stdin(Stdio::null())
    .stdout(stderr.try_clone().unwrap())
    .stderr(stderr);
    let mut unshare = Spawned::new(&mut cmd);
    let mut init = None;
    wait_until("svscan as process 1", LONG, || {
        init = warden_tests::children_of(unshare.pid())
            .first()
            .map(|(pid, _)| *pid);
        init.is_some_and(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "svscan")
        })
    });
    let init = init.unwrap();
    // That namespace's /run, seen from here.
    let main = PathBuf::from(format!("/proc/{init}/root/run/warden/uncaught/main"));
    wait_until("the talker's line in /run/warden/uncaught", LONG, || {
        logged(&main).iter().any(|l| l.starts_with("talker-line-"))
    });
    assert_eq!(
        std::fs::read_link(scandir.join(".svscan/uncaught")).unwrap(),
        PathBuf::from("/run/warden/uncaught")
    );
    kill(init, rustix::process::Signal::TERM);
    wait_until("init --stage3", LONG, || marker.exists());
    assert_eq!(unshare.wait_exit(LONG).code(), Some(0));
    let own = std::fs::read_to_string(&stderr_path).unwrap();
    assert!(
        !own.contains("talker-line-"),
        "the talker's line on the console:\n{own}"
    );
}

#[test]
fn a_restarted_svscan_adopts_the_catch_all_logger_and_its_pipe() {
    let root = tempfile::tempdir().unwrap();
    let root_path = root.path().canonicalize().unwrap();
    let _cleanup = Cleanup(&root_path);
    let scandir = root_path.join("service");
    let uncaught = root_path.join("uncaught");
    std::fs::create_dir(&scandir).unwrap();
    service(
        &scandir,
        "counter",
        "i=0\ntrap 'echo last $i; exit 0' TERM\nwhile :; do echo $((i+1)); i=$((i+1)); \
         [ $((i % 20)) -eq 0 ] && sleep 0.01; done",
    );
    let stderr_path = root_path.join("svscan.stderr");
    let start = || {
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&stderr_path)
            .unwrap();
        Spawned::new(
            Command::new(bin("svscan"))
                .arg("-u")
                .arg(&uncaught)
                .arg(&scandir)
                .stdin(Stdio::null())
                .stdout(stderr.try_clone().unwrap())
                .stderr(stderr),
        )
    };
    let main = uncaught.join("main");
    let mut first = start();
    wait_until("the counter's lines", LONG, || {
        logged(&main).iter().any(|l| l == "100")
    });
    let supervisor = warden_tests::warden::svdir::ServiceDir::new(&uncaught)
        .extended()
        .and_then(|x| x.supervisor_pid)
        .expect("the catch-all supervisor's pid in supervise/warden") as i32;
    // svscan dies hard; the supervisors (process groups of their own) live on.
    kill(first.pid(), rustix::process::Signal::KILL);
    first.wait_exit(LONG);
    let mut second = start();
    std::thread::sleep(Duration::from_millis(500));
    let lines_now = logged(&main).len();
    wait_until(
        "more lines through the adopted catch-all logger",
        LONG,
        || logged(&main).len() > lines_now + 100,
    );
    // The same supervisor still runs: adopted, not replaced.
    assert!(
        alive(supervisor),
        "the catch-all supervisor was not adopted"
    );
    assert_eq!(
        warden_tests::warden::svdir::ServiceDir::new(&uncaught)
            .extended()
            .and_then(|x| x.supervisor_pid),
        Some(supervisor as u32)
    );
    std::fs::OpenOptions::new()
        .write(true)
        .open(scandir.join(".svscan/control"))
        .unwrap()
        .write_all(b"t")
        .unwrap();
    assert_eq!(second.wait_exit(LONG).code(), Some(0));
    // Told to exit by the new svscan, once drained: it was adopted.
    wait_until("the adopted catch-all supervisor to exit", LONG, || {
        !alive(supervisor)
    });
    let lines = logged(&main);
    let last = lines
        .iter()
        .find_map(|l| l.strip_prefix("last ").and_then(|n| n.parse::<u64>().ok()))
        .expect("the counter's last line reached the catch-all log");
    let seen: std::collections::BTreeSet<u64> =
        lines.iter().filter_map(|l| l.parse().ok()).collect();
    for n in 1..=last {
        assert!(seen.contains(&n), "line {n} of {last} lost");
    }
    let own = std::fs::read_to_string(&stderr_path).unwrap();
    assert!(!own.contains("unable to"), "{own}");
}
