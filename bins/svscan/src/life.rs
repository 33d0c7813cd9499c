//! The life of one entry of the tree (a service directory, its supervisor, and the logger's
//! supervisor with the pipe between them), as a pure state machine: `step(&mut Entry, Event,
//! now) -> Actions`. It does no I/O and reads no clock: what it needs to know of the world
//! (is there a `log/`, is anything left unread in the pipe, what does the logger's supervisor
//! say) comes in the events, and what is to be done goes out as actions, which `tree`
//! carries out. So every state × event pair is tested with plain values (`life_tests.rs`).

use rustix::process::Signal;
use std::time::{Duration, Instant};
use warden::service::deadline;

/// A supervisor that lived at least this long is not failing: restart it at once.
pub use warden::backoff::QUICK_DEATH;
/// How often starts that failed for want of file descriptors are tried again.
pub const FD_SHORTAGE_RETRY: Duration = Duration::from_secs(1);
/// Why a drained pipe is closed when its logger's directory went away.
pub const LOG_DIR_GONE: &str = "has no directory any more";
/// Why a pipe is closed when its logger stays down.
pub const LOGGER_DOWN: &str = "is down";

/// Restart back-off after `quick_deaths` deaths in a row, each within [`QUICK_DEATH`] of its
/// start: none for the first death after a good run, then 1 s, 2 s, 4 s... up to 30 s.
pub fn restart_delay(quick_deaths: u32) -> Duration {
    warden::backoff::Backoff::SUPERVISOR.delay(quick_deaths)
}

/// A duration for messages: `no time`, `3s`, `1500ms`.
pub fn humanize(d: Duration) -> String {
    if d.is_zero() {
        "no time".into()
    } else if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    Service,
    Log,
}

/// A supervisor that runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Run {
    pub pid: i32,
    pub since: Instant,
    /// TERM (service) or HUP (logger) was sent.
    pub stop_sent: bool,
    /// The `last_exit_at` of the service when svscan adopted its supervisor: an exit from
    /// before svscan's time never ends a container (`container-exit`).
    pub exit_seen: Option<warden::Tai64N>,
}

impl Run {
    pub fn started(pid: i32, now: Instant) -> Run {
        Run {
            pid,
            since: now,
            stop_sent: false,
            exit_seen: None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// To be started at `at` (a back-off, or now).
    Waiting {
        at: Instant,
    },
    Running(Run),
    Gone,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slot {
    pub state: State,
    /// Told to exit only to be restarted at once (to connect a `log/` that appeared).
    pub restart_now: bool,
    pub quick_deaths: u32,
    /// A failure of this slot was reported; quiet until it has worked again.
    pub reported: bool,
}

impl Slot {
    pub fn waiting(now: Instant) -> Slot {
        Slot {
            state: State::Waiting { at: now },
            restart_now: false,
            quick_deaths: 0,
            reported: false,
        }
    }

    pub fn is_gone(&self) -> bool {
        matches!(self.state, State::Gone)
    }

    pub fn due(&self, now: Instant) -> bool {
        matches!(self.state, State::Waiting { at } if at <= now)
    }

    pub fn deadline(&self) -> Option<Instant> {
        match self.state {
            State::Waiting { at } => Some(at),
            _ => None,
        }
    }

    pub fn running(&self) -> Option<&Run> {
        match &self.state {
            State::Running(r) => Some(r),
            _ => None,
        }
    }

    /// Back-off after a death or a failed start.
    pub fn retry(&mut self, lived: Duration, now: Instant) -> Duration {
        if lived >= QUICK_DEATH {
            self.quick_deaths = 0;
            self.reported = false;
        } else {
            self.quick_deaths = self.quick_deaths.saturating_add(1);
        }
        let delay = restart_delay(self.quick_deaths);
        self.state = State::Waiting {
            at: deadline(now, delay),
        };
        delay
    }
}

/// The logger's side of an entry. The pipe's fds are the executor's; the machine knows
/// whether they are open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogSide {
    pub slot: Slot,
    /// svscan holds both ends of the log pipe.
    pub pipe: bool,
    /// After the service is gone: the read end, kept so that lines still in the pipe outlive
    /// a logger that dies while draining; a new logger is started on them.
    pub leftover: bool,
    /// The logger's supervisor is to get HUP (`e`) once its logger runs: `e` to a supervisor
    /// whose logger is down (restart throttle) would make it exit with the pipe unread. Until
    /// then svscan keeps the pipe's write end: a logger that read EOF before its supervisor
    /// got `e` would be started again, on an empty pipe (and a `cat > file` would empty it).
    pub hup_pending: bool,
    /// The pipe was made for the starts of the last `Due`.
    pub fresh: bool,
}

impl LogSide {
    pub fn new(slot: Slot, pipe: bool) -> LogSide {
        LogSide {
            slot,
            pipe,
            leftover: false,
            hup_pending: false,
            fresh: false,
        }
    }

    /// Whether the logger must (still) run: for the service, or to drain what it left.
    pub fn needed(&self, wanted: bool, service_gone: bool) -> bool {
        wanted || !service_gone || self.leftover
    }

    /// Closes svscan's write end of the pipe (held: `pipe`): its read end becomes the
    /// leftover.
    pub fn pipe_to_leftover(&mut self, out: &mut Actions) {
        if std::mem::take(&mut self.pipe) {
            self.leftover = true;
            out.push(Action::PipeToLeftover);
        }
    }

    /// The leftover gets a write end again, for a logger to drain it (see
    /// [`Action::LeftoverToPipe`]).
    pub fn leftover_to_pipe(&mut self, out: &mut Actions) {
        if std::mem::take(&mut self.leftover) {
            self.pipe = true;
            out.push(Action::LeftoverToPipe);
        }
    }

    /// The leftover could not get its write end again ([`Launched::reopen_failed`]): the
    /// executor kept it a bare read end, and so does the machine.
    pub fn reopen_failed(&mut self) {
        self.pipe = false;
        self.leftover = true;
    }

    /// What is left in the pipe goes; `why`, if it is to be said.
    pub fn drop_leftover(&mut self, why: Option<&'static str>, out: &mut Actions) {
        if std::mem::take(&mut self.leftover) {
            out.push(Action::DropLeftover(why));
        }
    }

    /// The first step of stopping a running logger: its supervisor is to get its HUP once the
    /// logger runs (asked for here, once). True while that HUP is pending: until it is sent
    /// svscan keeps the pipe's write end. For an entry's logger and the catch-all alike.
    pub fn hup_first(&mut self, out: &mut Actions) -> bool {
        let State::Running(r) = &self.slot.state else {
            return false;
        };
        if !r.stop_sent && !self.hup_pending {
            self.hup_pending = true;
            out.push(Action::WatchStatus);
            out.push(Action::CheckLogger);
        }
        self.hup_pending
    }

    /// What the logger's supervisor says of the logger while its HUP is pending: the HUP
    /// once the logger runs (or is down for good: then what is left in the pipe goes, said
    /// aloud; runsv drops it silently). For an entry's logger and the catch-all alike.
    pub fn seen(&mut self, state: Logger, out: &mut Actions) {
        if !self.hup_pending {
            return;
        }
        let State::Running(r) = &mut self.slot.state else {
            return;
        };
        match state {
            Logger::Coming => {}
            Logger::Unreadable => {
                // Out of fds, say: the write end goes now, as that may be what frees one (a
                // logger that reads EOF before its HUP is then started again: the lesser
                // harm).
                self.pipe_to_leftover(out);
                out.push(Action::RecheckLogger);
            }
            Logger::Running | Logger::Down => {
                self.hup_pending = false;
                out.push(Action::UnwatchStatus);
                r.stop_sent = true;
                out.push(Action::NoteCgroup(Role::Log));
                out.push(Action::Signal(Role::Log, Signal::HUP));
                // Only now, with `e` on its way, may the logger read EOF.
                self.pipe_to_leftover(out);
                if state == Logger::Down {
                    self.drop_leftover(Some(LOGGER_DOWN), out);
                }
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The directory is in the scan directory and no shutdown is under way.
    pub wanted: bool,
    pub service: Slot,
    pub log: Option<LogSide>,
}

/// What a logger's supervisor says of its logger, as far as its HUP is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Logger {
    Running,
    /// Not running yet: starting, or held back by the restart throttle.
    Coming,
    /// Down and meant to stay down (`down` file, `svctl down`): nobody will read the pipe.
    Down,
    /// Its status could not be read for a reason that may pass (out of fds, say), unlike a
    /// status not written yet, which inotify will report.
    Unreadable,
}

/// What svscan found of a supervisor an earlier svscan may have left running.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Adoption {
    None,
    Running(Run),
    /// One runs, but it cannot be taken over: why.
    Failed(String),
}

/// A service directory, as a scan found it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    /// It has a `log/` directory.
    pub log_dir: bool,
    pub service: Adoption,
    /// Looked for only with a `log/`.
    pub log: Adoption,
    /// The log pipe of an adopted supervisor was taken over (through /proc).
    pub pipe: bool,
}

/// Why a start failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub error: String,
    /// Out of file descriptors: not this entry's fault.
    pub fd_shortage: bool,
}

/// What became of the starts of one [`Event::Due`]: `None` for a start not asked for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Launched {
    pub log: Option<Result<i32, Failure>>,
    pub service: Option<Result<i32, Failure>>,
    /// The pipe asked for could not be made: svscan holds none (the next start asks again).
    pub pipe_failed: bool,
    /// The leftover could not get a write end again ([`Action::LeftoverToPipe`]): it stays a
    /// bare read end, and the logger on it may read EOF before its supervisor has the HUP.
    pub reopen_failed: bool,
}

/// Facts about the pipe and the logger's directory, for the events that stop an entry's log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Drain {
    /// The pipe (or what is left of it) holds unread bytes.
    pub unread: bool,
    /// `NAME/log` is still a directory in the scan directory.
    pub log_dir: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A supervisor is due to start (see [`Entry::due`]); `log_dir` as [`Entry::probes_log`].
    Due { log_dir: bool },
    /// The outcome of the starts asked for by the last `Due`.
    Launched(Launched),
    /// A supervisor exited; `exec_error` when it was its exec that failed.
    Exited {
        role: Role,
        pid: i32,
        status: String,
        exec_error: Option<String>,
        drain: Drain,
    },
    /// The directory is gone from the scan directory, or svscan shuts down.
    Vanished { drain: Drain },
    /// The directory is back (moved out and in again), or still there at a rescan.
    Returned,
    /// A service just made in place may have got its `log/`.
    LogAppeared { log_dir: bool },
    /// What the logger's supervisor says of its logger, while its HUP is pending.
    LoggerSeen(Logger),
    /// The shutdown grace for this role is over.
    GraceOver(Role),
}

/// Which fd a supervisor gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// The pipe's read end, as the logger's stdin.
    PipeRead,
    /// What is left of the pipe, as a draining logger's stdin: its read end, with a write end
    /// again when [`Action::LeftoverToPipe`] could give it one.
    Leftover,
    /// The pipe's write end, as the service's stdout and stderr.
    PipeWrite,
    /// The catch-all logger's pipe if there is one, else svscan's own stdio.
    Uncaught,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Report {
    AdoptFailed {
        role: Role,
        cause: String,
    },
    /// Adopted supervisors, but their pipe could not be taken over.
    PipeNotTakenOver,
    StartFailed {
        role: Role,
        error: String,
        delay: Duration,
    },
    /// Said once for the whole tree until a start works again.
    FdShortage {
        role: Role,
        error: String,
    },
    Ended {
        role: Role,
        status: String,
        delay: Duration,
    },
    /// Still running when the grace was over.
    Straggler(Role),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Make the log pipe (svscan holds both ends).
    OpenPipe,
    /// Close both ends of the log pipe (made for starts that both failed).
    ClosePipe,
    /// Close the pipe's write end; its read end becomes the leftover, to be drained.
    PipeToLeftover,
    /// Give the leftover a write end again (reopened through /proc), before a logger is
    /// started on it: that logger then reads EOF only once svscan lets the write end go, after
    /// its HUP, as the first one did. A failure is told in [`Launched::reopen_failed`].
    LeftoverToPipe,
    /// Close the leftover, saying how much of it is lost and why (`None`: quietly).
    DropLeftover(Option<&'static str>),
    /// Start the supervisor of `role` with this fd.
    Start(Role, End),
    Signal(Role, Signal),
    /// KILL the process group the supervisor of `role` recorded.
    KillGroup(Role),
    /// The supervisor of `role` is told to stop: note its cgroup (through /proc, while it
    /// still runs), to be removed once it has exited for good.
    NoteCgroup(Role),
    /// Remove the noted cgroup of the supervisor of `role`, which exited for good.
    RemoveCgroup(Role),
    /// Remove the cgroup a dead supervisor of `role` left, unless another supervisor runs
    /// in its directory now.
    RemoveDeadCgroup(Role),
    /// The logger's supervisor now waits for its HUP: watch its status (`supervise/`), and
    /// step with [`Event::LoggerSeen`] when it changes.
    WatchStatus,
    /// It no longer waits: the watch on its status can go.
    UnwatchStatus,
    /// Read the status of the logger's supervisor and step with [`Event::LoggerSeen`].
    CheckLogger,
    /// The logger's status could not be read: look again shortly.
    RecheckLogger,
    /// The young service's watch for its `log/` has done its job.
    LogWatchDone,
    Report(Report),
}

pub type Actions = Vec<Action>;

/// A new entry for a directory a scan found, with what is to be done at once.
#[cfg(test)]
pub fn appear(found: Found, now: Instant) -> (Entry, Actions) {
    appear_at(found, now, now)
}

/// As [`appear`], with the service's supervisor due at `start_at` rather than now (a service
/// held for its dependencies, started after those it waits for), unless one is adopted.
pub fn appear_at(found: Found, now: Instant, start_at: Instant) -> (Entry, Actions) {
    let mut actions = Vec::new();
    let mut service = Slot::waiting(start_at);
    let adopted = adopt(&mut service, found.service, Role::Service, &mut actions);
    let log = found.log_dir.then(|| {
        let mut slot = Slot::waiting(now);
        let log_adopted = adopt(&mut slot, found.log, Role::Log, &mut actions);
        if (adopted || log_adopted) && !found.pipe {
            actions.push(Action::Report(Report::PipeNotTakenOver));
        }
        LogSide::new(slot, found.pipe)
    });
    let mut entry = Entry {
        wanted: true,
        service,
        log,
    };
    // Started at once, not at the end of the scan that found it.
    if entry.due(now) {
        actions.extend(step(
            &mut entry,
            Event::Due {
                log_dir: found.log_dir,
            },
            now,
        ));
    }
    (entry, actions)
}

fn adopt(slot: &mut Slot, adoption: Adoption, role: Role, actions: &mut Actions) -> bool {
    match adoption {
        Adoption::None => false,
        Adoption::Running(run) => {
            slot.state = State::Running(run);
            true
        }
        Adoption::Failed(cause) => {
            actions.push(Action::Report(Report::AdoptFailed { role, cause }));
            slot.reported = true;
            false
        }
    }
}

impl Entry {
    pub fn slot(&self, role: Role) -> Option<&Slot> {
        match role {
            Role::Service => Some(&self.service),
            Role::Log => self.log.as_ref().map(|l| &l.slot),
        }
    }

    /// Nothing is left of it: the executor forgets it.
    pub fn finished(&self) -> bool {
        !self.wanted
            && self.service.is_gone()
            && self.log.as_ref().map_or(true, |l| l.slot.is_gone())
    }

    /// A supervisor of it is due to start.
    pub fn due(&self, now: Instant) -> bool {
        self.service.due(now) || self.log.as_ref().is_some_and(|l| l.slot.due(now))
    }

    /// Whether [`Event::Due`] needs to know if there is a `log/`: a service about to start
    /// without one (a `log/` added counts from then), or a logger about to drain.
    pub fn probes_log(&self, now: Instant) -> bool {
        let service_due = self.wanted && self.service.due(now);
        match &self.log {
            None => service_due,
            Some(log) => {
                !self.wanted
                    && self.service.is_gone()
                    && log.slot.due(now)
                    && log.needed(self.wanted, true)
            }
        }
    }

    /// The logger's supervisor runs and waits for its HUP.
    pub fn awaits_hup(&self) -> Option<&Run> {
        self.log
            .as_ref()
            .filter(|l| l.hup_pending)
            .and_then(|l| l.slot.running())
    }

    /// The nearest time a supervisor is due to (re)start.
    pub fn deadline(&self) -> Option<Instant> {
        let service = self.wanted.then(|| self.service.deadline()).flatten();
        let log = self.log.as_ref().and_then(|l| {
            l.needed(self.wanted, self.service.is_gone())
                .then(|| l.slot.deadline())
                .flatten()
        });
        service.into_iter().chain(log).min()
    }
}

/// Moves the entry along one event; the actions are for the executor to carry out in order.
pub fn step(entry: &mut Entry, event: Event, now: Instant) -> Actions {
    let mut out = Vec::new();
    match event {
        Event::Due { log_dir } => due(entry, log_dir, now, &mut out),
        Event::Launched(launched) => settle_launched(entry, launched, now, &mut out),
        Event::Exited {
            role,
            pid,
            status,
            exec_error,
            drain,
        } => exited(entry, role, pid, status, exec_error, drain, now, &mut out),
        Event::Vanished { drain } => vanished(entry, drain, &mut out),
        Event::Returned => returned(entry, now, &mut out),
        Event::LogAppeared { log_dir } => log_appeared(entry, log_dir, &mut out),
        Event::LoggerSeen(state) => {
            if let Some(log) = entry.log.as_mut() {
                log.seen(state, &mut out);
            }
        }
        Event::GraceOver(role) => {
            if entry.slot(role).is_some_and(|s| s.running().is_some()) {
                out.push(Action::Report(Report::Straggler(role)));
                out.push(Action::KillGroup(role));
                out.push(Action::Signal(role, Signal::KILL));
            }
        }
    }
    out
}

/// Starts the due supervisors: the logger before its service, so the pipe has a reader first.
fn due(entry: &mut Entry, log_dir: bool, now: Instant, out: &mut Actions) {
    if entry.wanted && entry.service.due(now) && entry.log.is_none() && log_dir {
        // A log/ added to an existing service: it takes effect when the service's supervisor
        // (re)starts, which is now.
        entry.log = Some(LogSide::new(Slot::waiting(now), false));
    }
    let service_gone = entry.service.is_gone();
    let wanted = entry.wanted;
    if let Some(log) = entry.log.as_mut() {
        if log.slot.due(now) && log.needed(wanted, service_gone) {
            let draining = !wanted && service_gone;
            if draining && !log_dir {
                log.slot.state = State::Gone;
                log.drop_leftover(Some(LOG_DIR_GONE), out);
                return;
            }
            if draining {
                // needed() and draining: the leftover is there. Without a writer a logger
                // that read it all before its HUP came would be started once more, on nothing.
                log.leftover_to_pipe(out);
                out.push(Action::Start(Role::Log, End::Leftover));
            } else {
                open_pipe(log, out);
                out.push(Action::Start(Role::Log, End::PipeRead));
            }
        }
    }
    if entry.wanted && entry.service.due(now) {
        match entry.log.as_mut() {
            Some(log) => {
                open_pipe(log, out);
                out.push(Action::Start(Role::Service, End::PipeWrite));
            }
            None => out.push(Action::Start(Role::Service, End::Uncaught)),
        }
    }
}

fn open_pipe(log: &mut LogSide, out: &mut Actions) {
    if !log.pipe {
        log.pipe = true;
        log.fresh = true;
        out.push(Action::OpenPipe);
    }
}

fn settle_launched(entry: &mut Entry, launched: Launched, now: Instant, out: &mut Actions) {
    let service_gone = entry.service.is_gone();
    let wanted = entry.wanted;
    if let (Some(result), Some(log)) = (launched.log, entry.log.as_mut()) {
        let started = result.is_ok() && matches!(log.slot.state, State::Waiting { .. });
        settle(&mut log.slot, result, Role::Log, now, out);
        if !wanted && service_gone {
            if launched.reopen_failed {
                log.reopen_failed();
            }
            if started {
                // Only lines left over: this logger is to exit once they are read.
                log.hup_pending = true;
                out.push(Action::WatchStatus);
            } else {
                // Nobody reads them yet: the write end goes until the next start.
                log.pipe_to_leftover(out);
            }
        }
    }
    if let Some(result) = launched.service {
        settle(&mut entry.service, result, Role::Service, now, out);
    }
    let service_running = entry.service.running().is_some();
    if let Some(log) = entry.log.as_mut().filter(|_| launched.pipe_failed) {
        log.pipe = false;
        log.fresh = false;
    }
    if let Some(log) = entry.log.as_mut() {
        // A pipe made for starts that both failed reached no process: closed, so an entry
        // that cannot start (out of fds, say) does not hold fds others could use.
        if std::mem::take(&mut log.fresh) && log.slot.running().is_none() && !service_running {
            log.pipe = false;
            out.push(Action::ClosePipe);
        }
    }
}

/// Records the outcome of a start: a running supervisor, or a report and a retry deadline.
fn settle(
    slot: &mut Slot,
    result: Result<i32, Failure>,
    role: Role,
    now: Instant,
    out: &mut Actions,
) {
    if !matches!(slot.state, State::Waiting { .. }) {
        // Only a start asked for by `Due` has an outcome: nothing else can be settled.
        return;
    }
    match result {
        Ok(pid) => slot.state = State::Running(Run::started(pid, now)),
        Err(Failure {
            error,
            fd_shortage: true,
        }) => {
            // Not this entry's fault, and over once other entries give fds back: a steady
            // retry, so that every starved entry starts soon after, without a growing back-off.
            slot.state = State::Waiting {
                at: deadline(now, FD_SHORTAGE_RETRY),
            };
            out.push(Action::Report(Report::FdShortage { role, error }));
        }
        Err(Failure { error, .. }) => {
            let delay = slot.retry(Duration::ZERO, now);
            if !std::mem::replace(&mut slot.reported, true) {
                out.push(Action::Report(Report::StartFailed { role, error, delay }));
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn exited(
    entry: &mut Entry,
    role: Role,
    pid: i32,
    status: String,
    exec_error: Option<String>,
    drain: Drain,
    now: Instant,
    out: &mut Actions,
) {
    let wanted = entry.wanted;
    let service_gone = entry.service.is_gone();
    let (slot, keep) = match role {
        Role::Service => (&mut entry.service, wanted),
        Role::Log => match entry.log.as_mut() {
            Some(log) => {
                if std::mem::take(&mut log.hup_pending) {
                    out.push(Action::UnwatchStatus);
                    if service_gone {
                        log.pipe_to_leftover(out);
                    }
                }
                let keep =
                    wanted || !service_gone || (log.leftover && drain.unread && drain.log_dir);
                if !keep {
                    log.drop_leftover(Some(LOG_DIR_GONE), out);
                }
                (&mut log.slot, keep)
            }
            None => return,
        },
    };
    let State::Running(running) = slot.state else {
        return;
    };
    if running.pid != pid {
        return;
    }
    let lived = now.saturating_duration_since(running.since);
    if keep && std::mem::take(&mut slot.restart_now) {
        slot.state = State::Waiting { at: now };
    } else if keep {
        let delay = slot.retry(lived, now);
        if !running.stop_sent && !slot.reported {
            slot.reported = true;
            out.push(Action::Report(match exec_error {
                Some(error) => Report::StartFailed { role, error, delay },
                None => Report::Ended {
                    role,
                    status,
                    delay,
                },
            }));
        }
    } else {
        slot.state = State::Gone;
        out.push(Action::RemoveCgroup(role));
    }
    if role == Role::Service && entry.service.is_gone() {
        stop_log(entry, drain, out);
    }
}

/// The directory is gone, or svscan shuts down: stop the service (`x`, by TERM to its
/// supervisor); its logger follows once the service's supervisor has exited.
fn vanished(entry: &mut Entry, drain: Drain, out: &mut Actions) {
    entry.wanted = false;
    match &mut entry.service.state {
        State::Running(r) if !r.stop_sent => {
            r.stop_sent = true;
            out.push(Action::NoteCgroup(Role::Service));
            out.push(Action::Signal(Role::Service, Signal::TERM));
        }
        State::Running(_) | State::Gone => {}
        State::Waiting { .. } => {
            // A supervisor that died (KILL) and was not restarted yet left its cgroup.
            out.push(Action::RemoveDeadCgroup(Role::Service));
            entry.service.state = State::Gone;
        }
    }
    if entry.service.is_gone() {
        stop_log(entry, drain, out);
    }
}

/// Tells the logger's supervisor to exit once the logger has drained the pipe (HUP = `e`),
/// and then closes svscan's write end of it.
fn stop_log(entry: &mut Entry, drain: Drain, out: &mut Actions) {
    let Some(log) = entry.log.as_mut() else {
        return;
    };
    if log.hup_first(out) {
        return;
    }
    log.pipe_to_leftover(out);
    let unread = log.leftover && drain.unread;
    match &mut log.slot.state {
        State::Running(_) => {}
        State::Waiting { .. } if unread && drain.log_dir => {}
        State::Waiting { .. } | State::Gone => {
            if !log.slot.is_gone() {
                out.push(Action::RemoveDeadCgroup(Role::Log));
            }
            log.slot.state = State::Gone;
            log.drop_leftover(Some(LOG_DIR_GONE), out);
        }
    }
}

fn returned(entry: &mut Entry, now: Instant, out: &mut Actions) {
    if entry.wanted {
        return;
    }
    entry.wanted = true;
    if let Some(log) = entry.log.as_mut() {
        if log.pipe && std::mem::take(&mut log.hup_pending) {
            // Its logger was not told to exit yet: it stays, and so does the pipe it reads.
            out.push(Action::UnwatchStatus);
        }
        // A logger still draining the old pipe finishes it; the service gets a new one.
        log.drop_leftover(None, out);
    }
    for slot in std::iter::once(&mut entry.service).chain(entry.log.as_mut().map(|l| &mut l.slot)) {
        slot.quick_deaths = 0;
        if slot.is_gone() {
            slot.state = State::Waiting { at: now };
        }
    }
}

/// A service made in place got its `log/` just after svscan started its supervisor (the
/// `mkdir -p foo/log` or `cp -r` race): its supervisor is told to exit (`x`) and started again
/// at once, now with the pipe and the logger.
fn log_appeared(entry: &mut Entry, log_dir: bool, out: &mut Actions) {
    if entry.log.is_some() || !entry.wanted {
        out.push(Action::LogWatchDone);
        return;
    }
    if !log_dir {
        return;
    }
    if let State::Running(r) = &mut entry.service.state {
        if !r.stop_sent {
            r.stop_sent = true;
            entry.service.restart_now = true;
            out.push(Action::Signal(Role::Service, Signal::TERM));
        }
    }
    out.push(Action::LogWatchDone);
}

#[cfg(test)]
#[path = "life_tests.rs"]
mod tests;
