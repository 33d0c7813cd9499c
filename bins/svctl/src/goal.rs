//! What a command aims at, and whether a snapshot of the service has reached it. Pure: the
//! waiting loop (wait.rs) feeds it snapshots, the tests feed it plain values.

use std::path::Path;
use warden::service::{CHECK, NOTIFICATION_FD};
use warden::status::{Extended, RunState, Status, Want};
use warden::svdir::{ClientError, Liveness, ServiceDir};
use warden::Tai64N;

/// warden's `supervise/event/`: a FIFO made there gets a byte on every change of `status`.
pub use warden::svdir::EVENT as EVENT_DIR;

/// The state a command waits for with `-w`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Goal {
    /// Running, ready if the service has `notification-fd`, then `./check` passes.
    Up,
    /// Nothing runs (not even `finish`).
    Down,
    /// Started after the command (it may already have ended), or running anyway.
    Once,
    /// A run that started after the command, up as for `Up`.
    NewRun,
    /// The current run ended: a new run if the service wants up, else down.
    RunEnded,
    Paused,
    Continued,
    /// The supervisor exited (`ok` FIFO has no reader).
    Gone,
    /// `check`: `Down` if the service wants down, else `Up`.
    Wanted,
}

impl Goal {
    /// Words for a timeout message: "web is not {what}".
    pub fn describe(self) -> &'static str {
        match self {
            Goal::Up => "up",
            Goal::Down => "down",
            Goal::Once => "started once",
            Goal::NewRun => "restarted",
            Goal::RunEnded => "restarted or down",
            Goal::Paused => "paused",
            Goal::Continued => "continued",
            Goal::Gone => "unsupervised",
            Goal::Wanted => "in its wanted state",
        }
    }
}

/// What a client can see of a service at one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub status: Status,
    /// warden's `supervise/warden`; `None` under runit's runsv.
    pub extended: Option<Extended>,
    /// The service has a `notification-fd` file.
    pub notifies: bool,
}

impl Snapshot {
    /// Reads the status of a running supervisor; a status file left behind by one that
    /// exited is stale, so that is "not supervised", as with runit's `sv`.
    pub fn take(dir: &ServiceDir) -> Result<Snapshot, ClientError> {
        if dir.liveness()? != Liveness::Running {
            return Err(ClientError::NotSupervised(dir.path.clone()));
        }
        let status = dir.status()?;
        let notifies = dir.path.join(NOTIFICATION_FD).exists();
        // warden's supervise writes `supervise/warden` (and makes `supervise/event/`) before
        // its first `status`, so a status without either is runsv's.
        let extended = dir
            .extended()
            .or_else(|| dir.file(EVENT_DIR).is_dir().then(Extended::default));
        Ok(Snapshot {
            status,
            extended,
            notifies,
        })
    }

    /// Running, or a oneshot that is up (its `up` exited 0: nothing runs, pid 0).
    pub fn is_up(&self) -> bool {
        let oneshot = self.extended.as_ref().is_some_and(|x| x.oneshot);
        (self.status.pid != 0 || oneshot) && self.status.state == RunState::Run
    }

    pub fn is_down(&self) -> bool {
        self.status.pid == 0 && self.status.state == RunState::Down
    }

    /// Readiness of the current run: `None` when unknown (runsv keeps no such record, or the
    /// service does not notify), else whether `ready_at` belongs to this run.
    pub fn ready(&self) -> Option<bool> {
        let extended = self.extended.as_ref()?;
        if !self.is_up() {
            return Some(false);
        }
        if warden::status::ready_at_is_this_runs(&self.status, extended) {
            return Some(true);
        }
        (self.notifies || self.supervisor_checks()).then_some(false)
    }

    /// warden's supervisor runs `./check` itself for this run's readiness (issue 14).
    pub fn supervisor_checks(&self) -> bool {
        let by = self.extended.as_ref().and_then(|x| x.ready_by.as_deref());
        by == Some("check")
    }

    /// Up, and made ready by a `./check` its supervisor ran: no need to run it again.
    pub fn checked_by_supervisor(&self) -> bool {
        self.supervisor_checks() && self.ready() == Some(true)
    }

    /// Failed by its `restart-limit` after `since`: the failure is newer than the command (an
    /// older one is what `up` has just cleared).
    pub fn failed_since(&self, since: Tai64N) -> bool {
        self.extended.as_ref().is_some_and(|x| x.failed) && self.status.stamp >= since
    }

    /// Why its supervisor gave up on it, for a message.
    pub fn failure(&self) -> String {
        let error = self.extended.as_ref().and_then(|x| x.last_error.clone());
        error.unwrap_or_else(|| "restart-limit reached".into())
    }

    /// Up and, where readiness is known, ready.
    fn is_up_and_ready(&self) -> bool {
        self.is_up() && self.ready() != Some(false)
    }
}

/// How far a snapshot is from a goal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Reached,
    /// The state is right; `./check`, where there is one, has the last word.
    NeedsCheck,
    NotYet,
    /// It reached its `restart-limit` after the command: it will not come up by itself.
    Failed,
}

/// Judges `snap` against `goal`; `since` is when the command was sent.
pub fn judge(goal: Goal, snap: &Snapshot, since: Tai64N) -> Verdict {
    let verdict = |ok: bool, then: Verdict| if ok { then } else { Verdict::NotYet };
    let status = &snap.status;
    let new_run = status.stamp >= since && !status.term_sent;
    if matches!(goal, Goal::Up | Goal::NewRun) && snap.failed_since(since) {
        return Verdict::Failed;
    }
    match goal {
        Goal::Up => verdict(snap.is_up_and_ready(), Verdict::NeedsCheck),
        Goal::Down => verdict(snap.is_down(), Verdict::Reached),
        Goal::Once => verdict(snap.is_up() || status.stamp >= since, Verdict::Reached),
        Goal::NewRun => verdict(new_run && snap.is_up_and_ready(), Verdict::NeedsCheck),
        Goal::RunEnded if status.want == Want::Up => judge(Goal::NewRun, snap, since),
        Goal::RunEnded => judge(Goal::Down, snap, since),
        Goal::Paused => verdict(status.paused || status.pid == 0, Verdict::Reached),
        Goal::Continued => verdict(!status.paused, Verdict::Reached),
        Goal::Wanted if status.want == Want::Up => judge(Goal::Up, snap, since),
        Goal::Wanted => judge(Goal::Down, snap, since),
        // Decided by the ok FIFO, not by the status record.
        Goal::Gone => Verdict::NotYet,
    }
}

/// `./check` counts only when it can be run: a file with an execute bit.
pub fn has_check(dir: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(dir.join(CHECK))
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn at(secs: u64) -> Tai64N {
        Tai64N::from_system_time(UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs))
    }

    fn snap(pid: u32, state: RunState, want: Want, stamp: u64) -> Snapshot {
        Snapshot {
            status: Status {
                stamp: at(stamp),
                pid,
                paused: false,
                want,
                term_sent: false,
                state,
            },
            extended: None,
            notifies: false,
        }
    }

    #[test]
    fn a_failure_after_the_command_ends_the_wait_for_up_and_an_older_one_does_not() {
        let mut failed = snap(0, RunState::Down, Want::Down, 7);
        failed.extended = Some(Extended {
            failed: true,
            ..Extended::default()
        });
        assert_eq!(judge(Goal::Up, &failed, at(5)), Verdict::Failed);
        assert_eq!(judge(Goal::NewRun, &failed, at(5)), Verdict::Failed);
        // Failed before the command: what `up` has just cleared.
        assert_eq!(judge(Goal::Up, &failed, at(9)), Verdict::NotYet);
        // `down` of a failed service is reached all the same.
        assert_eq!(judge(Goal::Down, &failed, at(5)), Verdict::Reached);
    }

    #[test]
    fn up_needs_a_running_pid_then_the_check() {
        let up = snap(7, RunState::Run, Want::Up, 0);
        assert_eq!(judge(Goal::Up, &up, at(5)), Verdict::NeedsCheck);
        let finishing = snap(8, RunState::Finish, Want::Up, 0);
        assert_eq!(judge(Goal::Up, &finishing, at(5)), Verdict::NotYet);
        let down = snap(0, RunState::Down, Want::Up, 0);
        assert_eq!(judge(Goal::Up, &down, at(5)), Verdict::NotYet);
    }

    #[test]
    fn down_means_nothing_runs_not_even_finish() {
        let down = snap(0, RunState::Down, Want::Down, 0);
        assert_eq!(judge(Goal::Down, &down, at(5)), Verdict::Reached);
        let finishing = snap(8, RunState::Finish, Want::Down, 0);
        assert_eq!(judge(Goal::Down, &finishing, at(5)), Verdict::NotYet);
    }

    #[test]
    fn restart_waits_for_a_run_started_after_the_command() {
        let old = snap(7, RunState::Run, Want::Up, 4);
        assert_eq!(judge(Goal::NewRun, &old, at(5)), Verdict::NotYet);
        let new = snap(9, RunState::Run, Want::Up, 5);
        assert_eq!(judge(Goal::NewRun, &new, at(5)), Verdict::NeedsCheck);
        let mut stopping = new.clone();
        stopping.status.term_sent = true;
        assert_eq!(judge(Goal::NewRun, &stopping, at(5)), Verdict::NotYet);
    }

    #[test]
    fn term_on_a_service_that_wants_down_waits_for_down() {
        let down = snap(0, RunState::Down, Want::Down, 1);
        assert_eq!(judge(Goal::RunEnded, &down, at(5)), Verdict::Reached);
        let old = snap(7, RunState::Run, Want::Up, 1);
        assert_eq!(judge(Goal::RunEnded, &old, at(5)), Verdict::NotYet);
    }

    #[test]
    fn once_is_satisfied_by_a_run_that_already_ended() {
        let ran = snap(0, RunState::Down, Want::Down, 6);
        assert_eq!(judge(Goal::Once, &ran, at(5)), Verdict::Reached);
        let never = snap(0, RunState::Down, Want::Down, 4);
        assert_eq!(judge(Goal::Once, &never, at(5)), Verdict::NotYet);
        let running = snap(7, RunState::Run, Want::Down, 1);
        assert_eq!(judge(Goal::Once, &running, at(5)), Verdict::Reached);
    }

    #[test]
    fn check_follows_the_want_byte() {
        let up_wanted_down = snap(7, RunState::Run, Want::Down, 0);
        assert_eq!(judge(Goal::Wanted, &up_wanted_down, at(5)), Verdict::NotYet);
        let down_wanted_down = snap(0, RunState::Down, Want::Down, 0);
        assert_eq!(
            judge(Goal::Wanted, &down_wanted_down, at(5)),
            Verdict::Reached
        );
        let up_wanted_up = snap(7, RunState::Run, Want::Up, 0);
        assert_eq!(
            judge(Goal::Wanted, &up_wanted_up, at(5)),
            Verdict::NeedsCheck
        );
    }

    #[test]
    fn readiness_counts_only_under_warden_and_for_this_run() {
        let mut s = snap(7, RunState::Run, Want::Up, 3);
        s.notifies = true;
        // runsv: no extended record, readiness unknown, up is enough.
        assert_eq!(s.ready(), None);
        assert_eq!(judge(Goal::Up, &s, at(5)), Verdict::NeedsCheck);
        s.extended = Some(Extended::default());
        assert_eq!(s.ready(), Some(false));
        assert_eq!(judge(Goal::Up, &s, at(5)), Verdict::NotYet);
        // Ready in an earlier run does not count.
        s.extended = Some(Extended {
            ready_at: Some(at(2)),
            ..Extended::default()
        });
        assert_eq!(judge(Goal::Up, &s, at(5)), Verdict::NotYet);
        s.extended = Some(Extended {
            ready_at: Some(at(4)),
            ..Extended::default()
        });
        assert_eq!(s.ready(), Some(true));
        assert_eq!(judge(Goal::Up, &s, at(5)), Verdict::NeedsCheck);
        // Without notification-fd a warden service is ready when up.
        s.notifies = false;
        s.extended = Some(Extended::default());
        assert_eq!(s.ready(), None);
        assert_eq!(judge(Goal::Up, &s, at(5)), Verdict::NeedsCheck);
    }

    #[test]
    fn pause_and_cont() {
        let mut s = snap(7, RunState::Run, Want::Up, 0);
        assert_eq!(judge(Goal::Paused, &s, at(5)), Verdict::NotYet);
        assert_eq!(judge(Goal::Continued, &s, at(5)), Verdict::Reached);
        s.status.paused = true;
        assert_eq!(judge(Goal::Paused, &s, at(5)), Verdict::Reached);
        assert_eq!(judge(Goal::Continued, &s, at(5)), Verdict::NotYet);
    }
}
