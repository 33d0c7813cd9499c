//! `svctl status NAME` (or `-l`): one service at length, as `systemctl status` shows one
//! unit: the status line, then memory, CPU and tasks of its cgroup, its process tree, the
//! settings of its directory and the last lines of its log. [`Detail::gather`] reads;
//! [`render`] is a pure function of what was read.

use crate::procs::Proc;
use crate::report::{line, Entry, Style};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};
use warden::cgroupfs::Usage;
use warden::svdir::ServiceDir;

/// Log lines shown.
pub const LOG_LINES: u64 = 10;

/// The files of a service directory shown as its settings, in this order. Those warden's
/// supervise reads today, then the ones of issue 17 (limits, user, restart policy); a file
/// that is absent is left out.
pub const SETTING_FILES: &[&str] = &[
    warden::service::DOWN_SIGNAL,
    warden::service::TIMEOUT_KILL,
    warden::service::TIMEOUT_FINISH,
    warden::service::NOTIFICATION_FD,
    "user",
    "memory.max",
    "memory.high",
    "memory.swap.max",
    "pids.max",
    "cpu.max",
    "cpu.weight",
    "io.weight",
    "limits",
    "nice",
    "umask",
    "restart-limit",
];

/// The most of a settings file shown (they are one line or a few).
const SETTING_CAP: u64 = 4096;

/// One setting: its name, its value (lines joined by `, `) and what is worth knowing about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Setting {
    pub name: String,
    /// The value in force: as supervise recorded it at the last start, else the file's.
    pub value: String,
    /// What the next start will take instead.
    pub next: Next,
    /// Why supervise cannot use the file, where svctl can tell.
    pub error: Option<String>,
}

/// How the service directory's file stands against the value in force.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    /// Nothing known to differ.
    Same,
    /// The file says something else now (supervise recorded what it applied).
    Now(String),
    /// Supervise applied it, the file is gone since: the default applies at the next start.
    Removed,
    /// Not recorded by supervise, but written after the current run started.
    Changed,
}

/// The log directory and its last lines (local times), or why they could not be read.
#[derive(Debug)]
pub struct LogTail {
    pub dir: PathBuf,
    pub lines: Result<Vec<u8>, String>,
}

/// Everything shown besides the status line.
#[derive(Debug, Default)]
pub struct Detail {
    pub cgroup: Option<String>,
    pub usage: Option<Usage>,
    pub procs: Vec<Proc>,
    pub settings: Vec<Setting>,
    pub log: Option<LogTail>,
}

impl Detail {
    pub fn gather(entry: &Entry, dir: &ServiceDir) -> Detail {
        let snap = entry.state.as_ref().ok();
        let cgroup_dir = crate::commands::cgroup_dir(entry);
        let procs = match &cgroup_dir {
            Some(cg) => {
                crate::procs::read_all(&warden::cgroupfs::procs_below(cg).unwrap_or_default())
            }
            None => match snap.map(|s| s.status.pid).filter(|&p| p != 0) {
                Some(pid) => crate::procs::descendants(pid),
                None => Vec::new(),
            },
        };
        let started = snap
            .filter(|s| s.status.pid != 0)
            .map(|s| s.status.stamp.to_system_time());
        Detail {
            cgroup: cgroup_dir
                .as_ref()
                .and_then(|_| snap?.extended.as_ref()?.cgroup.clone()),
            usage: cgroup_dir.as_deref().map(Usage::read),
            procs,
            settings: settings(
                &dir.path,
                started,
                snap.and_then(|s| s.extended.as_ref())
                    .map_or(&[][..], |x| x.settings.as_slice()),
            ),
            log: log_dir(entry, dir).map(|dir| LogTail {
                lines: tail(&dir),
                dir,
            }),
        }
    }
}

/// The settings of the service in `dir`: those supervise recorded as applied at the last
/// start (`recorded`, from `supervise/warden`), held against the files as they are now; and
/// the files it does not record, marked when written after the run started (`started`).
pub fn settings(
    dir: &Path,
    started: Option<SystemTime>,
    recorded: &[(String, String)],
) -> Vec<Setting> {
    // Settings::read reads the files it knows whatever they are: only when each is a regular
    // file (or absent), so that a FIFO in their place cannot block svctl.
    let plain = [
        warden::service::DOWN_SIGNAL,
        warden::service::TIMEOUT_KILL,
        warden::service::TIMEOUT_FINISH,
        warden::service::NOTIFICATION_FD,
    ]
    .iter()
    .all(|name| std::fs::metadata(dir.join(name)).map_or(true, |m| m.is_file()));
    let errors = if plain {
        warden::service::Settings::read(dir).1
    } else {
        Vec::new()
    };
    let mut out = Vec::new();
    for name in SETTING_FILES {
        let path = dir.join(name);
        let file = setting_file(&path);
        let applied = recorded
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone());
        let (value, next) = match (file, applied) {
            (None, None) => continue,
            (None, Some(applied)) => (applied, Next::Removed),
            // supervise records values as it understood them (`restart-limit 2 60s` for a
            // file saying `2 1m`, `user www (uid 33 ...)`): the file's time tells whether it
            // changed since, its text only whether it says the same.
            (Some((now, modified)), Some(applied))
                if written_after(modified, started) && now != applied =>
            {
                (applied, Next::Now(now))
            }
            (Some(_), Some(applied)) => (applied, Next::Same),
            (Some((now, modified)), None) if written_after(modified, started) => {
                (now, Next::Changed)
            }
            (Some((now, _)), None) => (now, Next::Same),
        };
        out.push(Setting {
            name: (*name).to_owned(),
            value,
            next,
            error: errors
                .iter()
                .find(|e| e.file == path)
                .map(|e| e.cause.clone()),
        });
    }
    // Whatever else supervise recorded (a setting newer than this svctl).
    for (name, value) in recorded {
        if !SETTING_FILES.contains(&name.as_str()) {
            out.push(Setting {
                name: name.clone(),
                value: value.clone(),
                next: Next::Same,
                error: None,
            });
        }
    }
    out
}

/// Whether a file was written after the current run started (never for a service down).
fn written_after(modified: Option<SystemTime>, started: Option<SystemTime>) -> bool {
    matches!((modified, started), (Some(m), Some(s)) if m > s)
}

/// A settings file's non-empty lines, trimmed and joined by `, ` (as supervise records
/// them), and when it was last written; `None` unless it is a readable regular file.
fn setting_file(path: &Path) -> Option<(String, Option<SystemTime>)> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    // Non-blocking: a FIFO in its place must not block the open; it is then skipped.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)
        .ok()?;
    let meta = file.metadata().ok()?;
    if !meta.is_file() {
        return None;
    }
    let mut bytes = Vec::new();
    file.take(SETTING_CAP).read_to_end(&mut bytes).ok()?;
    let text = String::from_utf8_lossy(&bytes);
    let value = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(", ");
    Some((value, meta.modified().ok()))
}

/// Where the service's log lives: `log/main` (the default `log/run` is `logger ./main`),
/// else the directory of the `current` file the running logger holds open (svlogd's
/// `/var/log/NAME`, say), from /proc/PID/fd.
fn log_dir(entry: &Entry, dir: &ServiceDir) -> Option<PathBuf> {
    let main = dir.path.join(warden::service::LOG).join("main");
    if main.is_dir() {
        return Some(main);
    }
    let pid = entry.log.as_ref()?.state.as_ref().ok()?.status.pid;
    if pid == 0 {
        return None;
    }
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    fds.flatten().find_map(|fd| {
        let target = std::fs::read_link(fd.path()).ok()?;
        if target.file_name()? != "current" {
            return None;
        }
        target.parent().map(Path::to_owned)
    })
}

/// How long `logger --show` may take to print the last lines.
const TAIL_LIMIT: Duration = Duration::from_secs(5);

/// The last lines of the log in `dir`, by `logger --show -n N` (labels as local time),
/// bounded by [`TAIL_LIMIT`] (a `current` that is a FIFO would block it).
fn tail(dir: &Path) -> Result<Vec<u8>, String> {
    use std::process::{Command, Stdio};
    let logger = crate::logview::logger_program();
    let child = Command::new(&logger)
        .arg("--show")
        .arg("-n")
        .arg(LOG_LINES.to_string())
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("unable to run {}: {e}", logger.display()))?;
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(TAIL_LIMIT) {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => return Err(format!("unable to run {}: {e}", logger.display())),
        Err(_) => {
            // Still ours, not yet reaped (the thread waits on it): the pid cannot be reused.
            if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
            return Err(format!(
                "{} took more than {}",
                logger.display(),
                humantime::format_duration(TAIL_LIMIT)
            ));
        }
    };
    if out.status.success() {
        Ok(out.stdout)
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        Err(err.trim().to_owned())
    }
}

/// `1.5M`, as systemctl writes sizes (powers of 1024, one decimal below 10).
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "K", "M", "G", "T", "P"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    let suffix = UNITS.get(unit).copied().unwrap_or("B");
    if unit == 0 {
        format!("{bytes}{suffix}")
    } else if value < 10.0 {
        format!("{value:.1}{suffix}")
    } else {
        format!("{value:.0}{suffix}")
    }
}

/// Microseconds of CPU as humantime, to the millisecond (`1s 234ms`; `0s` below 1 ms).
fn cpu_time(usec: u64) -> String {
    let ms = Duration::from_millis(usec / 1000);
    humantime::format_duration(ms).to_string()
}

/// Width of the labels, right-aligned as in systemctl.
const LABEL: usize = 9;

/// The whole text, one line per fact, lines of several values continued under the first.
pub fn render(entry: &Entry, detail: &Detail, now: SystemTime, style: Style) -> String {
    let mut out = line(entry, now, style);
    out.push('\n');
    let mut put = |label: &str, lines: &[String]| {
        for (i, l) in lines.iter().enumerate() {
            let label = if i == 0 { label } else { "" };
            let sep = if i == 0 { ':' } else { ' ' };
            out.push_str(&format!("{label:>LABEL$}{sep} {l}\n"));
        }
    };
    put(
        "path",
        &[style.text(&entry.path.to_string_lossy()).into_owned()],
    );
    if let Some(view) = &entry.deps {
        use warden::deps::Edge;
        for (label, edge) in [
            ("needs", Edge::Needs),
            ("wants", Edge::Wants),
            ("after", Edge::After),
        ] {
            let items: Vec<String> = (view.deps.iter())
                .filter(|d| d.edge == edge)
                .map(|d| format!("{} ({})", d.name, d.state.words()))
                .collect();
            if !items.is_empty() {
                put(label, &[style.text(&items.join(", ")).into_owned()]);
            }
        }
        if let Some(problem) = &view.problem {
            put("problem", &[style.text(&problem.to_string()).into_owned()]);
        }
        if let Some(cycle) = &view.cycle {
            put("cycle", &[style.text(&cycle.join(" -> ")).into_owned()]);
        }
    }
    let running = entry.state.as_ref().is_ok_and(|s| s.status.pid != 0);
    if let Some(u) = detail.usage.as_ref().filter(|_| running) {
        let rss: Option<u64> = detail
            .procs
            .iter()
            .filter_map(|p| p.rss)
            .reduce(u64::saturating_add);
        match (u.memory_current, u.memory_peak) {
            (Some(now), Some(peak)) => {
                put("memory", &[format!("{} (peak {})", size(now), size(peak))])
            }
            (Some(now), None) => put("memory", &[size(now)]),
            // Hybrid hosts have the memory controller in cgroup v1, not in the service's
            // cgroup: the processes' resident memory is the nearest figure.
            (None, _) => {
                if let Some(rss) = rss {
                    put(
                        "memory",
                        &[format!(
                            "{} (resident, of its processes; the cgroup has no memory controller)",
                            size(rss)
                        )],
                    );
                }
            }
        }
        if let Some(usec) = u.cpu_usec {
            let split = match (u.cpu_user_usec, u.cpu_system_usec) {
                (Some(user), Some(system)) => {
                    format!(" (user {}, system {})", cpu_time(user), cpu_time(system))
                }
                _ => String::new(),
            };
            put("cpu", &[format!("{}{split}", cpu_time(usec))]);
        }
        if let Some(tasks) = u.tasks {
            put("tasks", &[tasks.to_string()]);
        }
    } else if running && !detail.procs.is_empty() {
        // No cgroup (runsv, or no cgroup2): what /proc tells of the run's descendants.
        if let Some(rss) = detail
            .procs
            .iter()
            .filter_map(|p| p.rss)
            .reduce(u64::saturating_add)
        {
            put(
                "memory",
                &[format!("{} (resident, of its processes)", size(rss))],
            );
        }
        put("tasks", &[format!("{} (processes)", detail.procs.len())]);
    }
    if let Some(cgroup) = detail.cgroup.as_ref().filter(|_| running) {
        put("cgroup", &[style.text(cgroup).into_owned()]);
    }
    if !detail.procs.is_empty() {
        let lines: Vec<String> = crate::procs::tree(&detail.procs)
            .into_iter()
            .map(|(prefix, p)| format!("{prefix}{} {}", p.pid, style.text(&p.command)))
            .collect();
        put("processes", &lines);
    }
    let settings: Vec<String> = if detail.settings.is_empty() {
        vec!["none (defaults)".into()]
    } else {
        detail
            .settings
            .iter()
            .map(|s| {
                let mut l = format!("{} {}", s.name, style.text(&s.value));
                if let Some(e) = &s.error {
                    l.push_str(&format!(
                        " (unusable: {}; the default applies)",
                        style.text(e)
                    ));
                }
                match &s.next {
                    Next::Same => {}
                    Next::Now(v) => l.push_str(&format!(
                        " (the file now says {}: applies at the next start)",
                        style.text(v)
                    )),
                    Next::Removed => {
                        l.push_str(" (the file is gone: the default applies at the next start)")
                    }
                    Next::Changed => {
                        l.push_str(" (changed since this run started: applies at the next start)")
                    }
                }
                l
            })
            .collect()
    };
    put("settings", &settings);
    if let Some(log) = &detail.log {
        let mut lines = vec![style.text(&log.dir.to_string_lossy()).into_owned()];
        match &log.lines {
            Ok(bytes) => {
                let text = String::from_utf8_lossy(bytes);
                lines.extend(text.lines().map(|l| style.text(l).into_owned()));
            }
            Err(e) => lines.push(format!("(unreadable: {})", style.text(e))),
        }
        put("log", &lines);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::goal::Snapshot;
    use std::time::UNIX_EPOCH;
    use warden::status::{Extended, RunState, Status, Want};
    use warden::Tai64N;

    fn web() -> Entry {
        Entry {
            name: "web".into(),
            path: "/etc/service/web".into(),
            normally_down: false,
            state: Ok(Snapshot {
                status: Status {
                    stamp: Tai64N::from_system_time(UNIX_EPOCH + Duration::from_secs(1000)),
                    pid: 10,
                    paused: false,
                    want: Want::Up,
                    term_sent: false,
                    state: RunState::Run,
                },
                extended: Some(Extended::default()),
                notifies: false,
            }),
            log: None,
            deps: None,
        }
    }

    fn proc(pid: u32, ppid: u32, command: &str) -> Proc {
        Proc {
            pid,
            ppid,
            command: command.into(),
            rss: Some(1 << 20),
        }
    }

    #[test]
    fn sizes_as_systemctl() {
        assert_eq!(size(512), "512B");
        assert_eq!(size(1536), "1.5K");
        assert_eq!(size(64 << 20), "64M");
        assert_eq!(size(3 << 30), "3.0G");
    }

    #[test]
    fn the_whole_text() {
        let detail = Detail {
            cgroup: Some("/warden:etc:service:web@1:2".into()),
            usage: Some(Usage {
                memory_current: Some(3 << 20),
                memory_peak: Some(5 << 20),
                cpu_usec: Some(1_234_567),
                cpu_user_usec: Some(1_000_000),
                cpu_system_usec: Some(234_567),
                tasks: Some(3),
            }),
            procs: vec![
                proc(12, 10, "sleep 2"),
                proc(10, 1, "/bin/sh ./run"),
                proc(11, 10, "sleep\x1b 1"),
            ],
            settings: vec![
                Setting {
                    name: "down-signal".into(),
                    value: "HUP".into(),
                    next: Next::Changed,
                    error: None,
                },
                Setting {
                    name: "memory.max".into(),
                    value: "64M".into(),
                    next: Next::Now("128M".into()),
                    error: None,
                },
                Setting {
                    name: "user".into(),
                    value: "www".into(),
                    next: Next::Removed,
                    error: None,
                },
            ],
            log: Some(LogTail {
                dir: "/etc/service/web/log/main".into(),
                lines: Ok(b"2026-12-04 21:00:00.000000001 hello\n".to_vec()),
            }),
        };
        let style = Style {
            terminal: true,
            colour: false,
        };
        let text = render(
            &web(),
            &detail,
            UNIX_EPOCH + Duration::from_secs(1005),
            style,
        );
        assert_eq!(
            text,
            "web: up (pid 10) 5s, normally up, restarts 0
     path: /etc/service/web
   memory: 3.0M (peak 5.0M)
      cpu: 1s 234ms (user 1s, system 234ms)
    tasks: 3
   cgroup: /warden:etc:service:web@1:2
processes: 10 /bin/sh ./run
           ├─11 sleep\\x1b 1
           └─12 sleep 2
 settings: down-signal HUP (changed since this run started: applies at the next start)
           memory.max 64M (the file now says 128M: applies at the next start)
           user www (the file is gone: the default applies at the next start)
      log: /etc/service/web/log/main
           2026-12-04 21:00:00.000000001 hello
"
        );
    }

    #[test]
    fn without_memory_controller_the_resident_sum() {
        let detail = Detail {
            usage: Some(Usage {
                tasks: Some(2),
                ..Usage::default()
            }),
            procs: vec![proc(10, 1, "a"), proc(11, 10, "b")],
            ..Detail::default()
        };
        let text = render(
            &web(),
            &detail,
            UNIX_EPOCH + Duration::from_secs(1005),
            Style::PLAIN,
        );
        assert!(text.contains("   memory: 2.0M (resident, of its processes; the cgroup has no memory controller)\n"), "{text}");
        assert!(text.contains(" settings: none (defaults)\n"), "{text}");
    }

    #[test]
    fn settings_files_with_their_errors_and_changes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("down-signal"), "BOGUS\n").unwrap();
        std::fs::write(dir.path().join("limits"), "nofile 4096\n\ncore unlimited\n").unwrap();
        std::fs::create_dir(dir.path().join("user")).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            dir.path().join("umask"),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let long_ago = UNIX_EPOCH + Duration::from_secs(1);
        let got = settings(dir.path(), Some(long_ago), &[]);
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0].name, "down-signal");
        assert!(
            got[0].error.as_deref().is_some_and(|e| e.contains("BOGUS")),
            "{got:?}"
        );
        assert_eq!(got[0].next, Next::Changed);
        assert_eq!(got[1].value, "nofile 4096, core unlimited");
        assert_eq!(settings(dir.path(), None, &[])[1].next, Next::Same);

        // What supervise recorded at the start is in force; the files say what comes next.
        std::fs::write(dir.path().join("nice"), "5\n").unwrap();
        let recorded = [
            (
                "limits".to_owned(),
                "nofile 4096, core unlimited".to_owned(),
            ),
            ("nice".to_owned(), "10".to_owned()),
            ("memory.max".to_owned(), "64M".to_owned()),
            ("future.knob".to_owned(), "on".to_owned()),
        ];
        let got = settings(dir.path(), Some(long_ago), &recorded);
        let shown: Vec<(&str, &str, &Next)> = got
            .iter()
            .map(|s| (s.name.as_str(), s.value.as_str(), &s.next))
            .collect();
        assert_eq!(
            shown,
            [
                ("down-signal", "BOGUS", &Next::Changed),
                ("memory.max", "64M", &Next::Removed),
                ("limits", "nofile 4096, core unlimited", &Next::Same),
                ("nice", "10", &Next::Now("5".into())),
                ("future.knob", "on", &Next::Same),
            ]
        );
        // Written before the run started: in force as recorded, however supervise spelt it.
        let later = SystemTime::now() + Duration::from_secs(3600);
        let recorded = [(
            "limits".to_owned(),
            "nofile 4096, core unlimited (hard)".to_owned(),
        )];
        let got = settings(dir.path(), Some(later), &recorded);
        assert_eq!(got[1].value, "nofile 4096, core unlimited (hard)");
        assert_eq!(got[1].next, Next::Same);
    }
}
