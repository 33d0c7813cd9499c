//! The supervisor's logic as a pure state machine: `Machine::step(event, now)` changes the state
//! and returns the actions the I/O layer must carry out. Nothing here forks, signals or touches a
//! file, so every state × event pair is tested with plain values (dinit style).
//!
//! runit's `control/` hooks (runsv(8) "customize control") are actions too: the machine asks
//! for `control/<c>` (`Action::Hook`), the I/O layer answers that it started
//! (`Event::HookStarted`) or is not there (`Event::HookAbsent`), and its exit comes as any
//! child's. While a hook runs, commands wait their turn in order, as in runsv, which runs the
//! hook to its end before it reads the next byte; the service's own exit is handled meanwhile.

use rustix::process::Signal;
use std::time::{Duration, Instant};
use warden::backoff::Backoff;
use warden::control::Command;
use warden::runas::RestartLimit;
use warden::status::{Exit, Extended, RunState, Status, Want};
use warden::Tai64N;

/// A run that lived less than this is a quick death and throttles the next start (runit's 1 s).
pub use warden::backoff::QUICK_DEATH;
/// The back-off after quick deaths: 1 s, doubling on each consecutive one, up to 60 s.
const BACKOFF: Backoff = Backoff::SERVICE;
/// The first back-off after a quick death.
pub const FIRST_BACKOFF: Duration = BACKOFF.first;
/// How long what is left of a stopped service's tree gets after TERM when no `timeout-kill`
/// is set, before KILL.
pub const DEFAULT_LEFTOVER_GRACE: Duration = Duration::from_secs(2);
/// How long the tree gets to empty after KILL (processes in uninterruptible sleep die only
/// when their I/O ends) before a new run starts anyway, with a warning.
pub const KILLED_TREE_WAIT: Duration = Duration::from_secs(10);
/// The first wait before `./check` runs again after it failed; it doubles up to
/// [`CHECK_MAX_DELAY`].
pub const CHECK_FIRST_DELAY: Duration = Duration::from_millis(10);
pub const CHECK_MAX_DELAY: Duration = Duration::from_secs(1);
/// A `./check` that runs longer than this is killed (and counts as failed).
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(10);
/// Commands kept while a hook runs; the I/O layer does not read the control FIFO meanwhile,
/// so only the rest of one read (and SIGTERMs) can come, far fewer than this.
pub const MAX_DEFERRED: usize = 256;

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
    /// `restart-limit`: after this many quick deaths within the window, stop restarting.
    pub restart_limit: Option<RestartLimit>,
    /// How the service tells that it is ready.
    pub readiness: Readiness,
    /// `type` is `oneshot`: its program is `up`, and its exit 0 makes it up.
    pub oneshot: bool,
    /// The oneshot has a `down` program.
    pub has_down: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            down_signal: Signal::TERM,
            timeout_kill: None,
            timeout_finish: warden::service::DEFAULT_TIMEOUT_FINISH,
            restart_limit: None,
            readiness: Readiness::Exec,
            oneshot: false,
            has_down: false,
        }
    }
}

/// What makes a running service ready (issue 14): a newline on its `notification-fd`, else
/// `./check` exiting 0 (run by the supervisor with a back-off), else running at all.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Readiness {
    #[default]
    Exec,
    Notification,
    Check,
}

impl Readiness {
    /// As the extended status says it (`ready_by`).
    pub fn name(self) -> &'static str {
        match self {
            Readiness::Exec => "exec",
            Readiness::Notification => "notification-fd",
            Readiness::Check => "check",
        }
    }
}

/// `./check` as the supervisor runs it for readiness.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Check {
    /// The check that runs; none between runs.
    pub pid: Option<u32>,
    /// When the next one starts (none while one runs or is being started).
    pub next_at: Option<Instant>,
    /// When the running one is killed.
    pub kill_at: Option<Instant>,
    /// The wait after the next failure.
    pub delay: Duration,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The supervisor starts. `leftovers`: processes of an earlier instance are still alive in
    /// the service's cgroup.
    Boot {
        normally_down: bool,
        leftovers: bool,
        limits: Limits,
        /// `control/` hooks apply (not for a log service, as runsv).
        customisable: bool,
    },
    Command(Command),
    /// The hook asked for (`Action::Hook`) started.
    HookStarted {
        pid: u32,
    },
    /// The hook asked for is not there, not executable, or could not be started: the default
    /// action follows, as in runsv.
    HookAbsent,
    /// Go on with the commands that waited for a hook (answer to `Action::Resume`).
    Resume,
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
    /// `./check` was started (answer to `Action::SpawnCheck`).
    CheckStarted {
        pid: u32,
    },
    /// `./check` could not be started: tried again after the back-off.
    CheckFailed,
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
    /// The run that just exited was killed by the OOM killer; `limit` is the memory limit in
    /// force (`memory.max 64M`).
    OomKilled {
        limit: String,
    },
    /// The service dir's `restart-limit` was written, replaced or removed: a service that
    /// failed by it is started again.
    RestartLimitChanged,
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
    /// A `control/` hook's process group.
    Hook(u32),
    /// `./check`'s process group.
    Check(u32),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    SpawnRun,
    SpawnFinish(Exit),
    /// Run `./check` for readiness; answer `CheckStarted` or `CheckFailed`.
    SpawnCheck,
    /// Run a oneshot's `down`; answer `FinishStarted` or `FinishFailed`.
    SpawnDown,
    Signal(Target, Signal),
    /// Write `status`, `stat`, `pid` and the extended status.
    Publish,
    /// The supervisor's work is done: exit with status 0.
    Exit,
    /// Run `control/<letter>` with `pid` (the service's, 0 for none: an empty argument) as its
    /// argument, if it is executable; answer `HookStarted` or `HookAbsent`.
    Hook {
        letter: u8,
        pid: u32,
    },
    /// Feed `Event::Resume`: more commands wait.
    Resume,
}

/// What comes after a hook, by its exit (runsv's `custom()`: exit 0 means "done, skip the
/// default").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Then {
    /// `control/u` before a start of `./run` (for `u`, `o` and every restart): start, whatever
    /// its exit.
    Start,
    /// The hook of a signalling command: unless it exits 0, `signal` to the run `pid`.
    Signal { pid: u32, signal: Signal },
    /// `control/t` of `d`, `x` or `t`: unless it exits 0, `signal` to the run `pid` (and the
    /// TERM flag); then, if want is down or exit, CONT and `control/d` or `control/x`.
    Stop { pid: u32, signal: Signal },
    /// `control/d`, `control/x`: their exit is ignored.
    Nothing,
}

/// The hook being run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hook {
    pub letter: u8,
    /// None until the I/O layer says it started.
    pub pid: Option<u32>,
    pub kill_at: Option<Instant>,
    pub then: Then,
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
    /// A oneshot whose `up` exited 0: up, with nothing running.
    Up,
    /// The run is over: `./finish` runs, and/or what is left of the tree is being stopped.
    /// The run's pid is dead, so it is never published (issue 11 item 12): `status` and `pid`
    /// name the finish script while it runs, and no process (0) while leftovers are stopped.
    Finish {
        finish: Option<u32>,
        finish_kill_at: Option<Instant>,
        leftovers: bool,
        /// TERM's grace is over: KILL was sent, and `tree_kill_at` is now the end of the wait
        /// for the tree to empty.
        tree_killed: bool,
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
    /// `control/` hooks apply.
    pub customisable: bool,
    /// The hook that runs or was asked for.
    pub hook: Option<Hook>,
    /// Commands that came while a hook ran, in order.
    pub deferred: std::collections::VecDeque<Command>,
    /// A start was due while a hook ran: it follows the hook.
    pub start_due: bool,
    /// When the last quick deaths happened, for `restart-limit` (at most its count).
    pub quick_deaths: std::collections::VecDeque<Instant>,
    /// The readiness check of the current run.
    pub check: Option<Check>,
    /// The oneshot's `up` just exited 0: once nothing of it is left, it is up.
    pub oneshot_done: bool,
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
            customisable: false,
            hook: None,
            deferred: std::collections::VecDeque::new(),
            start_due: false,
            quick_deaths: std::collections::VecDeque::new(),
            check: None,
            oneshot_done: false,
        }
    }

    /// Whether the machine takes commands now; while a hook runs they wait (the I/O layer
    /// leaves them in the FIFO).
    pub fn accepts_commands(&self) -> bool {
        self.hook.is_none() && self.deferred.is_empty()
    }

    pub fn hook_pid(&self) -> Option<u32> {
        self.hook.and_then(|hook| hook.pid)
    }

    /// The nearest deadline, or none: then the loop sleeps until an event.
    pub fn deadline(&self) -> Option<Instant> {
        let check = self.check.and_then(|c| match (c.next_at, c.kill_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        });
        let phase = match self.phase {
            Phase::Down { restart_at } => restart_at,
            Phase::Up => None,
            Phase::Run { kill_at, .. } => match (kill_at, check) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
            Phase::Finish {
                finish_kill_at,
                tree_kill_at,
                ..
            } => match (finish_kill_at, tree_kill_at) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
        };
        match (phase, self.hook.and_then(|hook| hook.kill_at)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
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
            // runit's tools then read the oneshot as up: `sv start` of it returns.
            Phase::Up => (0, RunState::Run),
            Phase::Run { pid, .. } => (pid, RunState::Run),
            Phase::Finish { finish, .. } => (finish.unwrap_or(0), RunState::Finish),
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
                customisable,
            } => {
                self.customisable = customisable;
                self.boot(normally_down, leftovers, limits, now, &mut out)
            }
            Event::Command(command) => {
                if self.accepts_commands() {
                    self.command(command, now, &mut out);
                } else if self.deferred.len() < MAX_DEFERRED {
                    self.deferred.push_back(command);
                }
            }
            Event::HookStarted { pid } => {
                if let Some(hook) = &mut self.hook {
                    if hook.pid.is_none() {
                        hook.pid = Some(pid);
                        hook.kill_at = now.after(self.limits.timeout_finish);
                    }
                }
            }
            Event::HookAbsent => {
                if self.hook.is_some_and(|hook| hook.pid.is_none()) {
                    self.hook_done(false, now, &mut out);
                }
            }
            Event::Resume => self.resume(now, &mut out),
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
                self.ext.oneshot = limits.oneshot;
                // A oneshot is ready when its `up` has exited 0, not while it runs.
                let ready_by = if limits.oneshot {
                    "oneshot"
                } else {
                    limits.readiness.name()
                };
                self.ext.ready_by = Some(ready_by.to_owned());
                self.oneshot_done = false;
                self.check = None;
                if limits.readiness == Readiness::Check && !limits.oneshot {
                    self.check = Some(Check {
                        pid: None,
                        next_at: None,
                        kill_at: None,
                        delay: CHECK_FIRST_DELAY,
                    });
                    out.push(Action::SpawnCheck);
                }
                out.push(Action::Publish);
            }
            Event::CheckStarted { pid } => {
                if let Some(check) = &mut self.check {
                    check.pid = Some(pid);
                    check.kill_at = now.after(CHECK_TIMEOUT);
                }
            }
            Event::CheckFailed => self.check_failed(now),
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
            Event::OomKilled { limit } => {
                if self.ext.last_exit.is_some() {
                    self.ext.last_exit_oom = Some(limit);
                    out.push(Action::Publish);
                }
            }
            Event::RestartLimitChanged => {
                if self.ext.failed {
                    return self.step(Event::Command(Command::Up), now);
                }
            }
        }
        out
    }

    /// The service failed by `restart-limit` (see `exited`), or stops counting as failed.
    fn set_failed(&mut self, failed: bool) {
        self.ext.failed = failed;
        self.quick_deaths.clear();
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
                finish: None,
                finish_kill_at: None,
                leftovers: true,
                tree_killed: false,
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
            Command::Up | Command::Once if self.ext.failed => {
                self.set_failed(false);
                self.ext.last_error = None;
                self.command(command, now, out);
            }
            Command::Up => {
                self.want = Want::Up;
                if let Phase::Down { .. } = self.phase {
                    // An explicit request beats the crash-loop throttle.
                    self.not_before = None;
                    self.phase = Phase::Down { restart_at: None };
                    self.start(out);
                }
                out.push(Action::Publish);
            }
            Command::Once => {
                self.want = Want::Down;
                if let Phase::Down { .. } = self.phase {
                    self.not_before = None;
                    self.phase = Phase::Down { restart_at: None };
                    self.ext.next_start_at = None;
                    self.start(out);
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
                    Phase::Up => {
                        self.bring_down(now, out);
                        out.push(Action::Publish);
                    }
                    Phase::Run { pid, .. } => {
                        self.stop(pid, now, out);
                        out.push(Action::Publish);
                    }
                    Phase::Finish { .. } => out.push(Action::Publish),
                }
            }
            Command::Hold => {
                self.ext.held = true;
                // Waiting for dependencies is not failing: no back-off is left when it goes.
                self.next_backoff = FIRST_BACKOFF;
                self.not_before = None;
                self.ext.next_start_at = None;
                match self.phase {
                    Phase::Down { .. } => self.phase = Phase::Down { restart_at: None },
                    Phase::Up => self.bring_down(now, out),
                    Phase::Run { pid, .. } => self.stop(pid, now, out),
                    Phase::Finish { .. } => {}
                }
                out.push(Action::Publish);
            }
            Command::Go => {
                self.ext.held = false;
                if self.want == Want::Up && matches!(self.phase, Phase::Down { .. }) {
                    self.not_before = None;
                    self.phase = Phase::Down { restart_at: None };
                    self.start(out);
                }
                out.push(Action::Publish);
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
                    if self.customisable {
                        let then = Then::Stop {
                            pid,
                            signal: Signal::TERM,
                        };
                        self.ask(b't', pid, then, out);
                        out.push(Action::Publish);
                        return;
                    }
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
                    self.signal_or_hook(command, pid, signal, out);
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
                    self.signal_or_hook(command, pid, signal, out);
                }
            }
        }
    }

    /// A signalling command on a running service: its hook, or the signal.
    fn signal_or_hook(&mut self, command: Command, pid: u32, signal: Signal, out: &mut Actions) {
        if self.customisable {
            self.ask(command.byte(), pid, Then::Signal { pid, signal }, out);
        } else {
            out.push(Action::Signal(Target::Main(pid), signal));
        }
    }

    /// Asks for `control/<letter>`; what follows comes with its answer and exit.
    fn ask(&mut self, letter: u8, pid: u32, then: Then, out: &mut Actions) {
        self.hook = Some(Hook {
            letter,
            pid: None,
            kill_at: None,
            then,
        });
        out.push(Action::Hook { letter, pid });
    }

    /// Starts `./run`, after `control/u` where hooks apply (after the running hook, if one
    /// runs). Returns whether `SpawnRun` was asked for (its answer publishes).
    fn start(&mut self, out: &mut Actions) -> bool {
        if self.ext.held {
            // Waits for `G`: svscan's word that its dependencies are ready.
            return false;
        }
        if !self.customisable {
            out.push(Action::SpawnRun);
            return true;
        }
        if self.hook.is_some() {
            self.start_due = true;
        } else {
            self.ask(b'u', 0, Then::Start, out);
        }
        false
    }

    /// The hook ended (`ok`: it exited 0) or was not there: what comes after it, then the
    /// start or commands that waited for it.
    fn hook_done(&mut self, ok: bool, now: Now, out: &mut Actions) {
        let Some(hook) = self.hook.take() else { return };
        let running = |m: &Machine, pid: u32| m.run_pid() == Some(pid);
        match hook.then {
            Then::Start => {
                if matches!(self.phase, Phase::Down { .. }) && !self.done && !self.ext.held {
                    out.push(Action::SpawnRun);
                    // RunStarted or StartFailed publishes; commands go on after it.
                    if !self.deferred.is_empty() {
                        out.push(Action::Resume);
                    }
                    return;
                }
            }
            Then::Signal { pid, signal } => {
                if !ok && running(self, pid) {
                    out.push(Action::Signal(Target::Main(pid), signal));
                }
            }
            Then::Stop { pid, signal } => {
                let alive = running(self, pid);
                if !ok && alive {
                    out.push(Action::Signal(Target::Main(pid), signal));
                    self.term_sent = true;
                    out.push(Action::Publish);
                }
                let after = match self.want {
                    Want::Down => Some(b'd'),
                    Want::Exit => Some(b'x'),
                    Want::Up => None,
                };
                if let Some(letter) = after {
                    if alive {
                        out.push(Action::Signal(Target::Main(pid), Signal::CONT));
                    }
                    // The pid the stop was for, even if it has exited meanwhile: runsv, which
                    // waits for control/t before it reaps, passes it too.
                    self.ask(letter, pid, Then::Nothing, out);
                    return;
                }
            }
            Then::Nothing => {}
        }
        self.resume(now, out);
    }

    /// No hook runs: carry out what waited for one (an exit, a start), then the next command.
    fn resume(&mut self, now: Now, out: &mut Actions) {
        if self.hook.is_some() || self.done {
            return;
        }
        let down = matches!(self.phase, Phase::Down { .. });
        if down && (self.want == Want::Exit || self.exit_after) {
            self.deferred.clear();
            out.push(Action::Publish);
            self.done = true;
            out.push(Action::Exit);
            return;
        }
        if self.start_due {
            self.start_due = false;
            if down {
                if !self.start(out) {
                    out.push(Action::Publish);
                }
                if self.hook.is_some() {
                    return;
                }
            }
        }
        if let Some(command) = self.deferred.pop_front() {
            self.command(command, now, out);
            if self.hook.is_none() && !self.deferred.is_empty() {
                out.push(Action::Resume);
            }
        }
    }

    /// A failed (or unstartable) `./check`: the next one after the back-off.
    fn check_failed(&mut self, now: Now) {
        if let Some(check) = &mut self.check {
            check.pid = None;
            check.kill_at = None;
            check.next_at = now.after(check.delay);
            check.delay = (check.delay * 2).min(CHECK_MAX_DELAY);
        }
    }

    /// A oneshot that is up is brought down (`d`, `x`, `H`): its `down` runs, if it has one,
    /// as `finish` would; it is down once that has exited.
    fn bring_down(&mut self, now: Now, out: &mut Actions) {
        if self.limits.has_down {
            self.phase = Phase::Finish {
                finish: None,
                finish_kill_at: None,
                leftovers: false,
                tree_killed: false,
                tree_kill_at: None,
            };
            out.push(Action::SpawnDown);
        } else {
            self.settle(now, out);
        }
    }

    /// `d` or `x` on a running service: down-signal then CONT to the main process (or, where
    /// hooks apply, `control/t` first, then CONT and `control/d` or `control/x`).
    fn stop(&mut self, pid: u32, now: Now, out: &mut Actions) {
        if self.customisable {
            let then = Then::Stop {
                pid,
                signal: self.limits.down_signal,
            };
            self.ask(b't', pid, then, out);
        } else {
            out.push(Action::Signal(Target::Main(pid), self.limits.down_signal));
            out.push(Action::Signal(Target::Main(pid), Signal::CONT));
            self.term_sent = true;
        }
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
        if self.hook_pid() == Some(pid) {
            self.hook_done(exit == Exit::Code(0), now, out);
            return;
        }
        if self.check.is_some_and(|c| c.pid == Some(pid)) {
            if exit == Exit::Code(0) && matches!(self.phase, Phase::Run { .. }) {
                self.check = None;
                self.ext.ready_at = Some(now.wall);
                out.push(Action::Publish);
            } else {
                self.check_failed(now);
            }
            return;
        }
        match self.phase {
            Phase::Run {
                pid: run_pid,
                started,
                ..
            } if run_pid == pid => {
                self.ext.last_exit = Some(exit);
                self.ext.last_exit_oom = None;
                self.ext.last_exit_at = Some(now.wall);
                self.ext.ready_at = None;
                if let Some(Check {
                    pid: Some(check), ..
                }) = self.check.take()
                {
                    out.push(Action::Signal(Target::Check(check), Signal::KILL));
                }
                let stopped = self.term_sent;
                self.term_sent = false;
                let lived = now.mono.saturating_duration_since(started);
                // A oneshot's `up` that worked is up, not dead.
                self.oneshot_done = self.limits.oneshot && exit == Exit::Code(0) && !stopped;
                // Stopped for its dependencies (held), or a oneshot done: no back-off.
                let delay = if self.ext.held || self.oneshot_done {
                    self.next_backoff = FIRST_BACKOFF;
                    Duration::ZERO
                } else if lived < QUICK_DEATH {
                    self.count_quick_death(now);
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
                if !leftovers {
                    // Nothing of the run is left: its process group must not be KILLed later
                    // (svscan does at shutdown), as a new process may take its id.
                    self.ext.pgid = None;
                }
                if has_finish || leftovers {
                    self.phase = Phase::Finish {
                        finish: None,
                        finish_kill_at: None,
                        leftovers,
                        tree_killed: false,
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
                        tree_killed,
                        tree_kill_at,
                        ..
                    } = &mut self.phase
                    {
                        if !*left {
                            *left = true;
                            *tree_killed = false;
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
        if let Some(hook) = &mut self.hook {
            if let (true, Some(pid)) = (due(hook.kill_at), hook.pid) {
                // Its exit (by KILL: not 0) brings the default action.
                hook.kill_at = None;
                out.push(Action::Signal(Target::Hook(pid), Signal::KILL));
            }
        }
        match &mut self.phase {
            Phase::Down { restart_at } => {
                if due(*restart_at) {
                    *restart_at = None;
                    self.not_before = None;
                    if self.want == Want::Up && !self.exit_after && !self.start(out) {
                        out.push(Action::Publish);
                    }
                }
            }
            Phase::Up => {}
            Phase::Run { pid, kill_at, .. } => {
                if due(*kill_at) {
                    *kill_at = None;
                    out.push(Action::Signal(Target::Main(*pid), Signal::KILL));
                    out.push(Action::Signal(Target::Tree, Signal::KILL));
                }
                if let Some(check) = &mut self.check {
                    if let (true, Some(pid)) = (due(check.kill_at), check.pid) {
                        // Its exit (by KILL: not 0) counts as a failed check.
                        check.kill_at = None;
                        out.push(Action::Signal(Target::Check(pid), Signal::KILL));
                    }
                    if due(check.next_at) && check.pid.is_none() {
                        check.next_at = None;
                        out.push(Action::SpawnCheck);
                    }
                }
            }
            Phase::Finish {
                finish,
                finish_kill_at,
                leftovers,
                tree_killed,
                tree_kill_at,
            } => {
                if due(*finish_kill_at) {
                    *finish_kill_at = None;
                    if let Some(pid) = finish {
                        out.push(Action::Signal(Target::Finish(*pid), Signal::KILL));
                    }
                }
                if due(*tree_kill_at) && !*tree_killed {
                    // KILL cannot be refused, but dying takes a while (a process in D state
                    // dies when its I/O ends): the tree is gone only when it says so (the
                    // cgroup's `populated 0`, the process group's last exit), bounded.
                    *tree_killed = true;
                    *tree_kill_at = now.after(KILLED_TREE_WAIT);
                    out.push(Action::Signal(Target::Tree, Signal::KILL));
                } else if due(*tree_kill_at) {
                    *tree_kill_at = None;
                    *leftovers = false;
                    let finishing = finish.is_some();
                    self.ext.last_error = Some(format!(
                        "processes of the service outlived KILL by {} s; counted as gone",
                        KILLED_TREE_WAIT.as_secs()
                    ));
                    if finishing {
                        out.push(Action::Publish);
                    } else {
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
        // The run is gone: no group of it is left to signal.
        self.ext.pgid = None;
        if self.want == Want::Exit || self.exit_after {
            out.push(Action::Publish);
            // With a hook running (`control/x`), the exit follows its end.
            if self.hook.is_none() {
                self.done = true;
                out.push(Action::Exit);
            }
            return;
        }
        if self.want == Want::Up && std::mem::take(&mut self.oneshot_done) && !self.ext.held {
            self.phase = Phase::Up;
            self.stamp = now.wall;
            self.ext.ready_at = Some(now.wall);
            out.push(Action::Publish);
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
                    if self.start(out) {
                        return;
                    }
                }
            }
        }
        out.push(Action::Publish);
    }

    /// Counts a quick death for `restart-limit`; at its count within its window the service
    /// is failed: want down (so the runit record reads `d`, and nothing restarts it) until
    /// `u` or a change of the file.
    fn count_quick_death(&mut self, now: Now) {
        let Some(limit) = self.limits.restart_limit else {
            self.quick_deaths.clear();
            return;
        };
        let since = now.mono.checked_sub(limit.within);
        self.quick_deaths
            .retain(|&at| since.map_or(true, |since| at > since));
        self.quick_deaths.push_back(now.mono);
        let count = usize::try_from(limit.count).unwrap_or(usize::MAX);
        while self.quick_deaths.len() > count {
            self.quick_deaths.pop_front();
        }
        if self.quick_deaths.len() >= count && self.want == Want::Up {
            self.set_failed(true);
            self.want = Want::Down;
            self.ext.last_error = Some(format!(
                "failed: {} runs each under a second within {:?} (restart-limit); not \
                 restarting until svctl up",
                limit.count, limit.within
            ));
        }
    }

    /// The wait after this quick death, doubling the next one up to the cap.
    fn take_backoff(&mut self) -> Duration {
        let delay = self.next_backoff;
        self.next_backoff = BACKOFF.after(delay);
        delay
    }

    fn leftover_grace(&self) -> Duration {
        self.limits.timeout_kill.unwrap_or(DEFAULT_LEFTOVER_GRACE)
    }
}

#[cfg(test)]
#[path = "machine_tests.rs"]
mod tests;
