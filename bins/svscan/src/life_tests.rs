//! Every state × event pair of an entry's life, with plain values: no process, no pipe, no
//! file, no clock.

use super::Report;
use super::*;
use rustix::process::Signal;
use Action::*;
use Role::{Log, Service};

const SERVICE_PID: i32 = 100;
const LOG_PID: i32 = 200;

/// A fixed point in time, `ms` milliseconds after the test's origin.
struct Clock {
    origin: Instant,
}

impl Clock {
    fn new() -> Clock {
        Clock {
            origin: Instant::now(),
        }
    }

    fn at(&self, ms: u64) -> Instant {
        self.origin + Duration::from_millis(ms)
    }
}

fn found(log_dir: bool) -> Found {
    Found {
        log_dir,
        service: Adoption::None,
        log: Adoption::None,
        pipe: false,
    }
}

fn ok(log: bool, service: bool) -> Event {
    Event::Launched(Launched {
        log: log.then_some(Ok(LOG_PID)),
        service: service.then_some(Ok(SERVICE_PID)),
        pipe_failed: false,
        reopen_failed: false,
    })
}

fn failed(error: &str, fd_shortage: bool) -> Failure {
    Failure {
        error: error.into(),
        fd_shortage,
    }
}

fn exited(role: Role, pid: i32, drain: Drain) -> Event {
    Event::Exited {
        role,
        pid,
        status: "exit 1".into(),
        exec_error: None,
        drain,
    }
}

const NOTHING_LEFT: Drain = Drain {
    unread: false,
    log_dir: true,
};
const LINES_LEFT: Drain = Drain {
    unread: true,
    log_dir: true,
};
const DIR_GONE: Drain = Drain {
    unread: true,
    log_dir: false,
};

/// A service (and, with `log`, its logger on the pipe) whose supervisors run since `ms`.
fn running(clock: &Clock, log: bool, ms: u64) -> Entry {
    let (mut e, _) = appear(found(log), clock.at(ms));
    step(&mut e, ok(log, true), clock.at(ms));
    e
}

/// A logged service being torn down: its supervisor was told to stop.
fn stopping(clock: &Clock) -> Entry {
    let mut e = running(clock, true, 0);
    step(
        &mut e,
        Event::Vanished { drain: LINES_LEFT },
        clock.at(5000),
    );
    e
}

/// The service's supervisor is gone; the logger's waits for its HUP.
fn hup_pending(clock: &Clock) -> Entry {
    let mut e = stopping(clock);
    step(
        &mut e,
        exited(Service, SERVICE_PID, LINES_LEFT),
        clock.at(5000),
    );
    e
}

/// The logger's supervisor was told to drain and exit.
fn draining(clock: &Clock) -> Entry {
    let mut e = hup_pending(clock);
    step(&mut e, Event::LoggerSeen(Logger::Running), clock.at(5000));
    e
}

/// The logger's supervisor died while lines were left: it waits to start again on them.
fn leftover_waiting(clock: &Clock) -> Entry {
    let mut e = draining(clock);
    step(&mut e, exited(Log, LOG_PID, LINES_LEFT), clock.at(5100));
    e
}

/// The service's supervisor died quickly and waits out its back-off.
fn throttled(clock: &Clock, log: bool) -> Entry {
    let mut e = running(clock, log, 0);
    step(
        &mut e,
        exited(Service, SERVICE_PID, NOTHING_LEFT),
        clock.at(100),
    );
    e
}

#[test]
fn back_off_doubles_up_to_thirty_seconds() {
    assert_eq!(restart_delay(0), Duration::ZERO);
    assert_eq!(restart_delay(1), Duration::from_secs(1));
    assert_eq!(restart_delay(2), Duration::from_secs(2));
    assert_eq!(restart_delay(5), Duration::from_secs(16));
    assert_eq!(restart_delay(6), Duration::from_secs(30));
    assert_eq!(restart_delay(u32::MAX), Duration::from_secs(30));
}

#[test]
fn a_long_run_resets_the_back_off() {
    let clock = Clock::new();
    let now = clock.at(0);
    let mut slot = Slot::waiting(now);
    assert_eq!(slot.retry(Duration::ZERO, now), Duration::from_secs(1));
    assert_eq!(slot.retry(Duration::ZERO, now), Duration::from_secs(2));
    slot.reported = true;
    assert_eq!(slot.retry(Duration::from_secs(60), now), Duration::ZERO);
    assert!(!slot.reported);
    assert!(slot.due(now));
}

#[test]
fn durations_are_said_briefly() {
    assert_eq!(humanize(Duration::ZERO), "no time");
    assert_eq!(humanize(Duration::from_secs(4)), "4s");
    assert_eq!(humanize(Duration::from_millis(1500)), "1500ms");
}

#[test]
fn a_service_without_log_starts_at_once_on_svscans_output() {
    let clock = Clock::new();
    let (e, actions) = appear(found(false), clock.at(0));
    assert_eq!(actions, [Start(Service, End::Uncaught)]);
    assert!(e.log.is_none());
    assert!(e.wanted);
}

#[test]
fn a_logged_service_gets_the_pipe_and_its_logger_first() {
    let clock = Clock::new();
    let (mut e, actions) = appear(found(true), clock.at(0));
    assert_eq!(
        actions,
        [
            OpenPipe,
            Start(Log, End::PipeRead),
            Start(Service, End::PipeWrite)
        ]
    );
    assert_eq!(step(&mut e, ok(true, true), clock.at(0)), []);
    assert_eq!(e.service.running().map(|r| r.pid), Some(SERVICE_PID));
    assert_eq!(
        e.log.as_ref().and_then(|l| l.slot.running()).map(|r| r.pid),
        Some(LOG_PID)
    );
    assert!(e.log.as_ref().is_some_and(|l| l.pipe && !l.fresh));
    assert_eq!(e.deadline(), None, "a running entry has no deadline");
}

#[test]
fn adopted_supervisors_are_not_started_again_and_keep_their_pipe() {
    let clock = Clock::new();
    let run = |pid| Run {
        pid,
        since: clock.at(0),
        stop_sent: false,
        exit_seen: None,
    };
    let (e, actions) = appear(
        Found {
            log_dir: true,
            service: Adoption::Running(run(SERVICE_PID)),
            log: Adoption::Running(run(LOG_PID)),
            pipe: true,
        },
        clock.at(0),
    );
    assert_eq!(actions, []);
    assert!(e.log.as_ref().is_some_and(|l| l.pipe));
    // Only the service's supervisor survived: its pipe is taken over, and the logger
    // started on it, no new pipe made.
    let (_, actions) = appear(
        Found {
            log_dir: true,
            service: Adoption::Running(run(SERVICE_PID)),
            log: Adoption::None,
            pipe: true,
        },
        clock.at(0),
    );
    assert_eq!(actions, [Start(Log, End::PipeRead)]);
    // Its pipe could not be taken over: said, and the logger gets a new pipe.
    let (_, actions) = appear(
        Found {
            log_dir: true,
            service: Adoption::Running(run(SERVICE_PID)),
            log: Adoption::None,
            pipe: false,
        },
        clock.at(0),
    );
    assert_eq!(
        actions,
        [
            Report(Report::PipeNotTakenOver),
            OpenPipe,
            Start(Log, End::PipeRead)
        ]
    );
}

#[test]
fn a_supervisor_that_cannot_be_adopted_is_said_once_and_a_new_one_started() {
    let clock = Clock::new();
    let (mut e, actions) = appear(
        Found {
            log_dir: false,
            service: Adoption::Failed("not a supervise".into()),
            log: Adoption::None,
            pipe: false,
        },
        clock.at(0),
    );
    assert_eq!(
        actions,
        [
            Report(Report::AdoptFailed {
                role: Service,
                cause: "not a supervise".into()
            }),
            Start(Service, End::Uncaught)
        ]
    );
    // Already said: the start's failure that follows is quiet.
    let launched = Launched {
        log: None,
        service: Some(Err(failed("busy", false))),
        pipe_failed: false,
        reopen_failed: false,
    };
    assert_eq!(step(&mut e, Event::Launched(launched), clock.at(0)), []);
}

#[test]
fn starts_that_both_fail_close_the_pipe_made_for_them() {
    let clock = Clock::new();
    let (mut e, _) = appear(found(true), clock.at(0));
    let launched = Launched {
        log: Some(Err(failed("no supervise", false))),
        service: Some(Err(failed("no supervise", false))),
        pipe_failed: false,
        reopen_failed: false,
    };
    let actions = step(&mut e, Event::Launched(launched), clock.at(0));
    assert_eq!(
        actions,
        [
            Report(Report::StartFailed {
                role: Log,
                error: "no supervise".into(),
                delay: Duration::from_secs(1)
            }),
            Report(Report::StartFailed {
                role: Service,
                error: "no supervise".into(),
                delay: Duration::from_secs(1)
            }),
            ClosePipe
        ]
    );
    assert!(e.log.as_ref().is_some_and(|l| !l.pipe));
    assert_eq!(e.deadline(), Some(clock.at(1000)));
    // One start that works keeps it.
    step(&mut e, Event::Due { log_dir: false }, clock.at(1000));
    let launched = Launched {
        log: Some(Ok(LOG_PID)),
        service: Some(Err(failed("no supervise", false))),
        pipe_failed: false,
        reopen_failed: false,
    };
    assert_eq!(step(&mut e, Event::Launched(launched), clock.at(1000)), []);
    assert!(e.log.as_ref().is_some_and(|l| l.pipe));
}

#[test]
fn a_pipe_that_could_not_be_made_is_asked_for_again() {
    let clock = Clock::new();
    let run = Run::started(SERVICE_PID, clock.at(0));
    // The service's supervisor was adopted without its pipe: the logger gets a new one.
    let (mut e, actions) = appear(
        Found {
            log_dir: true,
            service: Adoption::Running(run),
            log: Adoption::None,
            pipe: false,
        },
        clock.at(0),
    );
    assert_eq!(
        actions,
        [
            Report(Report::PipeNotTakenOver),
            OpenPipe,
            Start(Log, End::PipeRead)
        ]
    );
    let launched = Launched {
        log: Some(Err(failed("Too many open files", true))),
        service: None,
        pipe_failed: true,
        reopen_failed: false,
    };
    step(&mut e, Event::Launched(launched), clock.at(0));
    assert!(e.log.as_ref().is_some_and(|l| !l.pipe));
    assert_eq!(
        step(&mut e, Event::Due { log_dir: false }, clock.at(1000)),
        [OpenPipe, Start(Log, End::PipeRead)]
    );
}

#[test]
fn a_shortage_of_fds_is_retried_steadily_without_back_off() {
    let clock = Clock::new();
    let (mut e, _) = appear(found(false), clock.at(0));
    for round in 0..4u64 {
        let now = clock.at(round * 1000);
        if round > 0 {
            assert_eq!(
                step(&mut e, Event::Due { log_dir: false }, now),
                [Start(Service, End::Uncaught)]
            );
        }
        let launched = Launched {
            log: None,
            service: Some(Err(failed("Too many open files", true))),
            pipe_failed: false,
            reopen_failed: false,
        };
        assert_eq!(
            step(&mut e, Event::Launched(launched), now),
            [Report(Report::FdShortage {
                role: Service,
                error: "Too many open files".into()
            })]
        );
        assert_eq!(e.deadline(), Some(now + FD_SHORTAGE_RETRY));
        assert_eq!(e.service.quick_deaths, 0);
    }
}

#[test]
fn quick_deaths_back_off_said_once_and_a_long_run_resets() {
    let clock = Clock::new();
    let mut e = running(&clock, false, 0);
    let mut now = 0;
    for (i, secs) in [1u64, 2, 4, 8, 16, 30, 30].into_iter().enumerate() {
        now += 100;
        let actions = step(
            &mut e,
            exited(Service, SERVICE_PID, NOTHING_LEFT),
            clock.at(now),
        );
        let report = Report(Report::Ended {
            role: Service,
            status: "exit 1".into(),
            delay: Duration::from_secs(secs),
        });
        assert_eq!(
            actions,
            if i == 0 { vec![report] } else { vec![] },
            "death {i}"
        );
        now += secs * 1000;
        assert_eq!(e.deadline(), Some(clock.at(now)));
        assert_eq!(
            step(&mut e, Event::Due { log_dir: false }, clock.at(now)),
            [Start(Service, End::Uncaught)]
        );
        step(&mut e, ok(false, true), clock.at(now));
    }
    // A run of a minute is not failing: restarted at once, and said again.
    now += 60_000;
    let actions = step(
        &mut e,
        exited(Service, SERVICE_PID, NOTHING_LEFT),
        clock.at(now),
    );
    assert_eq!(
        actions,
        [Report(Report::Ended {
            role: Service,
            status: "exit 1".into(),
            delay: Duration::ZERO
        })]
    );
    assert!(e.service.due(clock.at(now)));
}

#[test]
fn an_exec_that_failed_is_said_as_a_failed_start() {
    let clock = Clock::new();
    let mut e = running(&clock, false, 0);
    let event = Event::Exited {
        role: Service,
        pid: SERVICE_PID,
        status: "exit 127".into(),
        exec_error: Some("Permission denied".into()),
        drain: Drain::default(),
    };
    assert_eq!(
        step(&mut e, event, clock.at(10)),
        [Report(Report::StartFailed {
            role: Service,
            error: "Permission denied".into(),
            delay: Duration::from_secs(1)
        })]
    );
}

#[test]
fn a_stray_pid_changes_nothing() {
    let clock = Clock::new();
    let mut e = running(&clock, true, 0);
    let before = e.clone();
    assert_eq!(
        step(&mut e, exited(Service, 999, NOTHING_LEFT), clock.at(10)),
        []
    );
    assert_eq!(e, before);
}

#[test]
fn teardown_stops_the_service_then_hups_the_logger_then_forgets_the_entry() {
    let clock = Clock::new();
    let mut e = running(&clock, true, 0);
    // The service first: TERM to its supervisor, its cgroup noted while it runs.
    assert_eq!(
        step(&mut e, Event::Vanished { drain: LINES_LEFT }, clock.at(10)),
        [NoteCgroup(Service), Signal(Service, Signal::TERM)]
    );
    assert!(!e.wanted);
    // A second TERM is not sent.
    assert_eq!(
        step(&mut e, Event::Vanished { drain: LINES_LEFT }, clock.at(20)),
        []
    );
    // It exited: its cgroup goes, and the logger's state is looked at before its HUP. svscan
    // keeps the write end until then: a logger that read EOF before its supervisor got the
    // HUP would be started again.
    assert_eq!(
        step(
            &mut e,
            exited(Service, SERVICE_PID, LINES_LEFT),
            clock.at(30)
        ),
        [RemoveCgroup(Service), WatchStatus, CheckLogger]
    );
    assert!(e.service.is_gone());
    assert!(e
        .log
        .as_ref()
        .is_some_and(|l| l.hup_pending && !l.leftover && l.pipe));
    // The HUP first, then the write end is let go.
    assert_eq!(
        step(&mut e, Event::LoggerSeen(Logger::Running), clock.at(30)),
        [
            UnwatchStatus,
            NoteCgroup(Log),
            Signal(Log, Signal::HUP),
            PipeToLeftover
        ]
    );
    assert!(e.log.as_ref().is_some_and(|l| l.leftover && !l.pipe));
    assert!(!e.finished());
    // The logger drained the pipe and its supervisor exited.
    assert_eq!(
        step(&mut e, exited(Log, LOG_PID, NOTHING_LEFT), clock.at(40)),
        [DropLeftover(Some(LOG_DIR_GONE)), RemoveCgroup(Log)]
    );
    assert!(e.finished());
}

#[test]
fn a_service_waiting_out_its_back_off_is_gone_at_once_with_its_cgroup() {
    let clock = Clock::new();
    let mut e = throttled(&clock, true);
    assert_eq!(
        step(
            &mut e,
            Event::Vanished {
                drain: NOTHING_LEFT
            },
            clock.at(200)
        ),
        [RemoveDeadCgroup(Service), WatchStatus, CheckLogger]
    );
    let mut e = throttled(&clock, false);
    assert_eq!(
        step(
            &mut e,
            Event::Vanished {
                drain: Drain::default()
            },
            clock.at(200)
        ),
        [RemoveDeadCgroup(Service)]
    );
    assert!(e.finished());
}

#[test]
fn the_hup_waits_for_the_logger_to_run() {
    let clock = Clock::new();
    let mut e = hup_pending(&clock);
    assert_eq!(
        step(&mut e, Event::LoggerSeen(Logger::Coming), clock.at(6000)),
        []
    );
    assert!(e.awaits_hup().is_some());
    assert_eq!(
        step(
            &mut e,
            Event::LoggerSeen(Logger::Unreadable),
            clock.at(6000)
        ),
        [PipeToLeftover, RecheckLogger],
        "out of fds, say: the write end is let go at once"
    );
    assert!(e.awaits_hup().is_some());
    assert_eq!(
        step(&mut e, Event::LoggerSeen(Logger::Running), clock.at(6000)),
        [UnwatchStatus, NoteCgroup(Log), Signal(Log, Signal::HUP)]
    );
    assert!(e.awaits_hup().is_none());
    // Sent once.
    assert_eq!(
        step(&mut e, Event::LoggerSeen(Logger::Running), clock.at(6000)),
        []
    );
}

#[test]
fn a_service_back_before_its_logger_is_told_to_exit_keeps_the_logger_and_its_pipe() {
    let clock = Clock::new();
    let mut e = hup_pending(&clock);
    assert_eq!(
        step(&mut e, Event::Returned, clock.at(6000)),
        [UnwatchStatus]
    );
    assert!(e.awaits_hup().is_none());
    // Started again on the pipe its logger still reads: no new pipe, no new logger.
    assert_eq!(
        step(&mut e, Event::Due { log_dir: true }, clock.at(6000)),
        [Start(Service, End::PipeWrite)]
    );
}

#[test]
fn a_log_supervisor_that_dies_before_its_hup_leaves_the_pipe_to_the_next_one() {
    let clock = Clock::new();
    let mut e = hup_pending(&clock);
    assert_eq!(
        step(&mut e, exited(Log, LOG_PID, LINES_LEFT), clock.at(6000)),
        [
            UnwatchStatus,
            PipeToLeftover,
            Report(Report::Ended {
                role: Log,
                status: "exit 1".into(),
                delay: Duration::ZERO
            })
        ]
    );
    assert!(e.log.as_ref().is_some_and(|l| l.leftover && !l.pipe));
    // The next one drains what is left, and is then told to exit.
    assert_eq!(
        step(&mut e, Event::Due { log_dir: true }, clock.at(6000)),
        [LeftoverToPipe, Start(Log, End::Leftover)]
    );
}

#[test]
fn a_logger_that_stays_down_drops_the_pipe_aloud_and_is_told_to_exit() {
    let clock = Clock::new();
    let mut e = hup_pending(&clock);
    assert_eq!(
        step(&mut e, Event::LoggerSeen(Logger::Down), clock.at(6000)),
        [
            UnwatchStatus,
            NoteCgroup(Log),
            Signal(Log, Signal::HUP),
            PipeToLeftover,
            DropLeftover(Some(LOGGER_DOWN))
        ]
    );
    assert!(e.log.as_ref().is_some_and(|l| !l.leftover && !l.pipe));
}

#[test]
fn a_logger_that_dies_while_draining_is_started_again_on_what_is_left() {
    let clock = Clock::new();
    let mut e = draining(&clock);
    // Lines left, and its directory still there: kept, quietly (it was told to stop), and
    // restarted at once after its long run.
    assert_eq!(
        step(&mut e, exited(Log, LOG_PID, LINES_LEFT), clock.at(5100)),
        []
    );
    assert!(e.log.as_ref().is_some_and(|l| l.leftover));
    assert_eq!(e.deadline(), Some(clock.at(5100)));
    assert!(e.probes_log(clock.at(5100)));
    // Started on the leftover with a write end again, so that it cannot read EOF before its
    // supervisor has the HUP (else it would be started once more, on nothing).
    assert_eq!(
        step(&mut e, Event::Due { log_dir: true }, clock.at(5100)),
        [LeftoverToPipe, Start(Log, End::Leftover)]
    );
    assert!(e.log.as_ref().is_some_and(|l| l.pipe && !l.leftover));
    // It is to exit once that is read, its status watched.
    assert_eq!(step(&mut e, ok(true, false), clock.at(5100)), [WatchStatus]);
    assert!(e.awaits_hup().is_some());
    let mut told = e.clone();
    // Dying at once, not told to stop: said, and the back-off; no status to watch now, and
    // the write end goes until the next start.
    assert_eq!(
        step(&mut e, exited(Log, LOG_PID, LINES_LEFT), clock.at(5200)),
        [
            UnwatchStatus,
            PipeToLeftover,
            Report(Report::Ended {
                role: Log,
                status: "exit 1".into(),
                delay: Duration::from_secs(1)
            })
        ]
    );
    assert_eq!(e.deadline(), Some(clock.at(6200)));
    // Or seen running: the HUP, and only then the write end goes.
    assert_eq!(
        step(
            &mut told,
            Event::LoggerSeen(Logger::Running),
            clock.at(5200)
        ),
        [
            UnwatchStatus,
            NoteCgroup(Log),
            Signal(Log, Signal::HUP),
            PipeToLeftover
        ]
    );
    assert!(told.log.as_ref().is_some_and(|l| l.leftover && !l.pipe));
}

#[test]
fn a_failed_start_on_the_leftover_gives_up_its_write_end_until_the_next() {
    let clock = Clock::new();
    let mut e = leftover_waiting(&clock);
    step(&mut e, Event::Due { log_dir: true }, clock.at(5100));
    let launched = Launched {
        log: Some(Err(failed("no supervise", false))),
        ..Launched::default()
    };
    let actions = step(&mut e, Event::Launched(launched), clock.at(5100));
    assert!(actions.contains(&PipeToLeftover), "{actions:?}");
    assert!(e.log.as_ref().is_some_and(|l| l.leftover && !l.pipe));
    assert!(e.awaits_hup().is_none());
    assert!(e.deadline().is_some());
}

#[test]
fn a_leftover_that_cannot_get_a_write_end_is_drained_bare() {
    // No /proc, say: the logger is started on the read end alone, as before there was a
    // write end to give it.
    let clock = Clock::new();
    let mut e = leftover_waiting(&clock);
    step(&mut e, Event::Due { log_dir: true }, clock.at(5100));
    let launched = Launched {
        log: Some(Ok(LOG_PID)),
        reopen_failed: true,
        ..Launched::default()
    };
    assert_eq!(
        step(&mut e, Event::Launched(launched), clock.at(5100)),
        [WatchStatus]
    );
    assert!(e.log.as_ref().is_some_and(|l| l.leftover && !l.pipe));
    assert_eq!(
        step(&mut e, Event::LoggerSeen(Logger::Running), clock.at(5200)),
        [UnwatchStatus, NoteCgroup(Log), Signal(Log, Signal::HUP)]
    );
}

#[test]
fn what_is_left_goes_when_the_logs_directory_does() {
    let clock = Clock::new();
    let mut e = draining(&clock);
    assert_eq!(
        step(&mut e, exited(Log, LOG_PID, DIR_GONE), clock.at(5100)),
        [DropLeftover(Some(LOG_DIR_GONE)), RemoveCgroup(Log)]
    );
    assert!(e.finished());
    // Or when it goes while the logger waits to drain.
    let mut e = leftover_waiting(&clock);
    assert_eq!(
        step(&mut e, Event::Due { log_dir: false }, clock.at(7000)),
        [DropLeftover(Some(LOG_DIR_GONE))]
    );
    assert!(e.finished());
}

#[test]
fn a_logger_in_back_off_at_teardown_drains_if_lines_are_left() {
    let clock = Clock::new();
    let mut e = running(&clock, true, 0);
    step(&mut e, exited(Log, LOG_PID, NOTHING_LEFT), clock.at(100));
    step(&mut e, Event::Vanished { drain: LINES_LEFT }, clock.at(200));
    assert_eq!(
        step(
            &mut e,
            exited(Service, SERVICE_PID, LINES_LEFT),
            clock.at(300)
        ),
        [RemoveCgroup(Service), PipeToLeftover]
    );
    assert!(!e.finished());
    // Nothing left: the logger is not started again.
    let mut e = running(&clock, true, 0);
    step(&mut e, exited(Log, LOG_PID, NOTHING_LEFT), clock.at(100));
    step(
        &mut e,
        Event::Vanished {
            drain: NOTHING_LEFT,
        },
        clock.at(200),
    );
    assert_eq!(
        step(
            &mut e,
            exited(Service, SERVICE_PID, NOTHING_LEFT),
            clock.at(300)
        ),
        [
            RemoveCgroup(Service),
            PipeToLeftover,
            RemoveDeadCgroup(Log),
            DropLeftover(Some(LOG_DIR_GONE))
        ]
    );
    assert!(e.finished());
}

#[test]
fn a_directory_back_while_draining_gets_a_new_pipe() {
    let clock = Clock::new();
    let mut e = leftover_waiting(&clock);
    assert_eq!(
        step(&mut e, Event::Returned, clock.at(7000)),
        [DropLeftover(None)]
    );
    assert!(e.wanted);
    assert!(e.service.due(clock.at(7000)));
    assert_eq!(e.service.quick_deaths, 0);
    assert_eq!(
        step(&mut e, Event::Due { log_dir: true }, clock.at(7000)),
        [
            OpenPipe,
            Start(Log, End::PipeRead),
            Start(Service, End::PipeWrite)
        ]
    );
    // Still wanted: nothing to do.
    assert_eq!(step(&mut e, Event::Returned, clock.at(7000)), []);
}

#[test]
fn a_log_made_just_after_its_service_restarts_the_supervisor_with_it() {
    let clock = Clock::new();
    let mut e = running(&clock, false, 0);
    assert_eq!(
        step(&mut e, Event::LogAppeared { log_dir: false }, clock.at(5)),
        []
    );
    assert_eq!(
        step(&mut e, Event::LogAppeared { log_dir: true }, clock.at(10)),
        [Signal(Service, Signal::TERM), LogWatchDone]
    );
    assert!(e.service.restart_now);
    // Its exit is not a failure: started again at once, quietly, now with the log.
    assert_eq!(
        step(
            &mut e,
            exited(Service, SERVICE_PID, NOTHING_LEFT),
            clock.at(20)
        ),
        []
    );
    assert!(e.service.due(clock.at(20)));
    assert!(e.probes_log(clock.at(20)));
    assert_eq!(
        step(&mut e, Event::Due { log_dir: true }, clock.at(20)),
        [
            OpenPipe,
            Start(Log, End::PipeRead),
            Start(Service, End::PipeWrite)
        ]
    );
    assert_eq!(
        step(&mut e, Event::LogAppeared { log_dir: true }, clock.at(30)),
        [LogWatchDone]
    );
}

#[test]
fn a_log_added_later_is_connected_at_the_next_start() {
    let clock = Clock::new();
    let mut e = throttled(&clock, false);
    assert_eq!(
        step(&mut e, Event::Due { log_dir: true }, clock.at(1100)),
        [
            OpenPipe,
            Start(Log, End::PipeRead),
            Start(Service, End::PipeWrite)
        ]
    );
}

#[test]
fn the_grace_over_kills_what_still_runs_of_that_role() {
    let clock = Clock::new();
    let mut e = stopping(&clock);
    assert_eq!(
        step(&mut e, Event::GraceOver(Service), clock.at(15000)),
        [
            Report(Report::Straggler(Service)),
            KillGroup(Service),
            Signal(Service, Signal::KILL)
        ]
    );
    let mut e = hup_pending(&clock);
    assert_eq!(step(&mut e, Event::GraceOver(Service), clock.at(15000)), []);
    assert_eq!(
        step(&mut e, Event::GraceOver(Log), clock.at(15000)),
        [
            Report(Report::Straggler(Log)),
            KillGroup(Log),
            Signal(Log, Signal::KILL)
        ]
    );
    let mut e = running(&clock, false, 0);
    assert_eq!(step(&mut e, Event::GraceOver(Log), clock.at(15000)), []);
}

/// Every state against every event: no panic, and the invariants hold (a start only when
/// due and asked, a signal only to a supervisor that runs, one pipe or its leftover, a HUP
/// awaited only from a running logger, nothing of a finished entry started).
#[test]
fn every_state_times_every_event_keeps_the_invariants() {
    let clock = Clock::new();
    let states: Vec<(&str, Entry)> = vec![
        ("new, no log", appear(found(false), clock.at(0)).0),
        ("new, with log", appear(found(true), clock.at(0)).0),
        ("running, no log", running(&clock, false, 0)),
        ("running, with log", running(&clock, true, 0)),
        ("throttled, no log", throttled(&clock, false)),
        ("throttled, with log", throttled(&clock, true)),
        ("young, log appeared", {
            let mut e = running(&clock, false, 0);
            step(&mut e, Event::LogAppeared { log_dir: true }, clock.at(10));
            e
        }),
        ("stopping", stopping(&clock)),
        ("hup pending", hup_pending(&clock)),
        ("draining", draining(&clock)),
        ("leftover waiting", leftover_waiting(&clock)),
        ("finished", {
            let mut e = draining(&clock);
            step(&mut e, exited(Log, LOG_PID, NOTHING_LEFT), clock.at(5100));
            e
        }),
    ];
    let mut events = vec![
        Event::Due { log_dir: false },
        Event::Due { log_dir: true },
        ok(true, true),
        ok(false, true),
        ok(true, false),
        Event::Launched(Launched {
            log: Some(Err(failed("e", false))),
            service: Some(Err(failed("e", true))),
            pipe_failed: false,
            reopen_failed: false,
        }),
        Event::Launched(Launched {
            log: Some(Ok(LOG_PID + 1)),
            reopen_failed: true,
            ..Launched::default()
        }),
        Event::Returned,
        Event::LogAppeared { log_dir: false },
        Event::LogAppeared { log_dir: true },
        Event::GraceOver(Service),
        Event::GraceOver(Log),
    ];
    for drain in [Drain::default(), NOTHING_LEFT, LINES_LEFT, DIR_GONE] {
        events.push(Event::Vanished { drain });
        for role in [Service, Log] {
            for pid in [SERVICE_PID, LOG_PID, 999] {
                events.push(exited(role, pid, drain));
            }
        }
    }
    for state in [
        Logger::Running,
        Logger::Coming,
        Logger::Down,
        Logger::Unreadable,
    ] {
        events.push(Event::LoggerSeen(state));
    }
    for (name, state) in &states {
        for event in &events {
            for at in [100, 6000, 60_000] {
                let mut e = state.clone();
                let now = clock.at(at);
                let due_before = [Service, Log].map(|r| e.slot(r).is_some_and(|s| s.due(now)));
                let pipe_before = e.log.as_ref().is_some_and(|l| l.pipe);
                let was_finished = e.finished();
                let hup_before = e.log.as_ref().is_some_and(|l| l.hup_pending);
                let actions = step(&mut e, event.clone(), now);
                let what = format!("{name} × {event:?} at {at}");
                for action in &actions {
                    match action {
                        Start(role, end) => {
                            assert!(matches!(event, Event::Due { .. }), "{what}: start unasked");
                            assert!(!was_finished, "{what}: start of a finished entry");
                            let due = match role {
                                Service => due_before[0],
                                // A log/ just found is due with its service.
                                Log => due_before[1] || due_before[0],
                            };
                            assert!(due, "{what}: start of {role:?} not due");
                            let pipe = e.log.as_ref().is_some_and(|l| l.pipe);
                            match end {
                                End::PipeRead | End::PipeWrite => assert!(pipe, "{what}"),
                                // With a write end again: EOF only once it is let go.
                                End::Leftover => assert!(
                                    pipe && actions.contains(&LeftoverToPipe),
                                    "{what}: a drain without a writer"
                                ),
                                End::Uncaught => assert!(e.log.is_none(), "{what}"),
                            }
                        }
                        Signal(role, _) | KillGroup(role) | NoteCgroup(role) => assert!(
                            e.slot(*role).is_some_and(|s| s.running().is_some()),
                            "{what}: {action:?} to a supervisor that does not run"
                        ),
                        OpenPipe => assert!(!pipe_before, "{what}: a second pipe"),
                        LeftoverToPipe => assert!(!pipe_before, "{what}: a second writer"),
                        ClosePipe => assert!(pipe_before, "{what}: no pipe to close"),
                        _ => {}
                    }
                }
                if let Some(log) = &e.log {
                    assert!(!(log.pipe && log.leftover), "{what}: pipe and leftover");
                    if log.hup_pending {
                        assert!(log.slot.running().is_some(), "{what}: HUP for no logger");
                    }
                    if log.leftover {
                        assert!(!e.wanted, "{what}: leftover of a wanted entry");
                    }
                }
                if e.service.is_gone() {
                    assert!(!e.wanted, "{what}: a wanted service gone");
                }
                // The status is watched exactly while the HUP is pending.
                let hup_after = e.log.as_ref().is_some_and(|l| l.hup_pending);
                let watches = actions.iter().filter(|a| **a == WatchStatus).count();
                let unwatches = actions.iter().filter(|a| **a == UnwatchStatus).count();
                assert_eq!(
                    (watches, unwatches),
                    match (hup_before, hup_after) {
                        (false, true) => (1, 0),
                        (true, false) => (0, 1),
                        _ => (0, 0),
                    },
                    "{what}: watches of the logger's status"
                );
                if let Some(at) = e.deadline() {
                    assert!(at >= clock.at(0), "{what}");
                }
                assert!(
                    actions.iter().filter(|a| matches!(a, OpenPipe)).count() <= 1,
                    "{what}"
                );
            }
        }
    }
}
