//! The supervisor's logic as a pure state machine: `Machine::step(event, now)` changes the state
//! and returns the actions the I/O layer must carry out. Nothing here forks, signals or touches a
//! file, so every state × event pair is tested with plain values (dinit style).

use rustix::process::Signal;
use std::time::{Duration, Instant};
use warden::control::Command;
use warden::status::{Exit, Extended, RunState, Status, Want};
use warden::Tai64N;

/// A run that lived less than this is a quick death and throttles the next start (runit's 1 s).
pub const QUICK_DEATH: Duration = Duration::from_secs(1);
/// The first back-off after a quick death; it doubles on each consecutive one.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The longest back-off.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// How long what is left of a stopped service's tree gets after TERM when no `timeout-kill`
/// is set, before KILL.
pub const DEFAULT_LEFTOVER_GRACE: Duration = Duration::from_secs(2);

/// The two clocks a step needs: monotonic for deadlines, wall clock (TAI64N +10) for the status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Now {
    pub mono: Instant,
    pub wall: Tai64N,
}

impl Now {
    pub fn read() -> Now {
        Now {
            mono: Instant::now(),
            wall: Tai64N::now(),
        }
    }

    /// The deadline `d` from now; `None` (never) if a setting asks for more than the clock
    /// can hold.
    pub fn after(self, d: Duration) -> Option<Instant> {
        self.mono.checked_add(d)
    }

    /// The wall-clock instant of a monotonic deadline, for the extended status.
    fn wall_at(self, at: Instant) -> Tai64N {
        let ahead = at.saturating_duration_since(self.mono);
        match self.wall.to_system_time().checked_add(ahead) {
            Some(t) => Tai64N::from_system_time(t),
            None => self.wall,
        }
    }
}

/// The settings of the service that drive stopping, read by the I/O layer at each start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub down_signal: Signal,
    pub timeout_kill: Option<Duration>,
    pub timeout_finish: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            down_signal: Signal::TERM,
            timeout_kill: None,
            timeout_finish: warden::service::DEFAULT_TIMEOUT_FINISH,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The supervisor starts. `leftovers`: processes of an earlier instance are still alive in
    /// the service's cgroup.
    Boot {
        normally_down: bool,
        leftovers: bool,
        limits: Limits,
    },
    Command(Command),
    /// `./run` was started (answer to `Action::SpawnRun`).
    RunStarted {
        pid: u32,
        limits: Limits,
    },
    /// `./run` could not be started; the message names the file and the cause.
    StartFailed {
        error: String,
    },
    /// `./finish` was started (answer to `Action::SpawnFinish`).
    FinishStarted {
        pid: u32,
    },
    /// `./finish` exists but could not be started.
    FinishFailed {
        error: String,
    },
    /// A child was reaped. `leftovers`: the service's tree (process group, cgroup) still has
    /// processes; `has_finish`: `./finish` exists.
    Exited {
        pid: u32,
        exit: Exit,
        leftovers: bool,
        has_finish: bool,
    },
    /// Nothing is left of the service's tree.
    TreeEmpty,
    /// The service wrote a newline on its notification fd.
    Ready,
    /// Something worth reporting in the extended status (a bad setting file).
    Warning {
        error: String,
    },
    /// The nearest deadline may have passed.
    Tick,
}

/// Who a signal goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// The main process of the run.
    Main(u32),
    /// `./finish`'s process group.
    Finish(u32),
    /// Everything of the service: its process group and its cgroup.
    Tree,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    SpawnRun,
    SpawnFinish(Exit),
    Signal(Target, Signal),
    /// Write `status`, `stat`, `pid` and the extended status.
    Publish,
    /// The supervisor's work is done: exit with status 0.
    Exit,
}

/// The actions of one step, in order; a fixed array so the loop does not allocate.
#[derive(Clone, Copy, Debug)]
pub struct Actions {
    list: [Action; 8],
    len: usize,
}

impl Actions {
    fn new() -> Actions {
        Actions {
            list: [Action::Publish; 8],
            len: 0,
        }
    }

    fn push(&mut self, action: Action) {
        if let Some(slot) = self.list.get_mut(self.len) {
            *slot = action;
            self.len += 1;
        }
    }

    pub fn as_slice(&self) -> &[Action] {
        self.list.get(..self.len).unwrap_or(&[])
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Nothing runs. `restart_at`: a throttled start is due then.
    Down { restart_at: Option<Instant> },
    Run {
        pid: u32,
        started: Instant,
        /// After `d` or `x` with `timeout-kill`: KILL then.
        kill_at: Option<Instant>,
    },
    /// The run is over: `./finish` runs, and/or what is left of the tree is being stopped.
    Finish {
        /// Pid of the run that ended (its process group id), shown while no finish runs.
        run_pid: u32,
        finish: Option<u32>,
        finish_kill_at: Option<Instant>,
        leftovers: bool,
        tree_kill_at: Option<Instant>,
    },
}

#[derive(Clone, Debug)]
pub struct Machine {
    pub phase: Phase,
    pub want: Want,
    /// `e`: exit once the service has exited by itself.
    pub exit_after: bool,
    pub paused: bool,
    pub term_sent: bool,
    /// When the current run started or the service went down.
    pub stamp: Tai64N,
    pub limits: Limits,
    /// The wait before the next start after a quick death.
    pub next_backoff: Duration,
    /// A start is not due before this (back-off of the last run).
    pub not_before: Option<Instant>,
    started_once: bool,
    pub ext: Extended,
    pub done: bool,
}

impl Machine {
    pub fn new(now: Now) -> Machine {
        Machine {
            phase: Phase::Down { restart_at: None },
            want: Want::Down,
            exit_after: false,
            paused: false,
            term_sent: false,
            stamp: now.wall,
            limits: Limits::default(),
            next_backoff: FIRST_BACKOFF,
            not_before: None,
            started_once: false,
            ext: Extended::default(),
            done: false,
        }
    }

    /// The nearest deadline, or none: then the loop sleeps until an event.
    pub fn deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Down { restart_at } => restart_at,
            Phase::Run { kill_at, .. } => kill_at,
            Phase::Finish {
                finish_kill_at,
                tree_kill_at,
                ..
            } => match (finish_kill_at, tree_kill_at) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
        }
    }

    /// Whether the I/O layer should tell when the tree becomes empty.
    pub fn awaiting_tree(&self) -> bool {
        matches!(
            self.phase,
            Phase::Finish {
                leftovers: true,
                ..
            }
        )
    }

    pub fn run_pid(&self) -> Option<u32> {
        match self.phase {
            Phase::Run { pid, .. } => Some(pid),
            _ => None,
        }
    }

    pub fn finish_pid(&self) -> Option<u32> {
        match self.phase {
            Phase::Finish { finish, .. } => finish,
            _ => None,
        }
    }

    /// runit's status record.
    pub fn status(&self) -> Status {
        let (pid, state) = match self.phase {
            Phase::Down { .. } => (0, RunState::Down),
            Phase::Run { pid, .. } => (pid, RunState::Run),
            Phase::Finish {
                run_pid, finish, ..
            } => (finish.unwrap_or(run_pid), RunState::Finish),
        };
        Status {
            stamp: self.stamp,
            pid,
            paused: self.paused,
            want: self.want,
            term_sent: self.term_sent,
            state,
        }
    }

    pub fn step(&mut self, event: Event, now: Now) -> Actions {
        let mut out = Actions::new();
        match event {
            Event::Boot {
                normally_down,
                leftovers,
                limits,
            } => self.boot(normally_down, leftovers, limits, now, &mut out),
            Event::Command(command) => self.command(command, now, &mut out),
            Event::RunStarted { pid, limits } => {
                self.phase = Phase::Run {
                    pid,
                    started: now.mono,
                    kill_at: None,
                };
                self.limits = limits;
                self.stamp = now.wall;
                self.paused = false;
                self.term_sent = false;
                self.not_before = None;
                if self.started_once {
                    self.ext.restarts += 1;
                }
                self.started_once = true;
                self.ext.ready_at = None;
                self.ext.next_start_at = None;
                self.ext.last_error = None;
                self.ext.pgid = Some(pid);
                out.push(Action::Publish);
            }
            Event::StartFailed { error } => {
                self.ext.last_error = Some(error);
                self.phase = Phase::Down { restart_at: None };
                let delay = self.take_backoff();
                self.not_before = now.after(delay);
                self.settle(now, &mut out);
            }
            Event::FinishStarted { pid } => {
                if let Phase::Finish {
                    finish,
                    finish_kill_at,
                    ..
                } = &mut self.phase
                {
                    *finish = Some(pid);
                    *finish_kill_at = now.after(self.limits.timeout_finish);
                    out.push(Action::Publish);
                }
            }
            Event::FinishFailed { error } => {
                self.ext.last_error = Some(error);
                self.finish_gone(now, &mut out);
            }
            Event::Exited {
                pid,
                exit,
                leftovers,
                has_finish,
            } => self.exited(pid, exit, leftovers, has_finish, now, &mut out),
            Event::TreeEmpty => {
                if let Phase::Finish {
                    leftovers,
                    tree_kill_at,
                    finish,
                    ..
                } = &mut self.phase
                {
                    *leftovers = false;
                    *tree_kill_at = None;
                    if finish.is_none() {
                        self.settle(now, &mut out);
                    }
                }
            }
            Event::Ready => {
                if let Phase::Run { .. } = self.phase {
                    self.ext.ready_at = Some(now.wall);
                    out.push(Action::Publish);
                }
            }
            Event::Warning { error } => {
                self.ext.last_error = Some(error);
                out.push(Action::Publish);
            }
            Event::Tick => self.tick(now, &mut out),
        }
        out
    }

    fn boot(
        &mut self,
        normally_down: bool,
        leftovers: bool,
        limits: Limits,
        now: Now,
        out: &mut Actions,
    ) {
        self.want = if normally_down { Want::Down } else { Want::Up };
        self.limits = limits;
        self.stamp = now.wall;
        if leftovers {
            // An earlier instance's processes: stop them before starting a new one.
            self.phase = Phase::Finish {
                run_pid: 0,
                finish: None,
                finish_kill_at: None,
                leftovers: true,
                tree_kill_at: now.after(self.leftover_grace()),
            };
            out.push(Action::Signal(Target::Tree, Signal::TERM));
            out.push(Action::Signal(Target::Tree, Signal::CONT));
            out.push(Action::Publish);
            return;
        }
        self.settle(now, out);
    }

    fn command(&mut self, command: Command, now: Now, out: &mut Actions) {
        match command {
            Command::Up => {
                self.want = Want::Up;
                if let Phase::Down { .. } = self.phase {
                    // An explicit request beats the crash-loop throttle.
                    self.not_before = None;
                    self.phase = Phase::Down { restart_at: None };
                    out.push(Action::SpawnRun);
                }
                out.push(Action::Publish);
            }
            Command::Once => {
                self.want = Want::Down;
                if let Phase::Down { .. } = self.phase {
                    self.not_before = None;
                    self.phase = Phase::Down { restart_at: None };
                    self.ext.next_start_at = None;
                    out.push(Action::SpawnRun);
                }
                out.push(Action::Publish);
            }
            Command::Down | Command::Exit => {
                self.want = if command == Command::Exit {
                    Want::Exit
                } else {
                    Want::Down
                };
                match self.phase {
                    Phase::Down { .. } => {
                        self.phase = Phase::Down { restart_at: None };
                        self.ext.next_start_at = None;
                        out.push(Action::Publish);
                        if self.want == Want::Exit {
                            self.done = true;
                            out.push(Action::Exit);
                        }
                    }
                    Phase::Run { pid, .. } => {
                        self.stop(pid, now, out);
                        out.push(Action::Publish);
                    }
                    Phase::Finish { .. } => out.push(Action::Publish),
                }
            }
            Command::ExitAfter => {
                self.exit_after = true;
                if let Phase::Down { .. } = self.phase {
                    self.done = true;
                    out.push(Action::Exit);
                }
            }
            Command::Term => {
                if let Phase::Run { pid, .. } = self.phase {
                    out.push(Action::Signal(Target::Main(pid), Signal::TERM));
                    self.term_sent = true;
                    if self.want != Want::Up {
                        out.push(Action::Signal(Target::Main(pid), Signal::CONT));
                    }
                    out.push(Action::Publish);
                }
            }
            Command::Pause | Command::Cont => {
                if let Phase::Run { pid, .. } = self.phase {
                    let signal = if command == Command::Pause {
                        Signal::STOP
                    } else {
                        Signal::CONT
                    };
                    out.push(Action::Signal(Target::Main(pid), signal));
                }
                // As runsv: the flag follows the command even when nothing runs.
                self.paused = command == Command::Pause;
                out.push(Action::Publish);
            }
            Command::Hup
            | Command::Alarm
            | Command::Interrupt
            | Command::Quit
            | Command::Usr1
            | Command::Usr2
            | Command::Kill => {
                if let (Phase::Run { pid, .. }, Some(signal)) = (self.phase, command.signal()) {
                    out.push(Action::Signal(Target::Main(pid), signal));
                }
            }
        }
    }

    /// `d` or `x` on a running service: down-signal then CONT to the main process.
    fn stop(&mut self, pid: u32, now: Now, out: &mut Actions) {
        out.push(Action::Signal(Target::Main(pid), self.limits.down_signal));
        out.push(Action::Signal(Target::Main(pid), Signal::CONT));
        self.term_sent = true;
        if let (Phase::Run { kill_at, .. }, Some(timeout)) =
            (&mut self.phase, self.limits.timeout_kill)
        {
            if kill_at.is_none() {
                *kill_at = now.after(timeout);
            }
        }
    }

    fn exited(
        &mut self,
        pid: u32,
        exit: Exit,
        leftovers: bool,
        has_finish: bool,
        now: Now,
        out: &mut Actions,
    ) {
        match self.phase {
            Phase::Run {
                pid: run_pid,
                started,
                ..
            } if run_pid == pid => {
                self.ext.last_exit = Some(exit);
                self.ext.last_exit_at = Some(now.wall);
                self.ext.ready_at = None;
                self.term_sent = false;
                let lived = now.mono.saturating_duration_since(started);
                let delay = if lived < QUICK_DEATH {
                    self.take_backoff()
                } else {
                    self.next_backoff = FIRST_BACKOFF;
                    Duration::ZERO
                };
                self.not_before = now.after(delay);
                let tree_kill_at = if leftovers {
                    out.push(Action::Signal(Target::Tree, Signal::TERM));
                    out.push(Action::Signal(Target::Tree, Signal::CONT));
                    now.after(self.leftover_grace())
                } else {
                    None
                };
                if has_finish || leftovers {
                    self.phase = Phase::Finish {
                        run_pid: pid,
                        finish: None,
                        finish_kill_at: None,
                        leftovers,
                        tree_kill_at,
                    };
                    if has_finish {
                        out.push(Action::SpawnFinish(exit));
                    }
                    out.push(Action::Publish);
                } else {
                    self.settle(now, out);
                }
            }
            Phase::Finish {
                finish: Some(finish_pid),
                ..
            } if finish_pid == pid => {
                if leftovers {
                    let grace = self.leftover_grace();
                    if let Phase::Finish {
                        leftovers: left,
                        tree_kill_at,
                        ..
                    } = &mut self.phase
                    {
                        if !*left {
                            *left = true;
                            *tree_kill_at = now.after(grace);
                            out.push(Action::Signal(Target::Tree, Signal::TERM));
                            out.push(Action::Signal(Target::Tree, Signal::CONT));
                        }
                    }
                }
                self.finish_gone(now, out);
            }
            // An orphan of the service (we are its subreaper), or a process we no longer track.
            _ => {}
        }
    }

    fn finish_gone(&mut self, now: Now, out: &mut Actions) {
        if let Phase::Finish {
            finish,
            finish_kill_at,
            leftovers,
            ..
        } = &mut self.phase
        {
            *finish = None;
            *finish_kill_at = None;
            if *leftovers {
                out.push(Action::Publish);
            } else {
                self.settle(now, out);
            }
        }
    }

    fn tick(&mut self, now: Now, out: &mut Actions) {
        let due = |at: Option<Instant>| at.is_some_and(|at| at <= now.mono);
        match &mut self.phase {
            Phase::Down { restart_at } => {
                if due(*restart_at) {
                    *restart_at = None;
                    self.not_before = None;
                    if self.want == Want::Up && !self.exit_after {
                        out.push(Action::SpawnRun);
                    }
                }
            }
            Phase::Run { pid, kill_at, .. } => {
                if due(*kill_at) {
                    *kill_at = None;
                    out.push(Action::Signal(Target::Main(*pid), Signal::KILL));
                    out.push(Action::Signal(Target::Tree, Signal::KILL));
                }
            }
            Phase::Finish {
                finish,
                finish_kill_at,
                leftovers,
                tree_kill_at,
                ..
            } => {
                if due(*finish_kill_at) {
                    *finish_kill_at = None;
                    if let Some(pid) = finish {
                        out.push(Action::Signal(Target::Finish(*pid), Signal::KILL));
                    }
                }
                if due(*tree_kill_at) {
                    // KILL cannot be refused: count the tree as gone rather than wait on it.
                    *tree_kill_at = None;
                    *leftovers = false;
                    out.push(Action::Signal(Target::Tree, Signal::KILL));
                    if finish.is_none() {
                        self.settle(now, out);
                    }
                }
            }
        }
    }

    /// Nothing of the service runs any more: record that it went down and decide what is next.
    fn settle(&mut self, now: Now, out: &mut Actions) {
        if !matches!(self.phase, Phase::Down { .. }) {
            self.stamp = now.wall;
        }
        self.phase = Phase::Down { restart_at: None };
        self.term_sent = false;
        self.ext.next_start_at = None;
        if self.want == Want::Exit || self.exit_after {
            out.push(Action::Publish);
            self.done = true;
            out.push(Action::Exit);
            return;
        }
        if self.want == Want::Up {
            match self.not_before {
                Some(at) if at > now.mono => {
                    self.phase = Phase::Down {
                        restart_at: Some(at),
                    };
                    self.ext.next_start_at = Some(now.wall_at(at));
                }
                _ => {
                    // RunStarted or StartFailed publishes what comes of it.
                    self.not_before = None;
                    out.push(Action::SpawnRun);
                    return;
                }
            }
        }
        out.push(Action::Publish);
    }

    /// The wait after this quick death, doubling the next one up to the cap.
    fn take_backoff(&mut self) -> Duration {
        let delay = self.next_backoff;
        self.next_backoff = (delay * 2).min(MAX_BACKOFF);
        delay
    }

    fn leftover_grace(&self) -> Duration {
        self.limits.timeout_kill.unwrap_or(DEFAULT_LEFTOVER_GRACE)
    }
}

#[cfg(test)]
#[path = "machine_tests.rs"]
mod tests;
