//! Every state × event pair of the machine, with plain values: no process, no file, no clock.

use super::*;
use warden::control::Command as C;

const T0: u64 = 1_800_000_000;

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

    fn at(&self, ms: u64) -> Now {
        let d = Duration::from_millis(ms);
        Now {
            mono: self.origin + d,
            wall: Tai64N::from_system_time(std::time::UNIX_EPOCH + Duration::from_secs(T0) + d),
        }
    }
}

fn limits() -> Limits {
    Limits::default()
}

fn boot(clock: &Clock, normally_down: bool) -> Machine {
    let mut m = Machine::new(clock.at(0));
    m.step(
        Event::Boot {
            normally_down,
            leftovers: false,
            limits: limits(),
            customisable: false,
        },
        clock.at(0),
    );
    m
}

/// A machine whose run (pid 100) started at `ms`.
fn running(clock: &Clock, ms: u64) -> Machine {
    let mut m = boot(clock, false);
    m.step(
        Event::RunStarted {
            pid: 100,
            limits: limits(),
        },
        clock.at(ms),
    );
    m
}

fn exited(pid: u32, exit: Exit, leftovers: bool, has_finish: bool) -> Event {
    Event::Exited {
        pid,
        exit,
        leftovers,
        has_finish,
    }
}

/// A machine whose run died and whose `./finish` (pid 200) runs.
fn finishing(clock: &Clock) -> Machine {
    let mut m = running(clock, 0);
    m.step(exited(100, Exit::Code(3), false, true), clock.at(5000));
    m.step(Event::FinishStarted { pid: 200 }, clock.at(5000));
    m
}

/// A machine whose run died and left processes in its tree.
fn leftovers(clock: &Clock) -> Machine {
    let mut m = running(clock, 0);
    m.step(exited(100, Exit::Code(0), true, false), clock.at(5000));
    m
}

/// A machine waiting 1 s before restarting a run that died at once.
fn throttled(clock: &Clock) -> Machine {
    let mut m = running(clock, 0);
    m.step(exited(100, Exit::Code(1), false, false), clock.at(100));
    m
}

fn acts(a: Actions) -> Vec<Action> {
    a.as_slice().to_vec()
}

use Action::{Publish, Signal as Sig, SpawnFinish, SpawnRun};

#[test]
fn boot_starts_the_service_unless_down() {
    let clock = Clock::new();
    let mut m = Machine::new(clock.at(0));
    let a = m.step(
        Event::Boot {
            normally_down: false,
            leftovers: false,
            limits: limits(),
            customisable: false,
        },
        clock.at(0),
    );
    assert_eq!(acts(a), vec![SpawnRun]);
    assert_eq!(m.want, Want::Up);

    let mut m = Machine::new(clock.at(0));
    let a = m.step(
        Event::Boot {
            normally_down: true,
            leftovers: false,
            limits: limits(),
            customisable: false,
        },
        clock.at(0),
    );
    assert_eq!(acts(a), vec![Publish]);
    assert_eq!(m.want, Want::Down);
    assert_eq!(m.status().state, RunState::Down);
    assert_eq!(m.deadline(), None, "idle: no wakeup");
}

#[test]
fn boot_with_leftovers_stops_them_first() {
    let clock = Clock::new();
    let mut m = Machine::new(clock.at(0));
    let a = m.step(
        Event::Boot {
            normally_down: false,
            leftovers: true,
            limits: limits(),
            customisable: false,
        },
        clock.at(0),
    );
    assert_eq!(
        acts(a),
        vec![
            Sig(Target::Tree, Signal::TERM),
            Sig(Target::Tree, Signal::CONT),
            Publish
        ]
    );
    assert!(m.awaiting_tree());
    assert_eq!(m.deadline(), Some(clock.at(2000).mono));
    assert_eq!(acts(m.step(Event::TreeEmpty, clock.at(10))), vec![SpawnRun]);
}

#[test]
fn run_started_records_the_run() {
    let clock = Clock::new();
    let m = running(&clock, 50);
    let s = m.status();
    assert_eq!((s.pid, s.state, s.want), (100, RunState::Run, Want::Up));
    assert_eq!(s.stamp, clock.at(50).wall);
    assert_eq!(m.ext.pgid, Some(100));
    assert_eq!(m.ext.restarts, 0);
    assert_eq!(m.deadline(), None);
}

#[test]
fn crash_after_a_long_run_restarts_at_once() {
    let clock = Clock::new();
    let mut m = running(&clock, 0);
    let a = m.step(exited(100, Exit::Code(1), false, false), clock.at(5000));
    assert_eq!(acts(a), vec![SpawnRun]);
    assert_eq!(m.ext.last_exit, Some(Exit::Code(1)));
    m.step(
        Event::RunStarted {
            pid: 101,
            limits: limits(),
        },
        clock.at(5001),
    );
    assert_eq!(m.ext.restarts, 1);
}

#[test]
fn quick_deaths_back_off_doubling_up_to_the_cap_and_reset() {
    let clock = Clock::new();
    let mut m = running(&clock, 0);
    let mut t = 0;
    let mut waits = Vec::new();
    for pid in 100..110 {
        let a = m.step(exited(pid, Exit::Code(1), false, false), clock.at(t + 10));
        assert_eq!(acts(a), vec![Publish], "throttled, not started");
        assert_eq!(m.status().want, Want::Up);
        let due = m.deadline().unwrap();
        let wait = due - clock.at(t + 10).mono;
        waits.push(wait.as_secs());
        assert!(m.ext.next_start_at.is_some());
        t = (due - clock.origin).as_millis() as u64;
        assert_eq!(acts(m.step(Event::Tick, clock.at(t))), vec![SpawnRun]);
        m.step(
            Event::RunStarted {
                pid: pid + 1,
                limits: limits(),
            },
            clock.at(t),
        );
        assert_eq!(m.ext.next_start_at, None);
    }
    assert_eq!(waits, vec![1, 2, 4, 8, 16, 32, 60, 60, 60, 60]);
    // A run that lives a second resets the back-off: the next death restarts at once.
    let a = m.step(exited(110, Exit::Code(1), false, false), clock.at(t + 1500));
    assert_eq!(acts(a), vec![SpawnRun]);
    m.step(
        Event::RunStarted {
            pid: 111,
            limits: limits(),
        },
        clock.at(t + 1500),
    );
    m.step(exited(111, Exit::Code(1), false, false), clock.at(t + 1600));
    assert_eq!(m.deadline(), Some(clock.at(t + 2600).mono));
}

#[test]
fn tick_before_the_deadline_does_nothing() {
    let clock = Clock::new();
    let mut m = throttled(&clock);
    assert_eq!(acts(m.step(Event::Tick, clock.at(500))), vec![]);
    assert_eq!(acts(m.step(Event::Tick, clock.at(1100))), vec![SpawnRun]);
}

#[test]
fn commands_are_served_while_throttled() {
    let clock = Clock::new();
    // `d` cancels the pending start.
    let mut m = throttled(&clock);
    assert_eq!(
        acts(m.step(Event::Command(C::Down), clock.at(200))),
        vec![Publish]
    );
    assert_eq!(m.deadline(), None);
    assert_eq!(m.ext.next_start_at, None);
    // `u` starts at once.
    let mut m = throttled(&clock);
    let a = m.step(Event::Command(C::Up), clock.at(200));
    assert_eq!(acts(a), vec![SpawnRun, Publish]);
    // `x` exits.
    let mut m = throttled(&clock);
    let a = m.step(Event::Command(C::Exit), clock.at(200));
    assert_eq!(acts(a), vec![Publish, Action::Exit]);
    assert!(m.done);
}

#[test]
fn start_failure_is_recorded_and_retried_with_back_off() {
    let clock = Clock::new();
    let mut m = boot(&clock, false);
    let a = m.step(
        Event::StartFailed {
            error: "unable to start ./run in /s: No such file or directory".into(),
        },
        clock.at(0),
    );
    assert_eq!(acts(a), vec![Publish]);
    assert!(m.ext.last_error.as_deref().unwrap().contains("./run"));
    assert_eq!(m.deadline(), Some(clock.at(1000).mono));
    assert_eq!(acts(m.step(Event::Tick, clock.at(1000))), vec![SpawnRun]);
    m.step(
        Event::StartFailed {
            error: "again".into(),
        },
        clock.at(1000),
    );
    assert_eq!(m.deadline(), Some(clock.at(3000).mono));
    // Fixed: the retry starts it and the error is cleared.
    m.step(Event::Tick, clock.at(3000));
    m.step(
        Event::RunStarted {
            pid: 7,
            limits: limits(),
        },
        clock.at(3000),
    );
    assert_eq!(m.ext.last_error, None);
    assert_eq!(m.status().state, RunState::Run);
}

#[test]
fn start_failure_of_once_does_not_retry() {
    let clock = Clock::new();
    let mut m = boot(&clock, true);
    assert_eq!(
        acts(m.step(Event::Command(C::Once), clock.at(0))),
        vec![SpawnRun, Publish]
    );
    m.step(Event::StartFailed { error: "x".into() }, clock.at(0));
    assert_eq!(m.deadline(), None);
}

#[test]
fn down_sends_the_down_signal_then_cont_and_arms_timeout_kill() {
    let clock = Clock::new();
    let mut m = boot(&clock, false);
    m.step(
        Event::RunStarted {
            pid: 100,
            limits: Limits {
                down_signal: Signal::INT,
                timeout_kill: Some(Duration::from_secs(3)),
                ..limits()
            },
        },
        clock.at(0),
    );
    let a = m.step(Event::Command(C::Down), clock.at(100));
    assert_eq!(
        acts(a),
        vec![
            Sig(Target::Main(100), Signal::INT),
            Sig(Target::Main(100), Signal::CONT),
            Publish
        ]
    );
    let s = m.status();
    assert!(s.term_sent);
    assert_eq!(s.want, Want::Down);
    assert_eq!(m.deadline(), Some(clock.at(3100).mono));
    let a = m.step(Event::Tick, clock.at(3100));
    assert_eq!(
        acts(a),
        vec![
            Sig(Target::Main(100), Signal::KILL),
            Sig(Target::Tree, Signal::KILL)
        ]
    );
    let a = m.step(exited(100, Exit::Signal(9), false, false), clock.at(3101));
    assert_eq!(acts(a), vec![Publish]);
    let s = m.status();
    assert_eq!((s.state, s.pid, s.term_sent), (RunState::Down, 0, false));
    assert_eq!(s.stamp, clock.at(3101).wall);
}

#[test]
fn down_without_timeout_kill_waits_forever() {
    let clock = Clock::new();
    let mut m = running(&clock, 0);
    m.step(Event::Command(C::Down), clock.at(100));
    assert_eq!(m.deadline(), None);
}

#[test]
fn down_and_up_when_already_there_change_only_want() {
    let clock = Clock::new();
    let mut m = boot(&clock, true);
    assert_eq!(
        acts(m.step(Event::Command(C::Down), clock.at(1))),
        vec![Publish]
    );
    let mut m = running(&clock, 0);
    assert_eq!(
        acts(m.step(Event::Command(C::Up), clock.at(1))),
        vec![Publish]
    );
    assert_eq!(m.status().pid, 100);
}

#[test]
fn up_on_a_down_service_starts_it() {
    let clock = Clock::new();
    let mut m = boot(&clock, true);
    assert_eq!(
        acts(m.step(Event::Command(C::Up), clock.at(1))),
        vec![SpawnRun, Publish]
    );
    assert_eq!(m.want, Want::Up);
}

#[test]
fn once_runs_and_stays_down() {
    let clock = Clock::new();
    let mut m = boot(&clock, true);
    m.step(Event::Command(C::Once), clock.at(0));
    m.step(
        Event::RunStarted {
            pid: 5,
            limits: limits(),
        },
        clock.at(0),
    );
    assert_eq!(m.status().want, Want::Down);
    let a = m.step(exited(5, Exit::Code(0), false, false), clock.at(3000));
    assert_eq!(acts(a), vec![Publish]);
    assert_eq!(m.status().state, RunState::Down);
    // `o` on a running service only changes want.
    let mut m = running(&clock, 0);
    assert_eq!(
        acts(m.step(Event::Command(C::Once), clock.at(1))),
        vec![Publish]
    );
}

#[test]
fn exit_stops_then_exits_once_down() {
    let clock = Clock::new();
    let mut m = running(&clock, 0);
    let a = m.step(Event::Command(C::Exit), clock.at(10));
    assert_eq!(
        acts(a),
        vec![
            Sig(Target::Main(100), Signal::TERM),
            Sig(Target::Main(100), Signal::CONT),
            Publish
        ]
    );
    assert!(!m.done);
    assert_eq!(m.status().stat_text(), "run, got TERM, want exit\n");
    let a = m.step(exited(100, Exit::Signal(15), false, false), clock.at(20));
    assert_eq!(acts(a), vec![Publish, Action::Exit]);
    assert!(m.done);
}

#[test]
fn exit_waits_for_finish() {
    let clock = Clock::new();
    let mut m = finishing(&clock);
    assert_eq!(
        acts(m.step(Event::Command(C::Exit), clock.at(5001))),
        vec![Publish]
    );
    assert!(!m.done);
    let a = m.step(exited(200, Exit::Code(0), false, false), clock.at(5002));
    assert_eq!(acts(a), vec![Publish, Action::Exit]);
}

#[test]
fn exit_when_down_exits_at_once() {
    let clock = Clock::new();
    let mut m = boot(&clock, true);
    assert_eq!(
        acts(m.step(Event::Command(C::Exit), clock.at(1))),
        vec![Publish, Action::Exit]
    );
}

#[test]
fn exit_after_leaves_the_service_alone_until_it_exits() {
    let clock = Clock::new();
    let mut m = running(&clock, 0);
    assert_eq!(
        acts(m.step(Event::Command(C::ExitAfter), clock.at(1))),
        vec![]
    );
    assert_eq!(m.status().want, Want::Up, "not stopped");
    let a = m.step(exited(100, Exit::Code(0), false, false), clock.at(2));
    assert_eq!(acts(a), vec![Publish, Action::Exit], "not restarted");
    let mut m = boot(&clock, true);
    assert_eq!(
        acts(m.step(Event::Command(C::ExitAfter), clock.at(1))),
        vec![Action::Exit]
    );
    // During the back-off it exits at once too.
    let mut m = throttled(&clock);
    assert_eq!(
        acts(m.step(Event::Command(C::ExitAfter), clock.at(200))),
        vec![Action::Exit]
    );
}

#[test]
fn exit_after_runs_finish_first() {
    let clock = Clock::new();
    let mut m = running(&clock, 0);
    m.step(Event::Command(C::ExitAfter), clock.at(1));
    let a = m.step(exited(100, Exit::Code(0), false, true), clock.at(2));
    assert_eq!(acts(a), vec![SpawnFinish(Exit::Code(0)), Publish]);
    m.step(Event::FinishStarted { pid: 200 }, clock.at(2));
    let a = m.step(exited(200, Exit::Code(0), false, false), clock.at(3));
    assert_eq!(acts(a), vec![Publish, Action::Exit]);
}

#[test]
fn signal_commands_go_to_the_main_process_only_while_it_runs() {
    let clock = Clock::new();
    let table = [
        (C::Hup, Signal::HUP),
        (C::Alarm, Signal::ALARM),
        (C::Interrupt, Signal::INT),
        (C::Quit, Signal::QUIT),
        (C::Usr1, Signal::USR1),
        (C::Usr2, Signal::USR2),
        (C::Kill, Signal::KILL),
    ];
    for (command, signal) in table {
        let mut m = running(&clock, 0);
        assert_eq!(
            acts(m.step(Event::Command(command), clock.at(1))),
            vec![Sig(Target::Main(100), signal)]
        );
        for mut idle in [boot(&clock, true), finishing(&clock), throttled(&clock)] {
            assert_eq!(
                acts(idle.step(Event::Command(command), clock.at(6000))),
                vec![]
            );
        }
    }
}

#[test]
fn term_sets_the_flag_and_restarts() {
    let clock = Clock::new();
    let mut m = running(&clock, 0);
    let a = m.step(Event::Command(C::Term), clock.at(2000));
    assert_eq!(acts(a), vec![Sig(Target::Main(100), Signal::TERM), Publish]);
    assert!(m.status().term_sent);
    let a = m.step(exited(100, Exit::Signal(15), false, false), clock.at(2001));
    assert_eq!(acts(a), vec![SpawnRun]);
    // With want down (after `o`) TERM is followed by CONT, as runsv does.
    let mut m = boot(&clock, true);
    m.step(Event::Command(C::Once), clock.at(0));
    m.step(
        Event::RunStarted {
            pid: 5,
            limits: limits(),
        },
        clock.at(0),
    );
    let a = m.step(Event::Command(C::Term), clock.at(1));
    assert_eq!(
        acts(a),
        vec![
            Sig(Target::Main(5), Signal::TERM),
            Sig(Target::Main(5), Signal::CONT),
            Publish
        ]
    );
}

#[test]
fn pause_and_cont() {
    let clock = Clock::new();
    let mut m = running(&clock, 0);
    let a = m.step(Event::Command(C::Pause), clock.at(1));
    assert_eq!(acts(a), vec![Sig(Target::Main(100), Signal::STOP), Publish]);
    assert!(m.status().paused);
    let a = m.step(Event::Command(C::Cont), clock.at(2));
    assert_eq!(acts(a), vec![Sig(Target::Main(100), Signal::CONT), Publish]);
    assert!(!m.status().paused);
    // As runsv: the flag follows the command even when nothing runs.
    let mut m = boot(&clock, true);
    assert_eq!(
        acts(m.step(Event::Command(C::Pause), clock.at(1))),
        vec![Publish]
    );
    assert!(m.status().paused);
}

#[test]
fn finish_gets_exit_code_or_signal_and_shows_its_pid() {
    let clock = Clock::new();
    let mut m = running(&clock, 0);
    let a = m.step(exited(100, Exit::Signal(9), false, true), clock.at(5000));
    assert_eq!(acts(a), vec![SpawnFinish(Exit::Signal(9)), Publish]);
    m.step(Event::FinishStarted { pid: 200 }, clock.at(5000));
    let s = m.status();
    assert_eq!((s.state, s.pid), (RunState::Finish, 200));
    assert_eq!(s.stamp, clock.at(0).wall, "not changed on entering finish");
    assert_eq!(m.finish_pid(), Some(200));
    // Killed after timeout-finish (5 s default).
    assert_eq!(m.deadline(), Some(clock.at(10000).mono));
    assert_eq!(
        acts(m.step(Event::Tick, clock.at(10000))),
        vec![Sig(Target::Finish(200), Signal::KILL)]
    );
    let a = m.step(exited(200, Exit::Signal(9), false, false), clock.at(10001));
    assert_eq!(acts(a), vec![SpawnRun]);
}

#[test]
fn finish_that_cannot_start_is_skipped() {
    let clock = Clock::new();
    let mut m = running(&clock, 0);
    m.step(exited(100, Exit::Code(0), false, true), clock.at(5000));
    let a = m.step(
        Event::FinishFailed {
            error: "unable to start ./finish".into(),
        },
        clock.at(5000),
    );
    assert_eq!(acts(a), vec![SpawnRun]);
    assert!(m.ext.last_error.is_some());
}

#[test]
fn commands_during_finish() {
    let clock = Clock::new();
    let mut m = finishing(&clock);
    assert_eq!(
        acts(m.step(Event::Command(C::Down), clock.at(5001))),
        vec![Publish]
    );
    let a = m.step(exited(200, Exit::Code(0), false, false), clock.at(5002));
    assert_eq!(acts(a), vec![Publish], "want down: not restarted");
    let mut m = finishing(&clock);
    assert_eq!(
        acts(m.step(Event::Command(C::Up), clock.at(5001))),
        vec![Publish]
    );
    assert_eq!(
        acts(m.step(Event::Command(C::Once), clock.at(5001))),
        vec![Publish]
    );
    assert_eq!(
        acts(m.step(Event::Command(C::Pause), clock.at(5001))),
        vec![Publish]
    );
    assert_eq!(
        acts(m.step(Event::Command(C::Term), clock.at(5001))),
        vec![]
    );
}

#[test]
fn leftovers_get_term_cont_then_kill_after_the_grace() {
    let clock = Clock::new();
    let mut m = running(&clock, 0);
    let a = m.step(exited(100, Exit::Code(0), true, false), clock.at(5000));
    assert_eq!(
        acts(a),
        vec![
            Sig(Target::Tree, Signal::TERM),
            Sig(Target::Tree, Signal::CONT),
            Publish
        ]
    );
    assert!(m.awaiting_tree());
    // The run's pid is dead: not published (issue 11 item 12).
    let s = m.status();
    assert_eq!((s.state, s.pid), (RunState::Finish, 0));
    assert_eq!(m.ext.pgid, Some(100), "leftovers may still be in the group");
    assert_eq!(m.deadline(), Some(clock.at(7000).mono));
    let a = m.step(Event::Tick, clock.at(7000));
    assert_eq!(acts(a), vec![Sig(Target::Tree, Signal::KILL)]);
    // Issue 11 item 13: the tree is gone when it says so, not when KILL was sent.
    assert!(m.awaiting_tree());
    assert_eq!(m.status().state, RunState::Finish);
    assert_eq!(
        acts(m.step(Event::TreeEmpty, clock.at(7050))),
        vec![SpawnRun]
    );
}

#[test]
fn issue_11_item_13_a_tree_that_outlives_kill_is_waited_for_then_given_up_on() {
    let clock = Clock::new();
    let mut m = running(&clock, 0);
    m.step(exited(100, Exit::Code(0), true, false), clock.at(5000));
    let a = m.step(Event::Tick, clock.at(7000));
    assert_eq!(acts(a), vec![Sig(Target::Tree, Signal::KILL)]);
    let end = 7000 + KILLED_TREE_WAIT.as_millis() as u64;
    assert_eq!(m.deadline(), Some(clock.at(end).mono));
    assert!(acts(m.step(Event::Tick, clock.at(end - 1))).is_empty());
    assert!(m.awaiting_tree());
    // The bound: a new run after all, and the reason in the extended status.
    let a = m.step(Event::Tick, clock.at(end));
    assert_eq!(acts(a), vec![SpawnRun]);
    assert!(m
        .ext
        .last_error
        .as_deref()
        .unwrap()
        .contains("outlived KILL"));
    // A finish still running when the wait ends: the start waits for it.
    let mut m = running(&clock, 0);
    m.step(exited(100, Exit::Code(0), true, true), clock.at(5000));
    m.step(Event::FinishStarted { pid: 200 }, clock.at(5000));
    m.step(Event::Tick, clock.at(7000));
    m.step(Event::Tick, clock.at(end));
    assert!(!m.awaiting_tree());
    assert_eq!(
        acts(m.step(exited(200, Exit::Code(0), false, false), clock.at(end + 1))),
        vec![SpawnRun]
    );
}

#[test]
fn leftovers_use_timeout_kill_when_set() {
    let clock = Clock::new();
    let mut m = boot(&clock, false);
    m.step(
        Event::RunStarted {
            pid: 100,
            limits: Limits {
                timeout_kill: Some(Duration::from_millis(300)),
                ..limits()
            },
        },
        clock.at(0),
    );
    m.step(exited(100, Exit::Code(0), true, false), clock.at(5000));
    assert_eq!(m.deadline(), Some(clock.at(5300).mono));
}

#[test]
fn empty_tree_ends_the_stop() {
    let clock = Clock::new();
    let mut m = leftovers(&clock);
    assert_eq!(
        acts(m.step(Event::TreeEmpty, clock.at(5100))),
        vec![SpawnRun]
    );
    // With a finish still running, the empty tree waits for it.
    let mut m = running(&clock, 0);
    m.step(exited(100, Exit::Code(0), true, true), clock.at(5000));
    m.step(Event::FinishStarted { pid: 200 }, clock.at(5000));
    assert_eq!(acts(m.step(Event::TreeEmpty, clock.at(5100))), vec![]);
    assert_eq!(
        acts(m.step(exited(200, Exit::Code(0), false, false), clock.at(5200))),
        vec![SpawnRun]
    );
}

#[test]
fn finish_exit_with_leftovers_waits_for_the_tree() {
    let clock = Clock::new();
    let mut m = finishing(&clock);
    let a = m.step(exited(200, Exit::Code(0), true, false), clock.at(5100));
    assert_eq!(
        acts(a),
        vec![
            Sig(Target::Tree, Signal::TERM),
            Sig(Target::Tree, Signal::CONT),
            Publish
        ]
    );
    assert!(m.awaiting_tree());
}

#[test]
fn down_during_leftovers_stays_down() {
    let clock = Clock::new();
    let mut m = leftovers(&clock);
    assert_eq!(
        acts(m.step(Event::Command(C::Down), clock.at(5001))),
        vec![Publish]
    );
    assert_eq!(
        acts(m.step(Event::TreeEmpty, clock.at(5002))),
        vec![Publish]
    );
    assert_eq!(m.status().state, RunState::Down);
}

#[test]
fn unknown_pids_are_orphans() {
    let clock = Clock::new();
    for mut m in [
        boot(&clock, true),
        running(&clock, 0),
        finishing(&clock),
        leftovers(&clock),
        throttled(&clock),
    ] {
        let before = m.status();
        assert_eq!(
            acts(m.step(exited(999, Exit::Code(0), false, true), clock.at(6000))),
            vec![]
        );
        assert_eq!(m.status(), before);
    }
}

#[test]
fn ready_is_recorded_only_for_a_run() {
    let clock = Clock::new();
    let mut m = running(&clock, 0);
    assert_eq!(acts(m.step(Event::Ready, clock.at(300))), vec![Publish]);
    assert_eq!(m.ext.ready_at, Some(clock.at(300).wall));
    m.step(exited(100, Exit::Code(0), false, false), clock.at(5000));
    assert_eq!(m.ext.ready_at, None);
    for mut m in [boot(&clock, true), finishing(&clock), throttled(&clock)] {
        assert_eq!(acts(m.step(Event::Ready, clock.at(6000))), vec![]);
        assert_eq!(m.ext.ready_at, None);
    }
}

#[test]
fn warnings_are_kept_for_svctl() {
    let clock = Clock::new();
    for mut m in [boot(&clock, true), running(&clock, 0), finishing(&clock)] {
        let a = m.step(
            Event::Warning {
                error: "unable to use /s/timeout-kill: bad".into(),
            },
            clock.at(6000),
        );
        assert_eq!(acts(a), vec![Publish]);
        assert!(m
            .ext
            .last_error
            .as_deref()
            .unwrap()
            .contains("timeout-kill"));
    }
}

#[test]
fn stray_events_change_nothing() {
    let clock = Clock::new();
    // Finish events while no finish is pending, tree events while nothing is left.
    for mut m in [boot(&clock, true), running(&clock, 0), throttled(&clock)] {
        let before = m.status();
        assert_eq!(
            acts(m.step(Event::FinishStarted { pid: 3 }, clock.at(7000))),
            vec![]
        );
        assert_eq!(acts(m.step(Event::TreeEmpty, clock.at(7000))), vec![]);
        assert_eq!(m.status(), before);
    }
}

#[test]
fn idle_states_have_no_deadline() {
    let clock = Clock::new();
    assert_eq!(boot(&clock, true).deadline(), None);
    assert_eq!(running(&clock, 0).deadline(), None);
}

/// A service with `control/` hooks (not a log): booted and running as pid 100, `control/u`
/// absent at its start.
fn custom_running(clock: &Clock, down_signal: Signal) -> Machine {
    let mut m = Machine::new(clock.at(0));
    let a = m.step(
        Event::Boot {
            normally_down: false,
            leftovers: false,
            limits: limits(),
            customisable: true,
        },
        clock.at(0),
    );
    assert_eq!(
        acts(a),
        vec![Hook(b'u', 0), Publish],
        "control/u before ./run"
    );
    assert_eq!(acts(m.step(Event::HookAbsent, clock.at(0))), vec![SpawnRun]);
    m.step(
        Event::RunStarted {
            pid: 100,
            limits: Limits {
                down_signal,
                ..limits()
            },
        },
        clock.at(0),
    );
    m
}

#[allow(non_snake_case)]
fn Hook(letter: u8, pid: u32) -> Action {
    Action::Hook { letter, pid }
}

#[test]
fn control_u_runs_before_every_start_and_its_exit_is_ignored() {
    let clock = Clock::new();
    let mut m = custom_running(&clock, Signal::TERM);
    // A restart after a crash asks for control/u again; it runs, fails, ./run starts anyway.
    let a = m.step(exited(100, Exit::Code(1), false, false), clock.at(5000));
    assert_eq!(acts(a), vec![Hook(b'u', 0), Publish]);
    assert_eq!(m.status().state, RunState::Down);
    assert_eq!(
        acts(m.step(Event::HookStarted { pid: 50 }, clock.at(5000))),
        vec![]
    );
    assert_eq!(m.hook_pid(), Some(50));
    assert_eq!(
        acts(m.step(exited(50, Exit::Code(1), false, false), clock.at(5001))),
        vec![SpawnRun]
    );
    assert_eq!(m.hook, None);
    // `o` uses control/u as well.
    let mut m = custom_running(&clock, Signal::TERM);
    m.want = Want::Down;
    m.step(exited(100, Exit::Code(0), false, false), clock.at(5000));
    assert_eq!(
        acts(m.step(Event::Command(C::Once), clock.at(5001))),
        vec![Hook(b'u', 0), Publish]
    );
    assert_eq!(
        acts(m.step(exited(999, Exit::Code(0), false, false), clock.at(5001))),
        vec![],
        "not the hook's pid"
    );
    assert_eq!(
        acts(m.step(Event::HookAbsent, clock.at(5002))),
        vec![SpawnRun]
    );
}

#[test]
fn down_runs_control_t_whose_exit_0_replaces_the_down_signal_then_cont_and_control_d() {
    let clock = Clock::new();
    let mut m = custom_running(&clock, Signal::INT);
    let a = m.step(Event::Command(C::Down), clock.at(100));
    assert_eq!(acts(a), vec![Hook(b't', 100), Publish]);
    assert_eq!(m.status().want, Want::Down);
    m.step(Event::HookStarted { pid: 60 }, clock.at(100));
    // control/t did the stopping: no signal of ours, no TERM flag.
    let a = m.step(exited(60, Exit::Code(0), false, false), clock.at(200));
    assert_eq!(
        acts(a),
        vec![Sig(Target::Main(100), Signal::CONT), Hook(b'd', 100)]
    );
    assert!(!m.status().term_sent);
    m.step(Event::HookStarted { pid: 61 }, clock.at(200));
    // control/d's exit is ignored.
    assert_eq!(
        acts(m.step(exited(61, Exit::Code(7), false, false), clock.at(300))),
        vec![]
    );
    assert_eq!(m.hook, None);
    assert!(m.accepts_commands());
    // The daemon stopped by the hook goes down like any other.
    let a = m.step(exited(100, Exit::Code(0), false, false), clock.at(400));
    assert_eq!(acts(a), vec![Publish]);
    assert_eq!(m.status().state, RunState::Down);
}

#[test]
fn down_with_a_failing_or_absent_control_t_sends_the_down_signal() {
    let clock = Clock::new();
    let mut m = custom_running(&clock, Signal::INT);
    m.step(Event::Command(C::Down), clock.at(100));
    m.step(Event::HookStarted { pid: 60 }, clock.at(100));
    let a = m.step(exited(60, Exit::Code(1), false, false), clock.at(200));
    assert_eq!(
        acts(a),
        vec![
            Sig(Target::Main(100), Signal::INT),
            Publish,
            Sig(Target::Main(100), Signal::CONT),
            Hook(b'd', 100)
        ]
    );
    assert!(m.status().term_sent);
    assert_eq!(acts(m.step(Event::HookAbsent, clock.at(200))), vec![]);

    let mut m = custom_running(&clock, Signal::TERM);
    m.step(Event::Command(C::Down), clock.at(100));
    let a = m.step(Event::HookAbsent, clock.at(100));
    assert_eq!(
        acts(a),
        vec![
            Sig(Target::Main(100), Signal::TERM),
            Publish,
            Sig(Target::Main(100), Signal::CONT),
            Hook(b'd', 100)
        ]
    );
}

#[test]
fn exit_runs_control_t_then_control_x_and_exits_after_it() {
    let clock = Clock::new();
    let mut m = custom_running(&clock, Signal::TERM);
    assert_eq!(
        acts(m.step(Event::Command(C::Exit), clock.at(100))),
        vec![Hook(b't', 100), Publish]
    );
    m.step(Event::HookStarted { pid: 60 }, clock.at(100));
    assert_eq!(
        acts(m.step(exited(60, Exit::Code(0), false, false), clock.at(200))),
        vec![Sig(Target::Main(100), Signal::CONT), Hook(b'x', 100)]
    );
    m.step(Event::HookStarted { pid: 61 }, clock.at(200));
    // The service goes down while control/x runs: the exit waits for the hook.
    let a = m.step(exited(100, Exit::Code(0), false, false), clock.at(300));
    assert_eq!(acts(a), vec![Publish]);
    assert!(!m.done);
    let a = m.step(exited(61, Exit::Code(0), false, false), clock.at(400));
    assert_eq!(acts(a), vec![Publish, Action::Exit]);
    assert!(m.done);
}

#[test]
fn t_runs_control_t_without_cont_or_control_d_while_want_up() {
    let clock = Clock::new();
    let mut m = custom_running(&clock, Signal::INT);
    assert_eq!(
        acts(m.step(Event::Command(C::Term), clock.at(100))),
        vec![Hook(b't', 100), Publish]
    );
    // TERM (not the down-signal) when the hook fails; nothing after it.
    assert_eq!(
        acts(m.step(Event::HookAbsent, clock.at(100))),
        vec![Sig(Target::Main(100), Signal::TERM), Publish]
    );
    assert!(m.status().term_sent);
}

#[test]
fn signalling_commands_run_their_hook_and_signal_unless_it_exits_0() {
    let clock = Clock::new();
    for (command, letter, signal) in [
        (C::Pause, b'p', Signal::STOP),
        (C::Cont, b'c', Signal::CONT),
        (C::Hup, b'h', Signal::HUP),
        (C::Alarm, b'a', Signal::ALARM),
        (C::Interrupt, b'i', Signal::INT),
        (C::Quit, b'q', Signal::QUIT),
        (C::Usr1, b'1', Signal::USR1),
        (C::Usr2, b'2', Signal::USR2),
        (C::Kill, b'k', Signal::KILL),
    ] {
        for (answer, exit, signalled) in [
            (Some(70), Exit::Code(0), false),
            (Some(70), Exit::Code(2), true),
            (Some(70), Exit::Signal(9), true),
            (None, Exit::Code(0), true),
        ] {
            let mut m = custom_running(&clock, Signal::TERM);
            let a = acts(m.step(Event::Command(command), clock.at(10)));
            assert_eq!(a.first(), Some(&Hook(letter, 100)), "{command:?}");
            let a = match answer {
                Some(pid) => {
                    m.step(Event::HookStarted { pid }, clock.at(10));
                    m.step(exited(pid, exit, false, false), clock.at(20))
                }
                None => m.step(Event::HookAbsent, clock.at(10)),
            };
            let want: Vec<Action> = if signalled {
                vec![Sig(Target::Main(100), signal)]
            } else {
                vec![]
            };
            assert_eq!(acts(a), want, "{command:?} {answer:?} {exit:?}");
            if command == C::Pause {
                assert!(m.status().paused, "the flag follows the command");
            }
        }
    }
}

#[test]
fn commands_wait_in_order_while_a_hook_runs() {
    let clock = Clock::new();
    let mut m = custom_running(&clock, Signal::TERM);
    m.step(Event::Command(C::Down), clock.at(100));
    m.step(Event::HookStarted { pid: 60 }, clock.at(100));
    assert!(!m.accepts_commands());
    assert_eq!(acts(m.step(Event::Command(C::Hup), clock.at(110))), vec![]);
    assert_eq!(acts(m.step(Event::Command(C::Up), clock.at(120))), vec![]);
    assert_eq!(m.deferred.len(), 2);
    // control/t stops the daemon before it exits itself.
    let a = m.step(exited(100, Exit::Code(0), false, false), clock.at(130));
    assert_eq!(acts(a), vec![Publish]);
    assert_eq!(m.status().state, RunState::Down);
    // No signal to a run that is gone; control/d gets the pid the stop was for, as in runsv.
    let a = m.step(exited(60, Exit::Code(0), false, false), clock.at(140));
    assert_eq!(acts(a), vec![Hook(b'd', 100)]);
    // control/d is absent: `h` (nothing runs: nothing to do), then `u`, one step each.
    assert_eq!(
        acts(m.step(Event::HookAbsent, clock.at(150))),
        vec![Action::Resume]
    );
    let a = m.step(Event::Resume, clock.at(150));
    assert_eq!(acts(a), vec![Hook(b'u', 0), Publish]);
    assert_eq!(m.want, Want::Up);
    assert!(m.deferred.is_empty());
    assert_eq!(
        acts(m.step(Event::HookAbsent, clock.at(160))),
        vec![SpawnRun]
    );
}

#[test]
fn a_restart_due_while_a_hook_runs_follows_it() {
    let clock = Clock::new();
    let mut m = custom_running(&clock, Signal::TERM);
    m.step(Event::Command(C::Hup), clock.at(100));
    m.step(Event::HookStarted { pid: 60 }, clock.at(100));
    let a = m.step(exited(100, Exit::Code(0), false, false), clock.at(5000));
    assert_eq!(acts(a), vec![Publish]);
    assert!(m.start_due);
    // The hook failed, but the run it was for is gone: no HUP to a stale pid.
    let a = m.step(exited(60, Exit::Code(1), false, false), clock.at(5001));
    assert_eq!(acts(a), vec![Hook(b'u', 0), Publish]);
    assert!(!m.start_due);
}

#[test]
fn a_hook_is_killed_after_timeout_finish_and_then_counts_as_failed() {
    let clock = Clock::new();
    let mut m = custom_running(&clock, Signal::TERM);
    m.step(Event::Command(C::Down), clock.at(100));
    assert_eq!(m.deadline(), None, "no deadline before the hook runs");
    m.step(Event::HookStarted { pid: 60 }, clock.at(100));
    assert_eq!(m.deadline(), Some(clock.at(5100).mono));
    assert_eq!(acts(m.step(Event::Tick, clock.at(5000))), vec![]);
    assert_eq!(
        acts(m.step(Event::Tick, clock.at(5100))),
        vec![Sig(Target::Hook(60), Signal::KILL)]
    );
    assert_eq!(m.deadline(), None);
    let a = m.step(exited(60, Exit::Signal(9), false, false), clock.at(5101));
    assert_eq!(
        acts(a),
        vec![
            Sig(Target::Main(100), Signal::TERM),
            Publish,
            Sig(Target::Main(100), Signal::CONT),
            Hook(b'd', 100)
        ]
    );
}

#[test]
fn timeout_kill_counts_from_the_down_even_with_a_hook() {
    let clock = Clock::new();
    let mut m = Machine::new(clock.at(0));
    m.step(
        Event::Boot {
            normally_down: false,
            leftovers: false,
            limits: limits(),
            customisable: true,
        },
        clock.at(0),
    );
    m.step(Event::HookAbsent, clock.at(0));
    m.step(
        Event::RunStarted {
            pid: 100,
            limits: Limits {
                timeout_kill: Some(Duration::from_secs(3)),
                ..limits()
            },
        },
        clock.at(0),
    );
    m.step(Event::Command(C::Down), clock.at(100));
    m.step(Event::HookStarted { pid: 60 }, clock.at(100));
    m.step(exited(60, Exit::Code(0), false, false), clock.at(200));
    m.step(Event::HookAbsent, clock.at(200));
    assert_eq!(m.deadline(), Some(clock.at(3100).mono));
    assert_eq!(
        acts(m.step(Event::Tick, clock.at(3100))),
        vec![
            Sig(Target::Main(100), Signal::KILL),
            Sig(Target::Tree, Signal::KILL)
        ]
    );
}

#[test]
fn a_log_service_is_not_customised() {
    let clock = Clock::new();
    let mut m = running(&clock, 0);
    assert!(!m.customisable);
    let a = m.step(Event::Command(C::Down), clock.at(10));
    assert!(!acts(a).iter().any(|a| matches!(a, Action::Hook { .. })));
    let a = m.step(exited(100, Exit::Code(0), false, false), clock.at(20));
    assert!(!acts(a).iter().any(|a| matches!(a, Action::Hook { .. })));
}

#[test]
fn actions_never_overflow() {
    let mut a = Actions::new();
    for _ in 0..20 {
        a.push(Publish);
    }
    assert_eq!(a.as_slice().len(), 8);
}

/// Every reachable state against every event: no panic, and the invariants hold (a spawn is
/// asked for only from down; down has no pid, run has one; a done machine asked to exit).
#[test]
fn every_state_times_every_event_keeps_the_invariants() {
    let clock = Clock::new();
    let states: Vec<(&str, Machine)> = vec![
        ("normally down", boot(&clock, true)),
        ("running", running(&clock, 0)),
        ("throttled", throttled(&clock)),
        ("finishing", finishing(&clock)),
        ("leftovers", leftovers(&clock)),
        ("finish pending", {
            let mut m = running(&clock, 0);
            m.step(exited(100, Exit::Code(0), false, true), clock.at(5000));
            m
        }),
        ("stopping", {
            let mut m = running(&clock, 0);
            m.step(Event::Command(C::Down), clock.at(10));
            m
        }),
        ("hook asked", {
            let mut m = custom_running(&clock, Signal::TERM);
            m.step(Event::Command(C::Down), clock.at(10));
            m
        }),
        ("control/t runs", {
            let mut m = custom_running(&clock, Signal::TERM);
            m.step(Event::Command(C::Down), clock.at(10));
            m.step(Event::HookStarted { pid: 200 }, clock.at(10));
            m.step(Event::Command(C::Up), clock.at(10));
            m
        }),
        ("control/x runs, service down", {
            let mut m = custom_running(&clock, Signal::TERM);
            m.step(Event::Command(C::Exit), clock.at(10));
            m.step(Event::HookAbsent, clock.at(10));
            m.step(Event::HookStarted { pid: 200 }, clock.at(10));
            m.step(exited(100, Exit::Code(0), false, false), clock.at(20));
            m
        }),
        ("control/u runs", {
            let mut m = custom_running(&clock, Signal::TERM);
            m.step(exited(100, Exit::Code(0), false, false), clock.at(5000));
            m.step(Event::HookStarted { pid: 200 }, clock.at(5000));
            m
        }),
    ];
    let mut events = vec![
        Event::RunStarted {
            pid: 300,
            limits: limits(),
        },
        Event::StartFailed { error: "e".into() },
        Event::FinishStarted { pid: 301 },
        Event::FinishFailed { error: "e".into() },
        exited(100, Exit::Code(0), false, false),
        exited(100, Exit::Signal(9), true, true),
        exited(200, Exit::Code(0), false, false),
        exited(200, Exit::Code(0), true, false),
        exited(999, Exit::Code(0), false, false),
        Event::TreeEmpty,
        Event::Ready,
        Event::Warning { error: "w".into() },
        Event::Tick,
        Event::HookStarted { pid: 302 },
        Event::HookAbsent,
        Event::Resume,
    ];
    for byte in b"udoxpchaiq12tke" {
        events.push(Event::Command(C::from_byte(*byte).unwrap()));
    }
    for (name, state) in &states {
        for event in &events {
            for at in [6000, 60_000] {
                let mut m = state.clone();
                let actions = acts(m.step(event.clone(), clock.at(at)));
                let what = format!("{name} × {event:?} at {at}");
                if actions.contains(&SpawnRun) {
                    assert!(
                        matches!(m.phase, Phase::Down { .. }),
                        "{what}: spawn while not down"
                    );
                }
                let s = m.status();
                match s.state {
                    RunState::Down => assert_eq!(s.pid, 0, "{what}"),
                    RunState::Run => assert_ne!(s.pid, 0, "{what}"),
                    RunState::Finish => {}
                }
                if actions.contains(&Action::Exit) {
                    assert!(m.done, "{what}");
                }
                if m.done {
                    assert!(!actions.contains(&SpawnRun), "{what}: spawn while exiting");
                }
                if let Some(at) = m.deadline() {
                    assert!(at >= clock.at(0).mono, "{what}");
                }
                let hooks = actions
                    .iter()
                    .filter(|a| matches!(a, Action::Hook { .. }))
                    .count();
                assert!(hooks <= 1, "{what}: one hook at a time");
                if hooks == 1 {
                    assert!(m.hook.is_some_and(|h| h.pid.is_none()), "{what}");
                    assert!(!actions.contains(&SpawnRun), "{what}: spawn beside a hook");
                }
                if !m.customisable {
                    assert_eq!(hooks, 0, "{what}: a log service has no hooks");
                }
            }
        }
    }
}

#[test]
fn issue_11_item_12_the_recorded_group_is_cleared_when_the_run_is_gone() {
    let clock = Clock::new();
    // Exited with nothing left: cleared at once, even while ./finish runs.
    let mut m = running(&clock, 0);
    m.step(exited(100, Exit::Code(0), false, true), clock.at(5000));
    m.step(Event::FinishStarted { pid: 200 }, clock.at(5000));
    assert_eq!(m.ext.pgid, None);
    assert_eq!(m.status().pid, 200, "the finish script is alive: shown");
    // Leftovers: kept while they are stopped, cleared once the tree is empty.
    let mut m = running(&clock, 0);
    m.step(Event::Command(C::Down), clock.at(5000));
    m.step(exited(100, Exit::Code(0), true, false), clock.at(5000));
    assert_eq!(m.ext.pgid, Some(100));
    m.step(Event::TreeEmpty, clock.at(5100));
    assert_eq!((m.status().state, m.status().pid), (RunState::Down, 0));
    assert_eq!(m.ext.pgid, None);
}

fn limited(count: u32, within_ms: u64) -> Limits {
    Limits {
        restart_limit: Some(RestartLimit {
            count,
            within: Duration::from_millis(within_ms),
        }),
        ..limits()
    }
}

/// Quick deaths of pids 100.. until the machine stops restarting; the time of the last.
fn die_quickly(m: &mut Machine, clock: &Clock, limits: Limits, mut t: u64, deaths: u32) -> u64 {
    for n in 0..deaths {
        let pid = 100 + n;
        m.step(Event::RunStarted { pid, limits }, clock.at(t));
        m.step(exited(pid, Exit::Code(2), false, false), clock.at(t + 10));
        t += 10;
        if let Some(due) = m.deadline() {
            t = (due - clock.origin).as_millis() as u64;
            assert_eq!(acts(m.step(Event::Tick, clock.at(t))), vec![SpawnRun]);
        }
    }
    t
}

#[test]
fn issue_17_restart_limit_fails_the_service_after_count_quick_deaths() {
    let clock = Clock::new();
    let mut m = boot(&clock, false);
    let t = die_quickly(&mut m, &clock, limited(3, 60_000), 0, 2);
    assert!(!m.ext.failed);
    assert_eq!(m.status().want, Want::Up);
    let t = die_quickly(&mut m, &clock, limited(3, 60_000), t, 1);
    assert!(
        m.ext.failed,
        "the third quick death within a minute fails it"
    );
    assert_eq!(m.deadline(), None, "nothing restarts it");
    let status = m.status();
    assert_eq!((status.state, status.want), (RunState::Down, Want::Down));
    assert_eq!(status.encode()[17], b'd');
    assert_eq!(m.ext.last_exit, Some(Exit::Code(2)));
    assert!(m
        .ext
        .last_error
        .as_deref()
        .unwrap()
        .contains("restart-limit"));
    assert!(m.ext.next_start_at.is_none());
    // A tick or a restart-limit change of a service not failed changes nothing.
    assert_eq!(acts(m.step(Event::Tick, clock.at(t + 100_000))), vec![]);
    // `u` clears it and starts at once.
    assert_eq!(
        acts(m.step(Event::Command(C::Up), clock.at(t + 100_000))),
        vec![SpawnRun, Publish]
    );
    assert!(!m.ext.failed);
    assert_eq!(m.ext.last_error, None);
    assert_eq!(m.status().want, Want::Up);
    // The count starts afresh after `u`.
    let t = die_quickly(&mut m, &clock, limited(3, 60_000), t + 100_000, 2);
    assert!(!m.ext.failed);
    die_quickly(&mut m, &clock, limited(3, 60_000), t, 1);
    assert!(m.ext.failed);
}

#[test]
fn issue_17_restart_limit_counts_only_within_its_window_and_a_change_clears_it() {
    let clock = Clock::new();
    let mut m = boot(&clock, false);
    // 2 within 0.9 s: the back-off (1 s, 2 s, 4 s...) spreads the deaths out of the window.
    die_quickly(&mut m, &clock, limited(2, 900), 0, 4);
    assert!(!m.ext.failed);
    assert!(m.quick_deaths.len() <= 2);
    // Without restart-limit the back-off goes on for ever.
    let mut m = boot(&clock, false);
    die_quickly(&mut m, &clock, limits(), 0, 12);
    assert!(!m.ext.failed, "each death was followed by a restart");
    // A change of the file restarts a failed service, as `u` does.
    let mut m = boot(&clock, false);
    let t = die_quickly(&mut m, &clock, limited(1, 10_000), 0, 1);
    assert!(m.ext.failed);
    let a = m.step(Event::RestartLimitChanged, clock.at(t + 5));
    assert_eq!(acts(a), vec![SpawnRun, Publish]);
    assert!(!m.ext.failed);
    let a = m.step(Event::RestartLimitChanged, clock.at(t + 6));
    assert_eq!(acts(a), vec![]);
}

#[test]
fn issue_17_an_oom_kill_is_recorded_with_the_exit_and_cleared_by_the_next() {
    let clock = Clock::new();
    let mut m = running(&clock, 0);
    m.step(exited(100, Exit::Signal(9), false, false), clock.at(5000));
    let a = m.step(
        Event::OomKilled {
            limit: "memory.max 64M".into(),
        },
        clock.at(5000),
    );
    assert_eq!(acts(a), vec![Publish]);
    assert_eq!(
        m.ext.last_exit_text().as_deref(),
        Some("killed by the OOM killer (memory.max 64M)")
    );
    m.step(
        Event::RunStarted {
            pid: 101,
            limits: limits(),
        },
        clock.at(5000),
    );
    m.step(exited(101, Exit::Code(0), false, false), clock.at(9000));
    assert_eq!(m.ext.last_exit_oom, None);
    assert_eq!(m.ext.last_exit_text().as_deref(), Some("exit 0"));
}

// Issue 14: the gate (H/G), readiness by ./check, oneshots.

fn held_boot(clock: &Clock, limits: Limits) -> Machine {
    let mut m = Machine::new(clock.at(0));
    m.ext.held = true;
    let a = m.step(
        Event::Boot {
            normally_down: false,
            leftovers: false,
            limits,
            customisable: false,
        },
        clock.at(0),
    );
    assert_eq!(acts(a), vec![Publish], "a held service is not started");
    m
}

#[test]
fn a_held_service_waits_wanted_up_and_go_starts_it_at_once() {
    let clock = Clock::new();
    let mut m = held_boot(&clock, limits());
    assert_eq!(m.want, Want::Up);
    assert_eq!(m.status().state, RunState::Down);
    assert_eq!(m.deadline(), None, "waiting is not a timer");
    // `u` while held: still waits.
    assert_eq!(
        acts(m.step(Event::Command(C::Up), clock.at(10))),
        vec![Publish]
    );
    assert_eq!(
        acts(m.step(Event::Command(C::Go), clock.at(20))),
        vec![SpawnRun, Publish]
    );
    assert!(!m.ext.held);
    m.step(
        Event::RunStarted {
            pid: 100,
            limits: limits(),
        },
        clock.at(20),
    );
    assert_eq!(m.ext.restarts, 0, "the wait was not a restart");
}

#[test]
fn hold_stops_a_running_service_keeps_want_up_and_leaves_no_back_off() {
    let clock = Clock::new();
    let mut m = running(&clock, 0);
    let a = acts(m.step(Event::Command(C::Hold), clock.at(100)));
    assert_eq!(
        a,
        vec![
            Sig(Target::Main(100), Signal::TERM),
            Sig(Target::Main(100), Signal::CONT),
            Publish
        ]
    );
    assert_eq!(m.want, Want::Up);
    assert!(m.ext.held);
    // It dies within a second of its start: not a quick death while held.
    let a = acts(m.step(exited(100, Exit::Signal(15), false, false), clock.at(200)));
    assert_eq!(a, vec![Publish], "not restarted while held");
    assert_eq!(m.deadline(), None);
    let a = acts(m.step(Event::Command(C::Go), clock.at(300)));
    assert_eq!(
        a,
        vec![SpawnRun, Publish],
        "started at once, no back-off left over"
    );
}

#[test]
fn hold_during_a_back_off_cancels_it_and_go_starts_at_once() {
    let clock = Clock::new();
    let mut m = throttled(&clock);
    assert!(m.deadline().is_some());
    m.step(Event::Command(C::Hold), clock.at(150));
    assert_eq!(m.deadline(), None);
    assert_eq!(m.ext.next_start_at, None);
    let a = acts(m.step(Event::Command(C::Go), clock.at(160)));
    assert_eq!(a, vec![SpawnRun, Publish]);
}

#[test]
fn go_on_a_service_wanted_down_only_clears_the_hold() {
    let clock = Clock::new();
    let mut m = boot(&clock, true);
    m.step(Event::Command(C::Hold), clock.at(10));
    assert_eq!(
        acts(m.step(Event::Command(C::Go), clock.at(20))),
        vec![Publish]
    );
    assert!(!m.ext.held);
}

fn with_check() -> Limits {
    Limits {
        readiness: Readiness::Check,
        ..limits()
    }
}

#[test]
fn check_runs_after_the_start_and_again_with_a_doubling_back_off_until_it_passes() {
    let clock = Clock::new();
    let mut m = boot(&clock, false);
    let a = acts(m.step(
        Event::RunStarted {
            pid: 100,
            limits: with_check(),
        },
        clock.at(0),
    ));
    assert_eq!(a, vec![Action::SpawnCheck, Publish]);
    assert_eq!(m.ext.ready_by.as_deref(), Some("check"));
    m.step(Event::CheckStarted { pid: 300 }, clock.at(0));
    assert_eq!(
        m.deadline(),
        Some(clock.at(10_000).mono),
        "a check is bounded"
    );
    assert!(acts(m.step(exited(300, Exit::Code(1), false, false), clock.at(5))).is_empty());
    assert_eq!(m.ext.ready_at, None);
    assert_eq!(m.deadline(), Some(clock.at(15).mono), "10 ms later");
    assert_eq!(
        acts(m.step(Event::Tick, clock.at(15))),
        vec![Action::SpawnCheck]
    );
    m.step(Event::CheckStarted { pid: 301 }, clock.at(15));
    m.step(exited(301, Exit::Code(1), false, false), clock.at(16));
    assert_eq!(m.deadline(), Some(clock.at(36).mono), "then 20 ms");
    m.step(Event::Tick, clock.at(36));
    m.step(Event::CheckStarted { pid: 302 }, clock.at(36));
    let a = acts(m.step(exited(302, Exit::Code(0), false, false), clock.at(40)));
    assert_eq!(a, vec![Publish]);
    assert_eq!(m.ext.ready_at, Some(clock.at(40).wall));
    assert_eq!(m.deadline(), None, "no more checks once ready");
}

#[test]
fn a_check_that_hangs_is_killed_and_one_left_when_the_run_ends_too() {
    let clock = Clock::new();
    let mut m = boot(&clock, false);
    m.step(
        Event::RunStarted {
            pid: 100,
            limits: with_check(),
        },
        clock.at(0),
    );
    m.step(Event::CheckStarted { pid: 300 }, clock.at(0));
    let a = acts(m.step(Event::Tick, clock.at(10_000)));
    assert_eq!(a, vec![Sig(Target::Check(300), Signal::KILL)]);
    m.step(exited(300, Exit::Signal(9), false, false), clock.at(10_001));
    m.step(Event::Tick, clock.at(10_011));
    m.step(Event::CheckStarted { pid: 301 }, clock.at(10_011));
    let a = acts(m.step(exited(100, Exit::Code(0), false, false), clock.at(20_000)));
    assert!(a.contains(&Sig(Target::Check(301), Signal::KILL)), "{a:?}");
    assert_eq!(m.check, None);
    // The check's exit after its run's end changes nothing.
    m.step(
        Event::RunStarted {
            pid: 101,
            limits: limits(),
        },
        clock.at(20_000),
    );
    m.step(exited(301, Exit::Code(0), false, false), clock.at(20_001));
    assert_eq!(m.ext.ready_at, None);
}

#[test]
fn a_check_that_cannot_start_is_retried() {
    let clock = Clock::new();
    let mut m = boot(&clock, false);
    m.step(
        Event::RunStarted {
            pid: 100,
            limits: with_check(),
        },
        clock.at(0),
    );
    m.step(Event::CheckFailed, clock.at(0));
    assert_eq!(
        acts(m.step(Event::Tick, clock.at(10))),
        vec![Action::SpawnCheck]
    );
}

fn oneshot(has_down: bool) -> Limits {
    Limits {
        oneshot: true,
        has_down,
        ..limits()
    }
}

#[test]
fn a_oneshot_whose_up_exits_0_is_up_and_ready_with_nothing_running() {
    let clock = Clock::new();
    let mut m = boot(&clock, false);
    m.step(
        Event::RunStarted {
            pid: 100,
            limits: oneshot(true),
        },
        clock.at(0),
    );
    assert!(m.ext.oneshot);
    let a = acts(m.step(exited(100, Exit::Code(0), false, false), clock.at(50)));
    assert_eq!(a, vec![Publish], "not restarted");
    assert_eq!(m.phase, Phase::Up);
    let s = m.status();
    assert_eq!((s.state, s.pid), (RunState::Run, 0));
    assert_eq!(m.ext.ready_at, Some(clock.at(50).wall));
    assert_eq!(m.deadline(), None);
    // Signals have nobody to go to.
    assert!(acts(m.step(Event::Command(C::Hup), clock.at(60))).is_empty());
    assert_eq!(
        acts(m.step(Event::Command(C::Up), clock.at(60))),
        vec![Publish]
    );
}

#[test]
fn a_oneshot_brought_down_runs_its_down_then_is_down() {
    let clock = Clock::new();
    let mut m = boot(&clock, false);
    m.step(
        Event::RunStarted {
            pid: 100,
            limits: oneshot(true),
        },
        clock.at(0),
    );
    m.step(exited(100, Exit::Code(0), false, false), clock.at(50));
    let a = acts(m.step(Event::Command(C::Down), clock.at(100)));
    assert_eq!(a, vec![Action::SpawnDown, Publish]);
    m.step(Event::FinishStarted { pid: 200 }, clock.at(100));
    assert_eq!(m.status().pid, 200, "down shows as finish does");
    let a = acts(m.step(exited(200, Exit::Code(0), false, false), clock.at(150)));
    assert_eq!(a, vec![Publish]);
    assert_eq!(m.status().state, RunState::Down);
    // Without a down program: down at once. `x` exits.
    let mut m = boot(&clock, false);
    m.step(
        Event::RunStarted {
            pid: 100,
            limits: oneshot(false),
        },
        clock.at(0),
    );
    m.step(exited(100, Exit::Code(0), false, false), clock.at(50));
    let a = acts(m.step(Event::Command(C::Exit), clock.at(100)));
    assert!(a.contains(&Action::Exit), "{a:?}");
}

#[test]
fn a_oneshot_held_when_up_runs_down_and_runs_up_again_on_go() {
    let clock = Clock::new();
    let mut m = boot(&clock, false);
    m.step(
        Event::RunStarted {
            pid: 100,
            limits: oneshot(true),
        },
        clock.at(0),
    );
    m.step(exited(100, Exit::Code(0), false, false), clock.at(50));
    let a = acts(m.step(Event::Command(C::Hold), clock.at(100)));
    assert_eq!(a, vec![Action::SpawnDown, Publish]);
    m.step(Event::FinishStarted { pid: 200 }, clock.at(100));
    assert_eq!(
        acts(m.step(exited(200, Exit::Code(0), false, false), clock.at(150))),
        vec![Publish]
    );
    assert_eq!(m.want, Want::Up);
    assert_eq!(
        acts(m.step(Event::Command(C::Go), clock.at(200))),
        vec![SpawnRun, Publish]
    );
}

#[test]
fn a_failing_oneshot_up_is_retried_with_the_back_off() {
    let clock = Clock::new();
    let mut m = boot(&clock, false);
    m.step(
        Event::RunStarted {
            pid: 100,
            limits: oneshot(false),
        },
        clock.at(0),
    );
    let a = acts(m.step(exited(100, Exit::Code(1), false, false), clock.at(50)));
    assert_eq!(a, vec![Publish]);
    assert_eq!(
        m.phase,
        Phase::Down {
            restart_at: Some(clock.at(1050).mono)
        }
    );
    assert_eq!(acts(m.step(Event::Tick, clock.at(1050))), vec![SpawnRun]);
    m.step(
        Event::RunStarted {
            pid: 101,
            limits: oneshot(false),
        },
        clock.at(1050),
    );
    m.step(exited(101, Exit::Code(1), false, false), clock.at(1100));
    assert_eq!(
        m.phase,
        Phase::Down {
            restart_at: Some(clock.at(3100).mono)
        },
        "2 s"
    );
}

#[test]
fn an_up_stopped_while_it_runs_is_not_up() {
    let clock = Clock::new();
    let mut m = boot(&clock, false);
    m.step(
        Event::RunStarted {
            pid: 100,
            limits: oneshot(false),
        },
        clock.at(0),
    );
    m.step(Event::Command(C::Down), clock.at(10));
    m.step(exited(100, Exit::Code(0), false, false), clock.at(20));
    assert_eq!(m.status().state, RunState::Down);
}

#[test]
fn readiness_is_named_in_the_extended_status() {
    let clock = Clock::new();
    let m = running(&clock, 0);
    assert_eq!(m.ext.ready_by.as_deref(), Some("exec"));
    assert_eq!(
        m.ext.ready_at, None,
        "exec readiness claims no notification"
    );
    let mut m = boot(&clock, false);
    m.step(
        Event::RunStarted {
            pid: 100,
            limits: oneshot(false),
        },
        clock.at(0),
    );
    assert_eq!(m.ext.ready_by.as_deref(), Some("oneshot"));
    assert_eq!(m.ext.ready_at, None, "not ready while up runs");
}
