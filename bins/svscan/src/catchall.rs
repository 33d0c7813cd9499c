//! The catch-all logger's life (s6-linux-init's uncaught-logs logger), as a pure state
//! machine like `life`'s: one pipe, held by svscan for its whole life, that the supervisors of
//! services without a `log/` get as stdout and stderr, read by a logger supervised in its own
//! directory; restarted on the same pipe whenever it exits, and stopped last, once every
//! entry is gone, to drain it all. No I/O: what it needs to know comes in the events, what is
//! to be done goes out as `life`'s actions, which `tree` carries out.

use crate::life::{Action, Actions, End, Failure, LogSide, Logger, Report, Role, Run, Slot, State};
use rustix::process::Signal;
use std::time::{Duration, Instant};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Catchall {
    /// Its logger and the pipe, as an entry's logger side (`life::LogSide`): `pipe` is held
    /// for svscan's whole life; `leftover` in a shutdown, the read end kept for a logger to
    /// drain; `hup_pending` as an entry's.
    pub log: LogSide,
    /// Its supervisor is being started on what was left of the pipe in a shutdown, given a
    /// write end again: that logger is to exit once it has read it.
    pub draining: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Its supervisor may be due; `unread`: the leftover holds bytes; `can_start`: warden's
    /// `supervise` was found at start-up (said once then; the catch-all waits, its pipe held).
    Due { unread: bool, can_start: bool },
    /// The outcome of the start asked for; `reopen_failed` as `life::Launched`'s.
    Launched {
        result: Result<i32, Failure>,
        reopen_failed: bool,
    },
    Exited {
        pid: i32,
        status: String,
        unread: bool,
    },
    /// A shutdown, and every entry is gone: its turn to drain and stop.
    AllGone { unread: bool },
    /// What its supervisor says of the logger, while the HUP is pending.
    LoggerSeen(Logger),
    /// After a failed exec of the next stage: wanted again; `pipe`: a new pipe was made (if
    /// the old one was let go), or the old one is still there.
    Resumed { pipe: bool },
    /// The loggers' shutdown grace is over.
    GraceOver,
}

impl Catchall {
    /// A catch-all logger on its pipe (made, or taken over with an adopted supervisor).
    pub fn new(adopted: Option<Run>, now: Instant) -> Catchall {
        let mut slot = Slot::waiting(now);
        if let Some(run) = adopted {
            slot.state = State::Running(run);
        }
        Catchall {
            log: LogSide::new(slot, true),
            draining: false,
        }
    }

    /// The logger's supervisor runs and waits for its HUP.
    pub fn awaits_hup(&self) -> Option<&Run> {
        self.log.slot.running().filter(|_| self.log.hup_pending)
    }

    pub fn step(&mut self, event: Event, now: Instant) -> Actions {
        let mut out = Vec::new();
        match event {
            Event::Due { unread, can_start } => self.due(unread, can_start, now, &mut out),
            Event::Launched {
                result,
                reopen_failed,
            } => self.launched(result, reopen_failed, now, &mut out),
            Event::Exited {
                pid,
                status,
                unread,
            } => self.exited(pid, status, unread, now, &mut out),
            Event::AllGone { unread } => self.all_gone(unread, &mut out),
            Event::LoggerSeen(state) => self.log.seen(state, &mut out),
            Event::Resumed { pipe } => {
                if self.log.pipe && std::mem::take(&mut self.log.hup_pending) {
                    // Not told to exit yet: the logger stays on its pipe.
                    out.push(Action::UnwatchStatus);
                }
                if !self.log.pipe {
                    self.log.pipe = pipe;
                    self.log.drop_leftover(None, &mut out);
                }
                if self.log.slot.is_gone() {
                    self.log.slot = Slot::waiting(now);
                }
            }
            Event::GraceOver => {
                if self.log.slot.running().is_some() {
                    out.push(Action::Report(Report::Straggler(Role::Log)));
                    out.push(Action::KillGroup(Role::Log));
                    out.push(Action::Signal(Role::Log, Signal::KILL));
                }
            }
        }
        out
    }

    /// Starts its supervisor when it is due: on the pipe, or, in a shutdown, on what is left
    /// of it (and then to exit once that is read); with nothing left, it is gone.
    fn due(&mut self, unread: bool, can_start: bool, now: Instant, out: &mut Actions) {
        if !self.log.slot.due(now) {
            return;
        }
        let end = if self.log.pipe {
            End::PipeRead
        } else if self.log.leftover && unread {
            End::Leftover
        } else {
            self.log.slot.state = State::Gone;
            self.log.drop_leftover(None, out);
            return;
        };
        if can_start {
            if end == End::Leftover {
                // As an entry's draining logger (`life::due`): a writer until its HUP.
                self.log.leftover_to_pipe(out);
                self.draining = true;
            }
            out.push(Action::Start(Role::Log, end));
        }
    }

    fn launched(
        &mut self,
        result: Result<i32, Failure>,
        reopen_failed: bool,
        now: Instant,
        out: &mut Actions,
    ) {
        let draining = std::mem::take(&mut self.draining);
        if draining && reopen_failed {
            self.log.reopen_failed();
        }
        if !matches!(self.log.slot.state, State::Waiting { .. }) {
            return;
        }
        match result {
            Ok(pid) => {
                self.log.slot.state = State::Running(Run::started(pid, now));
                // Started on what is left: to exit once that is read.
                self.log.hup_pending = draining;
                if self.log.hup_pending {
                    out.push(Action::WatchStatus);
                }
            }
            Err(Failure { error, .. }) => {
                if draining {
                    // Nobody reads what is left yet: the write end goes until the next start.
                    self.log.pipe_to_leftover(out);
                }
                let delay = self.log.slot.retry(Duration::ZERO, now);
                if !std::mem::replace(&mut self.log.slot.reported, true) {
                    out.push(Action::Report(Report::StartFailed {
                        role: Role::Log,
                        error,
                        delay,
                    }));
                }
            }
        }
    }

    /// Its supervisor exited: restarted on the same pipe, so that no line is lost, unless the
    /// shutdown is over for it.
    fn exited(&mut self, pid: i32, status: String, unread: bool, now: Instant, out: &mut Actions) {
        let State::Running(running) = self.log.slot.state else {
            return;
        };
        if running.pid != pid {
            return;
        }
        if std::mem::take(&mut self.log.hup_pending) {
            out.push(Action::UnwatchStatus);
            self.log.pipe_to_leftover(out);
        }
        if self.log.pipe || (self.log.leftover && unread) {
            let lived = now.saturating_duration_since(running.since);
            let delay = self.log.slot.retry(lived, now);
            if !running.stop_sent && !std::mem::replace(&mut self.log.slot.reported, true) {
                out.push(Action::Report(Report::Ended {
                    role: Role::Log,
                    status,
                    delay,
                }));
            }
        } else {
            self.log.slot.state = State::Gone;
            self.log.drop_leftover(None, out);
            out.push(Action::RemoveCgroup(Role::Log));
        }
    }

    /// svscan tells the logger's supervisor to exit once the logger has read it all, and then
    /// lets go of the pipe's write end.
    fn all_gone(&mut self, unread: bool, out: &mut Actions) {
        if self.log.hup_first(out) {
            return;
        }
        self.log.pipe_to_leftover(out);
        match &self.log.slot.state {
            State::Running(_) | State::Gone => {}
            State::Waiting { .. } if self.log.leftover && unread => {}
            State::Waiting { .. } => {
                self.log.slot.state = State::Gone;
                self.log.drop_leftover(None, out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::life::{Action::*, Report, LOGGER_DOWN};
    use rustix::process::Signal;

    const PID: i32 = 300;

    fn at(origin: Instant, ms: u64) -> Instant {
        origin + Duration::from_millis(ms)
    }

    fn due() -> Event {
        Event::Due {
            unread: false,
            can_start: true,
        }
    }

    fn launched(result: Result<i32, Failure>) -> Event {
        Event::Launched {
            result,
            reopen_failed: false,
        }
    }

    fn running(origin: Instant) -> Catchall {
        let mut c = Catchall::new(None, origin);
        c.step(due(), origin);
        c.step(launched(Ok(PID)), origin);
        c
    }

    #[test]
    fn it_starts_on_its_pipe_and_is_restarted_on_it() {
        let o = Instant::now();
        let mut c = Catchall::new(None, o);
        assert_eq!(c.step(due(), o), [Start(Role::Log, End::PipeRead)]);
        assert_eq!(c.step(launched(Ok(PID)), o), []);
        assert!(c.awaits_hup().is_none());
        let exited = Event::Exited {
            pid: PID,
            status: "signal KILL".into(),
            unread: false,
        };
        assert_eq!(
            c.step(exited.clone(), at(o, 100)),
            [Report(Report::Ended {
                role: Role::Log,
                status: "signal KILL".into(),
                delay: Duration::from_secs(1)
            })]
        );
        assert!(c.log.pipe);
        assert_eq!(c.log.slot.deadline(), Some(at(o, 1100)));
        // Without warden's supervise it waits, its pipe held.
        let unable = Event::Due {
            unread: false,
            can_start: false,
        };
        assert_eq!(c.step(unable, at(o, 1100)), []);
        assert_eq!(
            c.step(due(), at(o, 1100)),
            [Start(Role::Log, End::PipeRead)]
        );
    }

    #[test]
    fn an_adopted_supervisor_is_not_started_again() {
        let o = Instant::now();
        let mut c = Catchall::new(Some(Run::started(PID, o)), o);
        assert_eq!(c.step(due(), o), []);
    }

    #[test]
    fn a_failed_start_backs_off_and_is_said_once() {
        let o = Instant::now();
        let mut c = Catchall::new(None, o);
        let failed = || {
            launched(Err(Failure {
                error: "e".into(),
                fd_shortage: true,
            }))
        };
        assert_eq!(
            c.step(failed(), o),
            [Report(Report::StartFailed {
                role: Role::Log,
                error: "e".into(),
                delay: Duration::from_secs(1)
            })]
        );
        assert_eq!(c.step(failed(), at(o, 1000)), []);
        assert_eq!(c.log.slot.deadline(), Some(at(o, 3000)));
    }

    #[test]
    fn it_stops_last_draining_what_is_left_then_is_gone() {
        let o = Instant::now();
        let mut c = running(o);
        assert_eq!(
            c.step(Event::AllGone { unread: true }, o),
            [WatchStatus, CheckLogger]
        );
        assert_eq!(c.step(Event::LoggerSeen(Logger::Coming), o), []);
        assert_eq!(
            c.step(Event::LoggerSeen(Logger::Unreadable), o),
            [PipeToLeftover, RecheckLogger]
        );
        assert_eq!(
            c.step(Event::LoggerSeen(Logger::Running), o),
            [
                UnwatchStatus,
                NoteCgroup(Role::Log),
                Signal(Role::Log, Signal::HUP)
            ]
        );
        assert_eq!(c.step(Event::AllGone { unread: true }, o), []);
        // Killed while draining, with lines left: started again on them, to exit once read.
        let exited = |unread| Event::Exited {
            pid: PID,
            status: "signal KILL".into(),
            unread,
        };
        assert_eq!(c.step(exited(true), at(o, 100)), []);
        assert_eq!(c.step(due(), at(o, 100)), []);
        let draining = Event::Due {
            unread: true,
            can_start: true,
        };
        // With a write end again, so that it cannot read EOF before its HUP.
        assert_eq!(
            c.step(draining.clone(), at(o, 1100)),
            [LeftoverToPipe, Start(Role::Log, End::Leftover)]
        );
        assert!(c.log.pipe && !c.log.leftover);
        let mut failed = c.clone();
        assert_eq!(c.step(launched(Ok(PID)), at(o, 1100)), [WatchStatus]);
        assert!(c.awaits_hup().is_some());
        assert_eq!(
            c.step(Event::LoggerSeen(Logger::Running), at(o, 1100)),
            [
                UnwatchStatus,
                NoteCgroup(Role::Log),
                Signal(Role::Log, Signal::HUP),
                PipeToLeftover
            ]
        );
        assert_eq!(
            c.step(exited(false), at(o, 1200)),
            [DropLeftover(None), RemoveCgroup(Role::Log)]
        );
        assert!(c.log.slot.is_gone());
        // A start that failed gives the write end up until the next one.
        let error = Failure {
            error: "e".into(),
            fd_shortage: false,
        };
        let actions = failed.step(launched(Err(error)), at(o, 1100));
        assert_eq!(actions[0], PipeToLeftover, "{actions:?}");
        assert!(failed.log.leftover && !failed.log.pipe && failed.awaits_hup().is_none());
        // A write end that could not be had: drained bare, as before.
        let mut bare = failed.clone();
        bare.step(draining, at(o, 3100));
        let started = Event::Launched {
            result: Ok(PID),
            reopen_failed: true,
        };
        assert_eq!(bare.step(started, at(o, 3100)), [WatchStatus]);
        assert!(bare.log.leftover && !bare.log.pipe && bare.awaits_hup().is_some());
    }

    #[test]
    fn a_down_logger_drops_what_is_left_aloud() {
        let o = Instant::now();
        let mut c = running(o);
        c.step(Event::AllGone { unread: true }, o);
        assert_eq!(
            c.step(Event::LoggerSeen(Logger::Down), o),
            [
                UnwatchStatus,
                NoteCgroup(Role::Log),
                Signal(Role::Log, Signal::HUP),
                PipeToLeftover,
                DropLeftover(Some(LOGGER_DOWN))
            ]
        );
    }

    #[test]
    fn in_back_off_at_the_end_it_drains_only_if_lines_are_left() {
        let o = Instant::now();
        let mut c = running(o);
        let exited = Event::Exited {
            pid: PID,
            status: "exit 1".into(),
            unread: false,
        };
        c.step(exited.clone(), at(o, 100));
        assert_eq!(c.step(Event::AllGone { unread: true }, o), [PipeToLeftover]);
        assert!(!c.log.slot.is_gone());
        let mut c = running(o);
        c.step(exited, at(o, 100));
        assert_eq!(
            c.step(Event::AllGone { unread: false }, o),
            [PipeToLeftover, DropLeftover(None)]
        );
        assert!(c.log.slot.is_gone());
        // Back after a failed exec of the next stage: a new pipe, started again.
        assert_eq!(c.step(Event::Resumed { pipe: true }, at(o, 200)), []);
        assert!(c.log.pipe && c.log.slot.due(at(o, 200)));
    }

    #[test]
    fn the_grace_over_kills_it_if_it_runs() {
        let o = Instant::now();
        let mut c = running(o);
        assert_eq!(
            c.step(Event::GraceOver, o),
            [
                Report(Report::Straggler(Role::Log)),
                KillGroup(Role::Log),
                Signal(Role::Log, Signal::KILL)
            ]
        );
        let mut c = Catchall::new(None, o);
        assert_eq!(c.step(Event::GraceOver, o), []);
    }

    /// Every state against every event: no panic; a start only when due, one pipe or its
    /// leftover, a HUP awaited only from a running supervisor.
    #[test]
    fn every_state_times_every_event_keeps_the_invariants() {
        let o = Instant::now();
        let mut stopping = running(o);
        stopping.step(Event::AllGone { unread: true }, o);
        let mut draining = stopping.clone();
        draining.step(Event::LoggerSeen(Logger::Running), o);
        let mut gone = draining.clone();
        gone.step(
            Event::Exited {
                pid: PID,
                status: String::new(),
                unread: false,
            },
            o,
        );
        let states = [
            ("new", Catchall::new(None, o)),
            ("running", running(o)),
            ("stopping", stopping),
            ("draining", draining),
            ("gone", gone),
        ];
        let mut events = vec![
            launched(Ok(PID + 1)),
            Event::Launched {
                result: Ok(PID + 1),
                reopen_failed: true,
            },
            launched(Err(Failure {
                error: "e".into(),
                fd_shortage: false,
            })),
            Event::GraceOver,
            Event::Resumed { pipe: true },
            Event::Resumed { pipe: false },
        ];
        for unread in [false, true] {
            events.push(Event::AllGone { unread });
            for can_start in [false, true] {
                events.push(Event::Due { unread, can_start });
            }
            for pid in [PID, 999] {
                events.push(Event::Exited {
                    pid,
                    status: String::new(),
                    unread,
                });
            }
        }
        for s in [
            Logger::Running,
            Logger::Coming,
            Logger::Down,
            Logger::Unreadable,
        ] {
            events.push(Event::LoggerSeen(s));
        }
        for (name, state) in &states {
            for event in &events {
                for ms in [0, 100, 60_000] {
                    let mut c = state.clone();
                    let now = at(o, ms);
                    let was_due = c.log.slot.due(now);
                    let actions = c.step(event.clone(), now);
                    let what = format!("{name} × {event:?} at {ms}");
                    for action in &actions {
                        match action {
                            Start(_, end) => {
                                assert!(was_due, "{what}: start not due");
                                // A drain only with a writer, let go only after the HUP.
                                if *end == End::Leftover {
                                    assert!(c.log.pipe, "{what}: a drain without a writer");
                                }
                            }
                            Signal(..) | KillGroup(_) | NoteCgroup(_) => {
                                assert!(c.log.slot.running().is_some(), "{what}: {action:?}")
                            }
                            _ => {}
                        }
                    }
                    assert!(!(c.log.pipe && c.log.leftover), "{what}: pipe and leftover");
                    if c.log.hup_pending {
                        assert!(c.log.slot.running().is_some(), "{what}: HUP for no logger");
                    }
                }
            }
        }
    }
}
