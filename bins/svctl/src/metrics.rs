//! `svctl metrics`: every service in the Prometheus text exposition format, for
//! node_exporter's textfile collector (`svctl metrics > DIR/warden.prom.$$ && mv ...`).
//! Rendering is pure: entries and their cgroup figures in, text out.

use crate::report::Entry;
use std::fmt::Write;
use std::time::SystemTime;
use warden::cgroupfs::Usage;
use warden::status::Exit;

/// One service's facts: its status entry and, where its cgroup could be read, the figures.
pub struct Sample<'a> {
    pub entry: &'a Entry,
    pub usage: Option<Usage>,
    /// The resident memory of the service's processes, summed: read only where the cgroup
    /// has no `memory.current` (no memory controller there, as on hybrid cgroup hosts).
    pub rss: Option<u64>,
}

struct Family {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    value: fn(&Sample, SystemTime) -> Option<f64>,
}

const FAMILIES: &[Family] = &[
    Family {
        name: "warden_service_supervised",
        kind: "gauge",
        help: "1 when a supervisor serves the service directory, else 0.",
        value: |s, _| Some(f64::from(u8::from(s.entry.state.is_ok()))),
    },
    Family {
        name: "warden_service_up",
        kind: "gauge",
        help: "1 when the service's run process runs, else 0.",
        value: |s, _| Some(f64::from(u8::from(s.entry.is_up()))),
    },
    Family {
        name: "warden_service_want_up",
        kind: "gauge",
        help: "1 when the supervisor is asked to keep the service up, else 0.",
        value: |s, _| {
            let snap = s.entry.state.as_ref().ok()?;
            Some(f64::from(u8::from(
                snap.status.want == warden::status::Want::Up,
            )))
        },
    },
    Family {
        name: "warden_service_ready",
        kind: "gauge",
        help: "1 when the current run reported readiness, 0 when not; absent when unknown.",
        value: |s, _| {
            let ready = s.entry.state.as_ref().ok()?.ready()?;
            Some(f64::from(u8::from(ready)))
        },
    },
    Family {
        name: "warden_service_state_seconds",
        kind: "gauge",
        help: "Seconds since the service entered its current state (up: its uptime).",
        value: |s, now| {
            let snap = s.entry.state.as_ref().ok()?;
            let since = snap.status.stamp.to_system_time();
            Some(now.duration_since(since).unwrap_or_default().as_secs_f64())
        },
    },
    Family {
        name: "warden_service_restarts_total",
        kind: "counter",
        help: "Runs started by this supervisor after the first.",
        value: |s, _| {
            let x = s.entry.state.as_ref().ok()?.extended.as_ref()?;
            Some(x.restarts as f64)
        },
    },
    Family {
        name: "warden_service_last_exit_code",
        kind: "gauge",
        help: "Exit code of the last run that exited normally; absent if it was killed.",
        value: |s, _| match last_exit(s)? {
            Exit::Code(c) => Some(f64::from(c)),
            Exit::Signal(_) => None,
        },
    },
    Family {
        name: "warden_service_last_exit_signal",
        kind: "gauge",
        help: "Signal number that killed the last run; 0 if it exited normally.",
        value: |s, _| match last_exit(s)? {
            Exit::Code(_) => Some(0.0),
            Exit::Signal(n) => Some(f64::from(n)),
        },
    },
    Family {
        name: "warden_service_last_exit_oom",
        kind: "gauge",
        help: "1 when the OOM killer ended the last run (its cgroup's memory.events oom_kill), else 0.",
        value: |s, _| {
            let x = s.entry.state.as_ref().ok()?.extended.as_ref()?;
            x.last_exit?;
            Some(f64::from(u8::from(x.last_exit_oom.is_some())))
        },
    },
    Family {
        name: "warden_service_memory_bytes",
        kind: "gauge",
        help: "Memory of the service's cgroup (memory.current).",
        value: |s, _| s.usage.as_ref()?.memory_current.map(|v| v as f64),
    },
    Family {
        name: "warden_service_memory_peak_bytes",
        kind: "gauge",
        help: "Peak memory of the service's cgroup (memory.peak).",
        value: |s, _| s.usage.as_ref()?.memory_peak.map(|v| v as f64),
    },
    Family {
        name: "warden_service_memory_rss_bytes",
        kind: "gauge",
        help: "Resident memory of the service's processes, summed; only where the cgroup has no memory controller.",
        value: |s, _| s.rss.map(|v| v as f64),
    },
    Family {
        name: "warden_service_cpu_seconds_total",
        kind: "counter",
        help: "CPU time used by the service's cgroup (cpu.stat usage_usec).",
        value: |s, _| s.usage.as_ref()?.cpu_usec.map(|v| v as f64 / 1e6),
    },
    Family {
        name: "warden_service_tasks",
        kind: "gauge",
        help: "Tasks in the service's cgroup (pids.current, else its threads, cgroups below included).",
        value: |s, _| s.usage.as_ref()?.tasks.map(|v| v as f64),
    },
];

fn last_exit(s: &Sample) -> Option<Exit> {
    s.entry.state.as_ref().ok()?.extended.as_ref()?.last_exit
}

/// A label value as the exposition format wants it: `\`, `"` and newline escaped.
pub fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// The states of `warden_service_state`, one sample each per service (1 for the one it is in).
/// `failed`: down because restart-limit was reached.
const STATES: &[&str] = &["up", "down", "finishing", "failed"];

fn state_name(s: &Sample) -> Option<&'static str> {
    Some(crate::report::state_word(s.entry.state.as_ref().ok()?))
}

/// The whole exposition: each family's HELP and TYPE once, then its samples, families apart.
pub fn render(samples: &[Sample], now: SystemTime) -> String {
    let mut out = String::new();
    let supervised: Vec<(&str, &str)> = samples
        .iter()
        .filter_map(|s| Some((s.entry.name.as_str(), state_name(s)?)))
        .collect();
    if !supervised.is_empty() {
        let _ = writeln!(
            out,
            "# HELP warden_service_state 1 for the state the service is in (up, down, finishing, failed: restart-limit reached), 0 for the others."
        );
        let _ = writeln!(out, "# TYPE warden_service_state gauge");
        for (name, current) in supervised {
            for state in STATES {
                let _ = writeln!(
                    out,
                    "warden_service_state{{service=\"{}\",state=\"{state}\"}} {}",
                    escape(name),
                    u8::from(*state == current)
                );
            }
        }
    }
    for family in FAMILIES {
        let values: Vec<(&str, f64)> = samples
            .iter()
            .filter_map(|s| Some((s.entry.name.as_str(), (family.value)(s, now)?)))
            .collect();
        if values.is_empty() {
            continue;
        }
        let _ = writeln!(out, "# HELP {} {}", family.name, family.help);
        let _ = writeln!(out, "# TYPE {} {}", family.name, family.kind);
        for (name, value) in values {
            let _ = writeln!(
                out,
                "{}{{service=\"{}\"}} {value}",
                family.name,
                escape(name)
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::goal::Snapshot;
    use std::path::PathBuf;
    use std::time::{Duration, UNIX_EPOCH};
    use warden::status::{Extended, RunState, Status, Want};
    use warden::svdir::ClientError;
    use warden::Tai64N;

    fn up(name: &str) -> Entry {
        Entry {
            name: name.into(),
            path: PathBuf::from("/s").join(name),
            normally_down: false,
            state: Ok(Snapshot {
                status: Status {
                    stamp: Tai64N::from_system_time(UNIX_EPOCH + Duration::from_secs(100)),
                    pid: 42,
                    paused: false,
                    want: Want::Up,
                    term_sent: false,
                    state: RunState::Run,
                },
                extended: Some(Extended {
                    restarts: 3,
                    last_exit: Some(Exit::Signal(9)),
                    ..Extended::default()
                }),
                notifies: false,
            }),
            log: None,
            deps: None,
        }
    }

    #[test]
    fn failed_and_oom() {
        let mut web = up("web");
        if let Ok(snap) = &mut web.state {
            snap.status.pid = 0;
            snap.status.state = RunState::Down;
            snap.status.want = Want::Down;
            snap.extended = Some(Extended {
                last_exit: Some(Exit::Signal(9)),
                last_exit_oom: Some("memory.max 64M".into()),
                failed: true,
                ..Extended::default()
            });
        }
        let samples = [Sample {
            entry: &web,
            usage: None,
            rss: None,
        }];
        let text = render(&samples, UNIX_EPOCH + Duration::from_secs(110));
        assert!(text.contains("warden_service_state{service=\"web\",state=\"failed\"} 1\n"));
        assert!(text.contains("warden_service_state{service=\"web\",state=\"down\"} 0\n"));
        assert!(text.contains("warden_service_last_exit_oom{service=\"web\"} 1\n"));
    }

    #[test]
    fn families_values_and_escaping() {
        let web = up("we\"b\\\n");
        let gone = Entry {
            state: Err(ClientError::NotSupervised("/s/x".into())),
            ..up("x")
        };
        let usage = Usage {
            memory_current: Some(4096),
            cpu_usec: Some(1_500_000),
            tasks: Some(2),
            ..Usage::default()
        };
        let samples = [
            Sample {
                entry: &web,
                usage: Some(usage),
                rss: Some(8192),
            },
            Sample {
                entry: &gone,
                usage: None,
                rss: None,
            },
        ];
        let text = render(&samples, UNIX_EPOCH + Duration::from_secs(110));
        assert!(text.contains("warden_service_up{service=\"we\\\"b\\\\\\n\"} 1\n"));
        assert!(text.contains("warden_service_supervised{service=\"x\"} 0\n"));
        assert!(text.contains("warden_service_up{service=\"x\"} 0\n"));
        assert!(!text.contains("warden_service_restarts_total{service=\"x\"}"));
        assert!(text.contains("warden_service_state_seconds{service=\"we\\\"b\\\\\\n\"} 10\n"));
        assert!(text.contains("warden_service_restarts_total{service=\"we\\\"b\\\\\\n\"} 3\n"));
        assert!(text.contains("warden_service_last_exit_signal{service=\"we\\\"b\\\\\\n\"} 9\n"));
        assert!(!text.contains("warden_service_last_exit_code{"));
        assert!(!text.contains("memory_peak"));
        assert!(text.contains("warden_service_cpu_seconds_total{service=\"we\\\"b\\\\\\n\"} 1.5\n"));
        assert_eq!(text.matches("# TYPE warden_service_up gauge").count(), 1);
        assert!(text.contains("warden_service_state{service=\"we\\\"b\\\\\\n\",state=\"up\"} 1\n"));
        assert!(
            text.contains("warden_service_state{service=\"we\\\"b\\\\\\n\",state=\"down\"} 0\n")
        );
        assert!(!text.contains("warden_service_state{service=\"x\""));
        assert!(text.contains("warden_service_last_exit_oom{service=\"we\\\"b\\\\\\n\"} 0\n"));
        assert!(
            text.contains("warden_service_state{service=\"we\\\"b\\\\\\n\",state=\"failed\"} 0\n")
        );
        assert!(text.contains("warden_service_memory_rss_bytes{service=\"we\\\"b\\\\\\n\"} 8192\n"));
        assert!(text.contains("warden_service_tasks{service=\"we\\\"b\\\\\\n\"} 2\n"));
    }
}
