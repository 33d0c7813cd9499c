//! The `supervise/status` record (runit's 20 bytes, daemontools reads the first 18), the `stat`
//! and `pid` text files, and warden's own extended status file for what runit's format cannot hold.

use crate::tai::Tai64N;
use std::fmt;

/// Size of runit's status record.
pub const STATUS_LEN: usize = 20;
/// Size of daemontools' status record (runit's first 18 bytes).
pub const DAEMONTOOLS_STATUS_LEN: usize = 18;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunState {
    Down,
    Run,
    Finish,
}

/// What the supervisor is asked to do with the service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Want {
    Up,
    Down,
    /// Stop the service, then the supervisor exits. On disk it reads as `d`, as in runit.
    Exit,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status {
    /// When the current run started, or when the service went down.
    pub stamp: Tai64N,
    /// Pid of `run` (or of `finish` while it runs); 0 when nothing runs.
    pub pid: u32,
    pub paused: bool,
    pub want: Want,
    /// TERM (or the down-signal) was sent and the process has not exited yet.
    pub term_sent: bool,
    pub state: RunState,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusError {
    /// Fewer bytes than daemontools' 18: a torn or foreign file.
    Truncated(usize),
    BadTimestamp,
    BadState(u8),
}

impl fmt::Display for StatusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StatusError::Truncated(n) => write!(f, "status record truncated ({n} bytes)"),
            StatusError::BadTimestamp => f.write_str("status record has a bad timestamp"),
            StatusError::BadState(b) => write!(f, "status record has unknown state {b}"),
        }
    }
}

impl std::error::Error for StatusError {}

impl Status {
    pub fn encode(&self) -> [u8; STATUS_LEN] {
        let mut out = [0u8; STATUS_LEN];
        out[..12].copy_from_slice(&self.stamp.to_bytes());
        out[12..16].copy_from_slice(&self.pid.to_le_bytes());
        out[16] = u8::from(self.paused);
        out[17] = if self.want == Want::Up { b'u' } else { b'd' };
        out[18] = u8::from(self.term_sent);
        out[19] = match self.state {
            RunState::Down => 0,
            RunState::Run => 1,
            RunState::Finish => 2,
        };
        out
    }

    /// Decodes runit's 20 bytes, or daemontools' 18 (state then follows from the pid).
    pub fn decode(bytes: &[u8]) -> Result<Status, StatusError> {
        if bytes.len() < DAEMONTOOLS_STATUS_LEN {
            return Err(StatusError::Truncated(bytes.len()));
        }
        let stamp = Tai64N::from_bytes(&bytes[..12]).ok_or(StatusError::BadTimestamp)?;
        let pid = u32::from_le_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]);
        let (term_sent, state) = if bytes.len() >= STATUS_LEN {
            let state = match bytes[19] {
                0 => RunState::Down,
                1 => RunState::Run,
                2 => RunState::Finish,
                other => return Err(StatusError::BadState(other)),
            };
            (bytes[18] != 0, state)
        } else if pid != 0 {
            (false, RunState::Run)
        } else {
            (false, RunState::Down)
        };
        Ok(Status {
            stamp,
            pid,
            paused: bytes[16] != 0,
            want: if bytes[17] == b'u' {
                Want::Up
            } else {
                Want::Down
            },
            term_sent,
            state,
        })
    }

    /// The one line of runit's `supervise/stat`, with its newline.
    pub fn stat_text(&self) -> String {
        let mut s = String::from(match self.state {
            RunState::Down => "down",
            RunState::Run => "run",
            RunState::Finish => "finish",
        });
        if self.paused {
            s.push_str(", paused");
        }
        if self.term_sent {
            s.push_str(", got TERM");
        }
        if self.state != RunState::Down {
            match self.want {
                Want::Up => {}
                Want::Down => s.push_str(", want down"),
                Want::Exit => s.push_str(", want exit"),
            }
        }
        s.push('\n');
        s
    }

    /// runit's `supervise/pid`: the pid and a newline, or empty.
    pub fn pid_text(&self) -> String {
        if self.pid == 0 {
            String::new()
        } else {
            format!("{}\n", self.pid)
        }
    }
}

/// How a process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

impl Exit {
    /// The two arguments of `./finish`, as runit passes them: exit code or -1, signal or 0.
    pub fn finish_args(self) -> (i32, i32) {
        match self {
            Exit::Code(c) => (c, 0),
            Exit::Signal(s) => (-1, s),
        }
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exit::Code(c) => write!(f, "exit {c}"),
            Exit::Signal(s) => match crate::signal::name(*s) {
                Some(name) => write!(f, "signal {name}"),
                None => write!(f, "signal {s}"),
            },
        }
    }
}

/// Name of warden's extended status file inside `supervise/`.
pub const EXTENDED_FILE: &str = "warden";

/// What runit's record cannot hold, kept in `supervise/warden` as `key value` lines so that
/// people and scripts can read it; unknown keys are skipped so later versions can add some.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Extended {
    /// Starts of `./run` after the first one.
    pub restarts: u64,
    pub last_exit: Option<Exit>,
    pub last_exit_at: Option<Tai64N>,
    /// When the service signalled readiness (notification-fd), for the current run.
    pub ready_at: Option<Tai64N>,
    /// When a throttled restart will happen.
    pub next_start_at: Option<Tai64N>,
    /// Process group of the service, for signalling the whole tree.
    pub pgid: Option<u32>,
    /// cgroup v2 path of the service, when one is used.
    pub cgroup: Option<String>,
    /// Pid of the supervisor itself, so a restarted svscan can adopt it (pidfd_open).
    pub supervisor_pid: Option<u32>,
    /// Why the last start failed (missing `run`, bad env file...), for `svctl status`.
    pub last_error: Option<String>,
    /// The last exit was the kernel's OOM killer (the cgroup's `memory.events` `oom_kill`
    /// rose during the run): the memory limit in force then, as `memory.max 64M`.
    pub last_exit_oom: Option<String>,
    /// `restart-limit` was reached: the supervisor stopped restarting the service (the runit
    /// record then reads down, want down) until `u` or a change of the file.
    pub failed: bool,
    /// Held by svscan (`H`): wanted up, but waiting for its dependencies to be ready.
    pub held: bool,
    /// The service is a oneshot (`type` says so): up means its `up` exited 0.
    pub oneshot: bool,
    /// What makes the current run ready: `notification-fd`, `check`, `oneshot` (its `up`
    /// exited 0) or `exec` (ready once it runs, without a `ready_at`).
    pub ready_by: Option<String>,
    /// The service-dir settings applied at the last start (`memory.max 64M`, `user www`,
    /// `limits nofile 4096`...), as `NAME VALUE`, in the order applied.
    pub settings: Vec<(String, String)>,
}

/// Whether a supervisor's `status` and extended status say the service is up and ready: ready
/// by a notification or a passed `./check` (`ready_at` of this run, see
/// [`ready_at_is_this_runs`]), or by running at all when the service has neither (`ready_by
/// exec`); a oneshot once its `up` worked. What a dependency's readiness means to svscan.
pub fn up_and_ready(status: &Status, extended: &Extended) -> bool {
    status.state == RunState::Run
        && (ready_at_is_this_runs(status, extended) || extended.ready_by.as_deref() == Some("exec"))
}

/// Whether the service's start failed and the next one waits out a back-off: it does not run,
/// and a throttled restart is pending. A `wants` or `after` dependency in that state is not
/// waited for.
pub fn retrying(status: &Status, extended: &Extended) -> bool {
    status.state != RunState::Run && extended.next_start_at.is_some()
}

/// Whether the extended status's `ready_at` is of the run `status` describes. The two files are
/// renamed one after the other, the status first: a reader between the two finds the new
/// run's status beside the last run's `ready_at`, which says nothing of this one. It is this
/// run's when it is no earlier than the status stamp, or when the extended status names this
/// run's process group (a wall clock set back during the run leaves the stamp after it).
pub fn ready_at_is_this_runs(status: &Status, extended: &Extended) -> bool {
    extended.ready_at.is_some_and(|at| {
        at >= status.stamp || (status.pid != 0 && extended.pgid == Some(status.pid))
    })
}

impl Extended {
    pub fn encode(&self) -> String {
        let mut s = format!("restarts {}\n", self.restarts);
        match self.last_exit {
            Some(Exit::Code(c)) => s.push_str(&format!("last_exit code {c}\n")),
            Some(Exit::Signal(n)) => s.push_str(&format!("last_exit signal {n}\n")),
            None => {}
        }
        let stamps = [
            ("last_exit_at", self.last_exit_at),
            ("ready_at", self.ready_at),
            ("next_start_at", self.next_start_at),
        ];
        for (key, stamp) in stamps {
            if let Some(t) = stamp {
                s.push_str(&format!("{key} {t}\n"));
            }
        }
        if let Some(pgid) = self.pgid {
            s.push_str(&format!("pgid {pgid}\n"));
        }
        if let Some(pid) = self.supervisor_pid {
            s.push_str(&format!("supervisor_pid {pid}\n"));
        }
        if let Some(cgroup) = &self.cgroup {
            s.push_str(&format!("cgroup {}\n", one_line(cgroup)));
        }
        if let Some(error) = &self.last_error {
            s.push_str(&format!("last_error {}\n", one_line(error)));
        }
        if let Some(limit) = &self.last_exit_oom {
            s.push_str(&format!("last_exit_oom {}\n", one_line(limit)));
        }
        if self.failed {
            s.push_str("failed 1\n");
        }
        if self.held {
            s.push_str("held 1\n");
        }
        if self.oneshot {
            s.push_str("oneshot 1\n");
        }
        if let Some(by) = &self.ready_by {
            s.push_str(&format!("ready_by {}\n", one_line(by)));
        }
        for (name, value) in &self.settings {
            let name = one_line(name).replace(' ', "_");
            s.push_str(&format!("setting {name} {}\n", one_line(value)));
        }
        s
    }

    /// The last exit as people read it: `exit 1`, `signal KILL`, or
    /// `killed by the OOM killer (memory.max 64M)`.
    pub fn last_exit_text(&self) -> Option<String> {
        let exit = self.last_exit?;
        Some(match &self.last_exit_oom {
            Some(limit) => oom_text(limit),
            None => exit.to_string(),
        })
    }

    /// Reads what it can; a malformed line is skipped, never fatal.
    pub fn decode(text: &str) -> Extended {
        let mut x = Extended::default();
        for line in text.lines() {
            let (key, value) = line.split_once(' ').unwrap_or((line, ""));
            match key {
                "restarts" => x.restarts = value.parse().unwrap_or(0),
                "last_exit" => {
                    x.last_exit = match value.split_once(' ') {
                        Some(("code", n)) => n.parse().ok().map(Exit::Code),
                        Some(("signal", n)) => n.parse().ok().map(Exit::Signal),
                        _ => None,
                    }
                }
                "last_exit_at" => x.last_exit_at = Tai64N::parse_label(value.as_bytes()),
                "ready_at" => x.ready_at = Tai64N::parse_label(value.as_bytes()),
                "next_start_at" => x.next_start_at = Tai64N::parse_label(value.as_bytes()),
                "pgid" => x.pgid = value.parse().ok(),
                "supervisor_pid" => x.supervisor_pid = value.parse().ok(),
                "cgroup" => x.cgroup = Some(value.to_owned()),
                "last_error" => x.last_error = Some(value.to_owned()),
                "last_exit_oom" => x.last_exit_oom = Some(value.to_owned()),
                "failed" => x.failed = value == "1",
                "held" => x.held = value == "1",
                "oneshot" => x.oneshot = value == "1",
                "ready_by" => x.ready_by = Some(value.to_owned()),
                "setting" => {
                    let (name, value) = value.split_once(' ').unwrap_or((value, ""));
                    if !name.is_empty() {
                        x.settings.push((name.to_owned(), value.to_owned()));
                    }
                }
                _ => {}
            }
        }
        x
    }
}

/// How an OOM kill under `limit` (`memory.max 64M`) reads in status and messages.
pub fn oom_text(limit: &str) -> String {
    format!("killed by the OOM killer ({limit})")
}

/// A text value on one line: `decode` splits at `\n` and drops a `\r` before it.
fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp() -> Tai64N {
        Tai64N::parse_label(b"@400000006b024c670c703634").unwrap()
    }

    /// pid 42 running since [`stamp`], wanted up.
    fn running_42() -> Status {
        Status {
            stamp: stamp(),
            pid: 42,
            paused: false,
            want: Want::Up,
            term_sent: false,
            state: RunState::Run,
        }
    }

    #[test]
    fn the_last_runs_ready_at_does_not_make_a_new_run_ready() {
        let earlier = Tai64N::parse_label(b"@400000006b024c600c703634").unwrap();
        let later = Tai64N::parse_label(b"@400000006b024c700c703634").unwrap();
        let status = running_42();
        let x = |ready_at| Extended {
            ready_at,
            ready_by: Some("notification-fd".into()),
            ..Extended::default()
        };
        assert!(!up_and_ready(&status, &x(None)));
        assert!(!up_and_ready(&status, &x(Some(earlier))), "the last run's");
        // Earlier by the wall clock, but of this run's process group: the clock went back.
        let stepped_back = Extended {
            pgid: Some(42),
            ..x(Some(earlier))
        };
        assert!(up_and_ready(&status, &stepped_back));
        let the_last_runs_group = Extended {
            pgid: Some(41),
            ..x(Some(earlier))
        };
        assert!(!up_and_ready(&status, &the_last_runs_group));
        assert!(up_and_ready(&status, &x(Some(stamp()))));
        assert!(up_and_ready(&status, &x(Some(later))));
        let exec = Extended {
            ready_by: Some("exec".into()),
            ..Extended::default()
        };
        assert!(up_and_ready(&status, &exec));
        let down = Status {
            state: RunState::Down,
            ..status
        };
        assert!(!up_and_ready(&down, &x(Some(later))));
    }

    #[test]
    fn golden_bytes_from_runsv() {
        // Captured from Debian's runsv running `sleep` as pid 16662 (PEERS.md 2.5).
        let golden = [
            0x40, 0, 0, 0, 0x6b, 0x02, 0x4c, 0x67, 0x0c, 0x70, 0x36, 0x34, 0x16, 0x41, 0, 0, 0,
            b'u', 0, 1,
        ];
        let status = Status {
            stamp: stamp(),
            pid: 16662,
            paused: false,
            want: Want::Up,
            term_sent: false,
            state: RunState::Run,
        };
        assert_eq!(status.encode(), golden);
        assert_eq!(Status::decode(&golden), Ok(status));
        assert_eq!(status.stat_text(), "run\n");
        assert_eq!(status.pid_text(), "16662\n");
    }

    #[test]
    fn down_after_sv_down() {
        let status = Status {
            stamp: stamp(),
            pid: 0,
            paused: false,
            want: Want::Down,
            term_sent: false,
            state: RunState::Down,
        };
        assert_eq!(&status.encode()[12..], &[0, 0, 0, 0, 0, b'd', 0, 0]);
        assert_eq!(status.stat_text(), "down\n");
        assert_eq!(status.pid_text(), "");
    }

    #[test]
    fn want_exit_is_d_on_disk_and_in_stat() {
        let status = Status {
            stamp: stamp(),
            pid: 7,
            paused: true,
            want: Want::Exit,
            term_sent: true,
            state: RunState::Finish,
        };
        let bytes = status.encode();
        assert_eq!(&bytes[16..], &[1, b'd', 1, 2]);
        assert_eq!(status.stat_text(), "finish, paused, got TERM, want exit\n");
        let back = Status::decode(&bytes).unwrap();
        assert_eq!(back.want, Want::Down);
        assert_eq!(back.state, RunState::Finish);
    }

    #[test]
    fn daemontools_record_and_truncation() {
        let mut bytes = running_42().encode().to_vec();
        bytes.truncate(18);
        let s = Status::decode(&bytes).unwrap();
        assert_eq!((s.pid, s.state), (42, RunState::Run));
        assert_eq!(
            Status::decode(&bytes[..17]),
            Err(StatusError::Truncated(17))
        );
        assert_eq!(Status::decode(&[]), Err(StatusError::Truncated(0)));
        let mut bad = Status::decode(&bytes).unwrap().encode();
        bad[19] = 9;
        assert_eq!(Status::decode(&bad), Err(StatusError::BadState(9)));
    }

    #[test]
    fn extended_round_trip_and_junk() {
        let x = Extended {
            restarts: 3,
            last_exit: Some(Exit::Signal(9)),
            last_exit_at: Some(stamp()),
            ready_at: None,
            next_start_at: Some(stamp()),
            pgid: Some(99),
            supervisor_pid: Some(98),
            cgroup: Some("/warden/foo".into()),
            last_error: Some("unable to exec ./run: No such file or directory".into()),
            last_exit_oom: Some("memory.max 64M".into()),
            failed: true,
            held: true,
            oneshot: true,
            ready_by: Some("check".into()),
            settings: vec![
                ("memory.max".into(), "64M".into()),
                ("cpu.max".into(), "50000 100000".into()),
                ("limits".into(), "nofile 4096, core unlimited".into()),
            ],
        };
        assert_eq!(
            x.last_exit_text().as_deref(),
            Some("killed by the OOM killer (memory.max 64M)")
        );
        assert_eq!(Extended::decode(&x.encode()), x);
        // Found by tests/fuzz.rs (fuzz_extended_round_trip): a trailing `\r` was lost.
        let cr = Extended {
            last_error: Some("bad\r".into()),
            ..Extended::default()
        };
        assert_eq!(
            Extended::decode(&cr.encode()).last_error.as_deref(),
            Some("bad ")
        );
        let junk = Extended::decode("restarts x\nlast_exit code\nfuture 1\n\n");
        assert_eq!(junk, Extended::default());
        assert_eq!(Exit::Code(3).finish_args(), (3, 0));
        assert_eq!(Exit::Signal(15).finish_args(), (-1, 15));
        assert_eq!(Exit::Signal(9).to_string(), "signal KILL");
    }
}
