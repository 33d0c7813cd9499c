//! `svctl status NAME` at length and `svctl metrics` (issue 17, "status at a glance"), on a
//! real tree: warden's svscan runs a service whose `run` starts two sleeps, and its logger.
//! Every figure is checked against what /proc and the cgroup say of those processes.

use std::fs;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use warden_tests::{bin, children_of, require, run, script, service, wait_until, Spawned};

const RUN_LIMIT: Duration = Duration::from_secs(30);
const SETTLE: Duration = Duration::from_secs(20);

/// svscan on a scan dir, told to shut down on drop and then given time to do so.
struct Svscan(Spawned, PathBuf);

impl Drop for Svscan {
    fn drop(&mut self) {
        if let Ok(Some(_)) = self.0.child.try_wait() {
            return;
        }
        let _ = fs::OpenOptions::new()
            .write(true)
            .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
            .open(self.1.join(".svscan/control"))
            .and_then(|mut fifo| std::io::Write::write_all(&mut fifo, b"t"));
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        warden_tests::remove_cgroups_under(&self.1, Duration::from_secs(2));
    }
}

fn svctl_env(scan: &Path, env: &[(&str, &str)], args: &[&str]) -> (Option<i32>, String, String) {
    let mut cmd = Command::new(bin("svctl"));
    cmd.env_remove("NO_COLOR").arg("-d").arg(scan).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    run(&mut cmd, RUN_LIMIT)
}

fn svctl(scan: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    svctl_env(scan, &[], args)
}

fn json(scan: &Path, name: &str) -> serde_json::Value {
    let (_, out, _) = svctl(scan, &["status", "--json", name]);
    serde_json::from_str::<serde_json::Value>(&out)
        .map_or(serde_json::Value::Null, |v| v[0].clone())
}

/// `app`: twelve numbered log lines, then two sleeps as children of its shell; settings files
/// beside it; `log/run` runs warden's logger. `idle` is normally down. `quick` reports ready.
fn tree(s: &Path) -> (Svscan, u32) {
    let app = service(
        s,
        "app",
        "for i in 01 02 03 04 05 06 07 08 09 10 11 12; do echo \"line $i of app\"; done\n\
         sleep 1001 &\nsleep 1002 &\nwait",
    );
    fs::write(app.join("down-signal"), "HUP\n").unwrap();
    fs::write(app.join("timeout-kill"), "3s\n").unwrap();
    script(
        &app.join("log/run"),
        &format!("exec {} ./main", bin("logger").display()),
    );
    let idle = service(s, "idle", "exec sleep 1000");
    fs::write(idle.join("down"), "").unwrap();
    let quick = service(s, "quick", "echo >&3\nexec sleep 1000");
    fs::write(quick.join("notification-fd"), "3\n").unwrap();
    let out = fs::File::create(s.join(".svscan.out")).unwrap();
    let svscan = Svscan(
        Spawned::new(
            Command::new(bin("svscan"))
                .arg(s)
                .stdin(Stdio::null())
                .stdout(out.try_clone().unwrap())
                .stderr(out),
        ),
        s.to_owned(),
    );
    let mut pid = 0;
    wait_until("app, its two sleeps and its logger", SETTLE, || {
        let v = json(s, "app");
        pid = v["pid"].as_u64().unwrap_or(0) as u32;
        v["log"]["state"] == "up"
            && pid != 0
            && children_of(pid as i32)
                .iter()
                .filter(|(_, state)| *state != 'Z')
                .count()
                == 2
    });
    wait_until("app's last line in its log", SETTLE, || {
        svctl(s, &["log", "app", "-n", "1"])
            .1
            .contains("line 12 of app")
    });
    wait_until("quick to be ready", SETTLE, || {
        json(s, "quick")["ready"] == true
    });
    (svscan, pid)
}

/// The values of a label: its line (`   memory: 3.0M`) and the continuation lines under it.
fn section(out: &str, label: &str) -> Vec<String> {
    let mut lines = out.lines().skip(1);
    let head = format!("{label}: ");
    let mut values = Vec::new();
    for line in lines.by_ref() {
        if let Some(v) = line.trim_start().strip_prefix(&head) {
            values.push(v.to_owned());
            break;
        }
    }
    if values.is_empty() {
        return values;
    }
    for line in lines {
        if !line.starts_with("          ") {
            break;
        }
        values.push(line.trim_start().to_owned());
    }
    values
}

/// `3.0M` and the like, back to bytes (approximately).
fn bytes(text: &str) -> u64 {
    let word = text.split(' ').next().unwrap_or_default();
    let (number, unit) = word.split_at(word.len() - 1);
    let scale: u64 = match unit {
        "B" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        other => panic!("unit {other:?} in {text:?}"),
    };
    (number.parse::<f64>().unwrap() * scale as f64) as u64
}

#[test]
fn status_of_one_service_shows_its_tree_figures_settings_and_log() {
    let scan = tempfile::tempdir().unwrap();
    let s = scan.path();
    let (_svscan, pid) = tree(s);
    let (code, out, err) = svctl(s, &["status", "app"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.starts_with(&format!("app: up (pid {pid}) ")), "{out}");
    assert!(!out.contains('\x1b'), "no colour into a pipe: {out:?}");

    // The tree: the shell, and under it each sleep with its pid and command line.
    let sleeps = children_of(pid as i32);
    let procs = section(&out, "processes");
    assert_eq!(procs.len(), 3, "{out}");
    assert!(
        procs[0].starts_with(&format!("{pid} ")) && procs[0].contains("./run"),
        "{out}"
    );
    for (child, _) in &sleeps {
        let cmdline = fs::read(format!("/proc/{child}/cmdline")).unwrap();
        let cmdline = String::from_utf8_lossy(&cmdline)
            .trim_end_matches('\0')
            .replace('\0', " ");
        assert!(cmdline.starts_with("sleep 100"), "{cmdline}");
        assert!(
            procs[1..]
                .iter()
                .any(|l| l.ends_with(&format!("─{child} {cmdline}"))),
            "{child} {cmdline} missing from the tree, indented under {pid}: {out}"
        );
    }
    assert!(
        procs[1].starts_with("├─") && procs[2].starts_with("└─"),
        "{out}"
    );

    // Tasks: one per process (each is single-threaded).
    let tasks = section(&out, "tasks");
    assert_eq!(tasks.len(), 1, "{out}");
    assert_eq!(tasks[0].split(' ').next(), Some("3"), "{out}");
    // Memory: the cgroup's memory.current, or the processes' resident memory where the
    // cgroup has no memory controller; either way a shell and two sleeps are a few MiB.
    let memory = section(&out, "memory");
    assert_eq!(memory.len(), 1, "{out}");
    let used = bytes(&memory[0]);
    assert!(
        (100 << 10..512 << 20).contains(&used),
        "memory {used}: {out}"
    );
    if warden_tests::own_cgroup_dir().is_some() {
        let cpu = section(&out, "cpu");
        assert_eq!(cpu.len(), 1, "{out}");
        assert!(cpu[0].contains("(user "), "{out}");
        assert_eq!(section(&out, "cgroup").len(), 1, "{out}");
    }

    // Settings: the files present, as written.
    let settings = section(&out, "settings");
    assert_eq!(settings, ["down-signal HUP", "timeout-kill 3s"], "{out}");

    // The log: its directory, then the last 10 lines with local times.
    let log = section(&out, "log");
    assert_eq!(log.len(), 11, "{out}");
    assert_eq!(log[0], s.join("app/log/main").to_string_lossy(), "{out}");
    for (line, n) in log[1..].iter().zip(3..) {
        assert!(line.ends_with(&format!(" line {n:02} of app")), "{out}");
        let stamp = line.split(' ').take(2).collect::<Vec<_>>().join(" ");
        // 2026-12-04 21:00:00.123456789
        let shape: String = stamp
            .chars()
            .map(|c| if c.is_ascii_digit() { '9' } else { c })
            .collect();
        assert_eq!(shape, "9999-99-99 99:99:99.999999999", "{line}");
    }
    // Local time: the zone of TZ decides the hour shown.
    let hour = |tz: &str| -> u32 {
        let (_, out, _) = svctl_env(s, &[("TZ", tz)], &["status", "app"]);
        let line = section(&out, "log").pop().unwrap();
        line[11..13].parse().unwrap()
    };
    assert_eq!((hour("UTC0") + 9) % 24, hour("JST-9"));

    // Several services: one line each, unless -l.
    let (code, out, _) = svctl(s, &["status", "app", "idle"]);
    assert_eq!(code, Some(3), "idle is down: {out}");
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(
        out.lines().nth(1).unwrap().starts_with("idle: down "),
        "{out}"
    );
    let (_, out, _) = svctl(s, &["status", "-l", "app", "idle"]);
    assert!(out.contains("\n\nidle: down "), "{out}");
    assert_eq!(out.matches(" settings: ").count(), 2, "{out}");
    let (_, out, _) = svctl(s, &["status", "--short", "app"]);
    assert_eq!(out.lines().count(), 1, "{out}");
}

/// `script` runs svctl on a pseudo-terminal; its output is what the terminal got.
fn on_a_terminal(scan: &Path, no_color: Option<&str>, args: &str) -> String {
    require("script", "util-linux");
    let mut cmd = Command::new("script");
    cmd.args(["-q", "-e", "-c"])
        .arg(format!(
            "{} -d '{}' {args}",
            bin("svctl").display(),
            scan.display()
        ))
        .arg("/dev/null")
        .stdin(Stdio::null())
        .env_remove("NO_COLOR");
    if let Some(v) = no_color {
        cmd.env("NO_COLOR", v);
    }
    let (_, out, _) = run(&mut cmd, RUN_LIMIT);
    out
}

#[test]
fn status_is_coloured_on_a_terminal_only_and_not_with_no_color() {
    let scan = tempfile::tempdir().unwrap();
    let s = scan.path();
    let (_svscan, pid) = tree(s);
    let out = on_a_terminal(s, None, "status app");
    assert!(
        out.starts_with(&format!("app: \x1b[32mup\x1b[0m (pid {pid}) ")),
        "green up on a terminal: {out:?}"
    );
    assert!(out.contains("processes: "), "{out:?}");
    // NO_COLOR set to the empty string does not count (no-color.org).
    let out = on_a_terminal(s, Some(""), "status app idle");
    assert!(out.contains("app: \x1b[32mup\x1b[0m"), "{out:?}");
    assert!(
        out.contains("idle: down "),
        "down as wanted: no colour: {out:?}"
    );
    let out = on_a_terminal(s, Some("1"), "status app");
    assert!(out.starts_with(&format!("app: up (pid {pid}) ")), "{out:?}");
    assert!(!out.contains('\x1b'), "NO_COLOR: {out:?}");
    let (_, out, _) = svctl(s, &["status", "app", "idle"]);
    assert!(!out.contains('\x1b'), "a pipe: {out:?}");
}

#[test]
fn metrics_of_a_live_tree_pass_promtool() {
    require("promtool", "prometheus");
    let scan = tempfile::tempdir().unwrap();
    let s = scan.path();
    let (_svscan, _) = tree(s);
    // One restart, so there is a last exit: the down-signal HUP ends the shell.
    let (code, _, err) = svctl(s, &["-w", "10", "restart", "app"]);
    assert_eq!(code, Some(0), "{err}");
    wait_until("app's last exit", SETTLE, || {
        json(s, "app")["last_exit"]["signal"] == "HUP"
    });
    let (code, text, err) = svctl(s, &["metrics"]);
    assert_eq!(code, Some(0), "{err}");
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut promtool.stdin.take().unwrap(), text.as_bytes()).unwrap();
    let checked = promtool.wait_with_output().unwrap();
    assert!(
        checked.status.success(),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    let value = |metric: &str| -> f64 {
        let line = text
            .lines()
            .find(|l| l.starts_with(metric) && l[metric.len()..].starts_with(' '))
            .unwrap_or_else(|| panic!("{metric} missing:\n{text}"));
        line[metric.len() + 1..].parse().unwrap()
    };
    assert_eq!(
        value("warden_service_state{service=\"app\",state=\"up\"}"),
        1.0
    );
    assert_eq!(
        value("warden_service_state{service=\"idle\",state=\"down\"}"),
        1.0
    );
    assert_eq!(
        value("warden_service_state{service=\"idle\",state=\"up\"}"),
        0.0
    );
    assert_eq!(value("warden_service_up{service=\"app/log\"}"), 1.0);
    assert!(value("warden_service_state_seconds{service=\"app\"}") >= 0.0);
    assert_eq!(value("warden_service_restarts_total{service=\"app\"}"), 1.0);
    assert_eq!(
        value("warden_service_last_exit_signal{service=\"app\"}"),
        1.0
    );
    assert_eq!(value("warden_service_ready{service=\"quick\"}"), 1.0);
    if warden_tests::own_cgroup_dir().is_some() {
        wait_until("app's new run and its two sleeps", SETTLE, || {
            let pid = json(s, "app")["pid"].as_u64().unwrap_or(0) as i32;
            pid != 0 && children_of(pid).iter().filter(|(_, st)| *st != 'Z').count() == 2
        });
        let (_, text, _) = svctl(s, &["metrics", "app"]);
        let value = |metric: &str| -> f64 {
            let line = text
                .lines()
                .find(|l| l.starts_with(metric) && l[metric.len()..].starts_with(' '))
                .unwrap_or_else(|| panic!("{metric} missing:\n{text}"));
            line[metric.len() + 1..].parse().unwrap()
        };
        assert_eq!(value("warden_service_tasks{service=\"app\"}"), 3.0);
        assert!(value("warden_service_cpu_seconds_total{service=\"app\"}") >= 0.0);
        let memory = text
            .lines()
            .find(|l| {
                l.starts_with("warden_service_memory_bytes{service=\"app\"}")
                    || l.starts_with("warden_service_memory_rss_bytes{service=\"app\"}")
            })
            .unwrap_or_else(|| panic!("no memory figure:\n{text}"));
        let bytes: f64 = memory.rsplit(' ').next().unwrap().parse().unwrap();
        assert!((100_000.0..512e6).contains(&bytes), "{memory}");
    }
}

/// restart-limit reached (supervise's `failed 1`): the state reads `failed`, red on a
/// terminal, with the last exit; the long form shows the settings supervise recorded as
/// applied at the start, and what a file changed since will bring at the next start.
#[test]
fn a_failed_service_and_the_settings_in_force() {
    let scan = tempfile::tempdir().unwrap();
    let s = scan.path();
    let crashy = service(s, "crashy", "exit 3");
    fs::write(crashy.join("restart-limit"), "2 1m\n").unwrap();
    let nicer = service(s, "nicer", "exec sleep 1000");
    fs::write(nicer.join("nice"), "5\n").unwrap();
    let out = fs::File::create(s.join(".svscan.out")).unwrap();
    let _svscan = Svscan(
        Spawned::new(
            Command::new(bin("svscan"))
                .arg(s)
                .stdin(Stdio::null())
                .stdout(out.try_clone().unwrap())
                .stderr(out),
        ),
        s.to_owned(),
    );
    wait_until("crashy to fail and nicer to run", SETTLE, || {
        json(s, "crashy")["state"] == "failed" && json(s, "nicer")["state"] == "up"
    });

    let (code, out, _) = svctl(s, &["status", "crashy"]);
    assert_eq!(code, Some(3), "failed is not running: {out}");
    let first = out.lines().next().unwrap_or_default();
    assert!(first.starts_with("crashy: failed "), "{out}");
    assert!(first.contains(", last exit 3"), "{out}");
    assert!(first.contains("restart-limit"), "{out}");
    let settings = section(&out, "settings");
    assert_eq!(settings.len(), 1, "{out}");
    assert!(settings[0].starts_with("restart-limit 2 "), "{out}");
    assert!(!settings[0].contains("applies at the next start"), "{out}");
    let out = on_a_terminal(s, None, "status crashy");
    assert!(
        out.starts_with("crashy: \x1b[31mfailed\x1b[0m "),
        "red: {out:?}"
    );
    let (_, text, _) = svctl(s, &["metrics", "crashy"]);
    assert!(
        text.contains("warden_service_state{service=\"crashy\",state=\"failed\"} 1\n")
            && text.contains("warden_service_state{service=\"crashy\",state=\"down\"} 0\n")
            && text.contains("warden_service_last_exit_code{service=\"crashy\"} 3\n")
            && text.contains("warden_service_last_exit_oom{service=\"crashy\"} 0\n"),
        "{text}"
    );

    // nice 5 is in force (the kernel says so); the file says 7 from the next start on.
    let pid = json(s, "nicer")["pid"].as_u64().unwrap();
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let nice = stat
        .rsplit_once(") ")
        .unwrap()
        .1
        .split(' ')
        .nth(16)
        .unwrap()
        .to_owned();
    assert_eq!(nice, "5", "{stat}");
    let (_, out, _) = svctl(s, &["status", "nicer"]);
    assert_eq!(section(&out, "settings"), ["nice 5"], "{out}");
    fs::write(nicer.join("nice"), "7\n").unwrap();
    let (_, out, _) = svctl(s, &["status", "nicer"]);
    assert_eq!(
        section(&out, "settings"),
        ["nice 5 (the file now says 7: applies at the next start)"],
        "{out}"
    );
}

/// Under runit's runsv there is no cgroup record: the long form finds the run's descendants
/// by their parent pids in /proc, and counts them.
#[test]
fn status_at_length_under_runsv_walks_proc() {
    require("runsv", "runit");
    let scan = tempfile::tempdir().unwrap();
    let s = scan.path();
    let dir = service(s, "app", "sleep 1001 &\nsleep 1002 &\nwait");
    let _kill = KillIn(dir.canonicalize().unwrap());
    let out = fs::File::create(s.join("runsv.out")).unwrap();
    let mut runsv = Spawned::new(
        Command::new("runsv")
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out),
    );
    let mut pid = 0;
    wait_until("app and its two sleeps under runsv", SETTLE, || {
        pid = json(s, "app")["pid"].as_u64().unwrap_or(0) as u32;
        // Both children exec'd: one caught between fork and exec still shows as `[run]`.
        pid != 0
            && children_of(pid as i32)
                .iter()
                .filter(|(child, st)| {
                    *st != 'Z'
                        && fs::read(format!("/proc/{child}/cmdline"))
                            .is_ok_and(|c| c.starts_with(b"sleep\0"))
                })
                .count()
                == 2
    });
    let (code, text, err) = svctl(s, &["status", "app"]);
    assert_eq!(code, Some(0), "{err}");
    let procs = section(&text, "processes");
    assert_eq!(procs.len(), 3, "{text}");
    assert!(procs[0].starts_with(&format!("{pid} ")), "{text}");
    for (child, _) in children_of(pid as i32) {
        assert!(
            procs
                .iter()
                .any(|l| l.contains(&format!("─{child} sleep 100"))),
            "{text}"
        );
    }
    assert_eq!(section(&text, "tasks"), ["3 (processes)"], "{text}");
    assert!(section(&text, "cgroup").is_empty(), "{text}");
    let svc = warden_tests::warden::svdir::ServiceDir::new(&dir);
    let _ = svc.send(b"dx");
    let _ = runsv.wait_exit(SETTLE);
}

/// Kills, when dropped, every process whose working directory is the service dir: runsv
/// stops only the shell, and its sleeps would outlive the test, pass or fail.
struct KillIn(PathBuf);

impl Drop for KillIn {
    fn drop(&mut self) {
        for pid in warden_tests::processes_under(&self.0) {
            if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
    }
}
