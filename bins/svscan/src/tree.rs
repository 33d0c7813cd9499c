//! The supervision tree, the executor of `life`: one entry per service directory, each with
//! its state machine (`life::Entry`) and what the system gave it (the log pipe, which svscan
//! holds for the life of the entry so that no restart loses a line, pidfds of adopted
//! supervisors, noted cgroups). Each event is turned into actions by `life::step`, and the
//! actions are carried out here, through `system` and `launch`; the facts an event needs
//! (is there a `log/`, what is left in the pipe, what a logger's supervisor says) are
//! gathered here first. The catch-all logger, which is not an entry, is run here too.

use crate::catchall::{self, Catchall};
use crate::launch::{self, Launches, Stdio};
use crate::life::{
    self, humanize, Action, Adoption, Drain, End, Entry, Event, Failure, Found, Launched, Logger,
    Report, Role, Run, FD_SHORTAGE_RETRY,
};
use crate::scandir::{has_log, log_path, path_of, service_path, shown, shown_as, Id};
use crate::system::{self, ContainerExit, Pipe};
use rustix::process::{Signal, WaitStatus};
use std::collections::{BTreeSet, HashMap};
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::Instant;
use warden::svdir::ServiceDir;

/// Where svscan finds the programs it starts.
pub struct Programs {
    /// Warden's `supervise` beside svscan, or why there is none (each start then fails with
    /// that, and is retried with the back-off; nothing from PATH is started in its place).
    pub supervise: Result<PathBuf, String>,
}

/// Where a logger's supervisor stands with its pending HUP.
#[derive(Debug, PartialEq, Eq)]
pub enum Hup {
    /// Sent, or no longer needed.
    Done,
    /// Its logger does not run yet: the next change of its status tells.
    Pending,
    /// Its status could not be read: look again shortly.
    Recheck,
}

/// What the system gave the supervisor of one role.
#[derive(Default)]
struct Held {
    /// Set for a supervisor adopted from an earlier svscan: not our child, so its exit comes
    /// through the pidfd instead of wait().
    pidfd: Option<OwnedFd>,
    /// The supervisor's cgroup directory, read from its extended status when it was told to
    /// stop: removed, if empty, once it has exited for good, as a supervisor killed with KILL
    /// cannot do that itself.
    cgroup: Option<PathBuf>,
}

struct Node {
    name: OsString,
    life: Entry,
    pipe: Option<Pipe>,
    /// The read end of the pipe, kept after the service is gone for a logger to drain.
    leftover: Option<OwnedFd>,
    service: Held,
    log: Held,
    /// The service has a `container-exit` file: its end ends svscan (read at each start of
    /// its supervisor).
    container_exit: Option<ContainerExit>,
    /// Its dependencies are not ready: its supervisor starts held (`supervise --held`).
    start_held: bool,
    /// Its first start was put off (held, after the services it waits for): brought
    /// forward when its dependencies become ready.
    deferred: bool,
}

impl Node {
    fn held(&mut self, role: Role) -> &mut Held {
        match role {
            Role::Service => &mut self.service,
            Role::Log => &mut self.log,
        }
    }

    fn pidfd(&self, role: Role) -> Option<&OwnedFd> {
        match role {
            Role::Service => self.service.pidfd.as_ref(),
            Role::Log => self.log.pidfd.as_ref(),
        }
    }

    fn run(&self, role: Role) -> Option<Run> {
        self.life.slot(role).and_then(|s| s.running()).copied()
    }

    /// The facts that decide whether a log is drained: for an entry with a log that is (or is
    /// being) let go; nothing is looked at for the others.
    fn drain(&self, letting_go: bool) -> Drain {
        if self.life.log.is_none() || !letting_go {
            return Drain::default();
        }
        let read = self
            .pipe
            .as_ref()
            .map(|p| &p.read)
            .or(self.leftover.as_ref());
        Drain {
            unread: read.is_some_and(|fd| system::unread(fd).is_ok_and(|n| n > 0)),
            log_dir: has_log(&self.name),
        }
    }
}

/// The catch-all logger: its machine (`catchall`), and what the system gave it.
struct Uncaught {
    id: Id,
    dir: PathBuf,
    life: Catchall,
    held: Held,
    pipe: Option<Pipe>,
    leftover: Option<OwnedFd>,
}

impl Uncaught {
    fn unread(&self) -> bool {
        self.leftover
            .as_ref()
            .is_some_and(|fd| system::unread(fd).is_ok_and(|n| n > 0))
    }

    fn report(&self, report: Report) {
        let dir = self.dir.display();
        match report {
            Report::StartFailed { error, delay, .. } => warden::say!(
                "svscan: warning: unable to start the supervisor of the catch-all logger {dir}: \
                 {error}; retrying in {}",
                humanize(delay)
            ),
            Report::Ended { status, delay, .. } => warden::say!(
                "svscan: warning: the supervisor of the catch-all logger {dir} ended ({status}); \
                 restarting it in {}",
                humanize(delay)
            ),
            Report::Straggler(_) => warden::say!(
                "svscan: warning: the catch-all logger {dir} did not stop in time: sending KILL"
            ),
            Report::AdoptFailed { .. } | Report::PipeNotTakenOver | Report::FdShortage { .. } => {}
        }
    }
}

pub struct Tree {
    entries: HashMap<Id, Node>,
    /// What a turn of the loop asks of every entry, kept as entries change (a turn costs
    /// the same with 10 entries as with 10,000).
    index: Index,
    /// The entries by name: an inotify event names what changed, and is handled without a
    /// look at every entry. Two entries share a name while one whose directory was replaced
    /// is still being stopped.
    by_name: HashMap<OsString, Vec<Id>>,
    uncaught: Option<Uncaught>,
    /// `unwant_all` was called: the catch-all logger is to stop once the entries are gone.
    shutting_down: bool,
    pids: HashMap<i32, (Id, Role)>,
    programs: Programs,
    /// Running out of file descriptors was reported; quiet until a start works again.
    fd_shortage_reported: bool,
    launches: Launches,
    /// Some service ever had a `container-exit` file: until then, looking for them costs
    /// nothing per wake-up, however big the tree.
    container_exit_seen: bool,
    /// For the scanner, in order: loggers' supervisors that now wait for their HUP (with the
    /// directory whose `supervise/` to watch, and a name for messages), or no longer do.
    status_watches: Vec<StatusWatch>,
}

/// When each entry is next due, its start deadline and whether it holds pidfds, kept
/// sorted, so that a turn of the loop looks at the entries concerned only.
#[derive(Default)]
struct Index {
    /// By the earliest time a supervisor of the entry waits for (`Entry::due`).
    due: BTreeSet<(Instant, Id)>,
    /// By `Entry::deadline`, the time svscan wakes up for.
    deadlines: BTreeSet<(Instant, Id)>,
    /// Entries with an adopted supervisor's pidfd.
    adopted: BTreeSet<Id>,
    keys: HashMap<Id, Keys>,
}

#[derive(Clone, Copy, Default, PartialEq, Eq)]
struct Keys {
    due: Option<Instant>,
    deadline: Option<Instant>,
    adopted: bool,
}

impl Keys {
    fn of(node: &Node) -> Keys {
        let waits = |slot: &life::Slot| match slot.state {
            life::State::Waiting { at } => Some(at),
            _ => None,
        };
        let log = node.life.log.as_ref().and_then(|l| waits(&l.slot));
        Keys {
            due: waits(&node.life.service).into_iter().chain(log).min(),
            deadline: node.life.deadline(),
            adopted: node.service.pidfd.is_some() || node.log.pidfd.is_some(),
        }
    }
}

impl Index {
    /// Files the entry under its keys now (`None`: it is gone).
    fn update(&mut self, id: Id, keys: Option<Keys>) {
        let old = self.keys.get(&id).copied().unwrap_or_default();
        let new = keys.unwrap_or_default();
        if old == new && keys.is_some() {
            return;
        }
        if let Some(at) = old.due {
            self.due.remove(&(at, id));
        }
        if let Some(at) = old.deadline {
            self.deadlines.remove(&(at, id));
        }
        if old.adopted {
            self.adopted.remove(&id);
        }
        if let Some(at) = new.due {
            self.due.insert((at, id));
        }
        if let Some(at) = new.deadline {
            self.deadlines.insert((at, id));
        }
        if new.adopted {
            self.adopted.insert(id);
        }
        match keys {
            Some(keys) => self.keys.insert(id, keys),
            None => self.keys.remove(&id),
        };
    }

    /// The entries due at `now`, earliest first.
    fn due_at(&self, now: Instant) -> Vec<Id> {
        self.due
            .iter()
            .take_while(|(at, _)| *at <= now)
            .map(|(_, id)| *id)
            .collect()
    }
}

/// A logger's supervisor that waits for its HUP (`Some`: its directory and its name for
/// messages), or no longer does (`None`).
pub type StatusWatch = (Id, Option<(PathBuf, OsString)>);

fn describe(status: Option<WaitStatus>) -> String {
    match status {
        Some(s) => match (s.exit_status(), s.terminating_signal()) {
            (Some(code), _) => format!("exit {code}"),
            (None, Some(sig)) => format!("signal {}", warden::signal::name_or_number(sig)),
            _ => "exited".into(),
        },
        None => "exited".into(),
    }
}

fn failure(e: &io::Error) -> Failure {
    Failure {
        error: e.to_string(),
        fd_shortage: system::is_emfile(e),
    }
}

/// What carrying out an entry's actions needs from the tree, besides the entry.
struct Exec<'a> {
    programs: &'a Programs,
    pids: &'a mut HashMap<i32, (Id, Role)>,
    fd_shortage_reported: &'a mut bool,
    launches: &'a mut Launches,
    container_exit_seen: &'a mut bool,
    status_watches: &'a mut Vec<StatusWatch>,
    /// The catch-all pipe's write end: stdout and stderr of services without a `log/`.
    uncaught: Option<&'a OwnedFd>,
    now: Instant,
}

impl Exec<'_> {
    /// Steps the entry with `event` and carries out what it says.
    fn drive(&mut self, id: Id, node: &mut Node, event: Event) -> Vec<Action> {
        let actions = life::step(&mut node.life, event, self.now);
        self.carry_out(id, node, actions)
    }

    /// Carries out the actions of one step, and of the steps they lead to (the outcome of
    /// the starts, the logger's state); returns those the scanner is to hear of.
    fn carry_out(&mut self, id: Id, node: &mut Node, actions: Vec<Action>) -> Vec<Action> {
        let mut scanner = Vec::new();
        let mut next = Some(actions);
        while let Some(actions) = next.take() {
            let mut launched: Option<Launched> = None;
            let mut pipe_failure: Option<Failure> = None;
            let mut reopen_failed = false;
            let mut then: Vec<Event> = Vec::new();
            for action in actions {
                match action {
                    Action::OpenPipe => {
                        if node.pipe.is_none() {
                            match system::new_pipe() {
                                Ok(pipe) => node.pipe = Some(pipe),
                                Err(e) => pipe_failure = Some(failure(&e)),
                            }
                        }
                    }
                    Action::LeftoverToPipe => {
                        reopen_failed |=
                            !leftover_to_pipe(&mut node.pipe, &mut node.leftover, || {
                                shown_as(&node.name, Role::Log)
                            });
                    }
                    Action::ClosePipe => node.pipe = None,
                    Action::PipeToLeftover => {
                        if let Some(pipe) = node.pipe.take() {
                            node.leftover = Some(pipe.read);
                        }
                    }
                    Action::DropLeftover(why) => {
                        if let (Some(read), Some(why)) = (node.leftover.take(), why) {
                            drop_leftover(&node.name, &read, why);
                        }
                    }
                    Action::Start(role, end) => {
                        let result = self.start(id, node, role, end, pipe_failure.as_ref());
                        let outcome = launched.get_or_insert_with(Launched::default);
                        match role {
                            Role::Service => outcome.service = Some(result),
                            Role::Log => outcome.log = Some(result),
                        }
                    }
                    Action::Signal(role, sig) => {
                        if let Some(run) = node.run(role) {
                            let what = if sig == Signal::HUP {
                                "log supervisor"
                            } else {
                                "supervisor"
                            };
                            system::signal(run.pid, node.pidfd(role), sig, what, &node.name);
                        }
                    }
                    Action::KillGroup(role) => {
                        if let Some(run) = node.run(role) {
                            system::kill_group_of(&system::supervisor_dir(run.pid));
                        }
                    }
                    Action::NoteCgroup(role) => {
                        if let Some(run) = node.run(role) {
                            let held = node.held(role);
                            if held.cgroup.is_none() {
                                held.cgroup = system::cgroup_of(&system::supervisor_dir(run.pid));
                            }
                        }
                    }
                    Action::RemoveCgroup(role) => {
                        system::remove_cgroup(node.held(role).cgroup.take())
                    }
                    Action::RemoveDeadCgroup(role) => system::remove_cgroup(
                        system::dead_supervisor_cgroup(&path_of(&node.name, role)),
                    ),
                    Action::WatchStatus => {
                        if let Some(run) = node.run(Role::Log) {
                            let dir = system::supervisor_dir(run.pid);
                            let name = log_path(&node.name).into_os_string();
                            self.status_watches.push((id, Some((dir, name))));
                        }
                    }
                    Action::UnwatchStatus => self.status_watches.push((id, None)),
                    Action::CheckLogger => {
                        if let Some(run) = node.life.awaits_hup() {
                            let dir = system::supervisor_dir(run.pid);
                            then.push(Event::LoggerSeen(system::logger_state(&dir)));
                        }
                    }
                    Action::RecheckLogger | Action::LogWatchDone => scanner.push(action),
                    Action::Report(report) => self.report(&node.name, report),
                }
            }
            // What the actions found out is told to the machine, whose answer is carried out
            // in turn (a Due's starts lead to a Launched, a stop's CheckLogger to LoggerSeen).
            if let Some(launched) = launched.as_mut() {
                launched.pipe_failed = pipe_failure.is_some();
                launched.reopen_failed = reopen_failed;
            }
            let events = launched.map(Event::Launched).into_iter().chain(then);
            let mut more = Vec::new();
            for event in events {
                more.extend(life::step(&mut node.life, event, self.now));
            }
            if !more.is_empty() {
                next = Some(more);
            }
        }
        scanner
    }

    /// Starts a supervisor: the service's with the pipe's write end on stdout and stderr, the
    /// logger's with the read end (or what is left of the pipe) on stdin.
    fn start(
        &mut self,
        id: Id,
        node: &mut Node,
        role: Role,
        end: End,
        pipe_failure: Option<&Failure>,
    ) -> Result<i32, Failure> {
        if role == Role::Service {
            // Looked at with each start, as `log/` is: added or removed, it counts from the
            // supervisor's next start.
            node.container_exit = system::container_exit_of(&node.name, node.container_exit);
            *self.container_exit_seen |= node.container_exit.is_some();
        }
        let fd = match end {
            End::PipeRead => node.pipe.as_ref().map(|p| &p.read),
            End::PipeWrite => node.pipe.as_ref().map(|p| &p.write),
            End::Leftover => leftover_read(&node.pipe, &node.leftover),
            End::Uncaught => None,
        };
        let stdio = match (end, fd) {
            (End::Uncaught, _) => self.uncaught.map_or(Stdio::Inherit, Stdio::Output),
            (End::PipeWrite, Some(fd)) => Stdio::Output(fd),
            (End::PipeRead | End::Leftover, Some(fd)) => Stdio::Input(fd),
            (_, None) => {
                return Err(pipe_failure
                    .cloned()
                    .unwrap_or_else(|| failure(&io::Error::from(io::ErrorKind::BrokenPipe))))
            }
        };
        let dir = path_of(&node.name, role);
        let mut args = Vec::with_capacity(2);
        if role == Role::Service && node.start_held {
            args.push(OsStr::new("--held"));
        }
        if role == Role::Log {
            // Supervised even without a `run`: supervise then runs the built-in default,
            // `logger ./main`, so its status and control work as for any service.
            args.push(OsStr::new("--default-log"));
        }
        args.push(dir.as_os_str());
        match spawn_supervise(self.programs, &args, stdio, self.launches) {
            Ok(pid) => {
                *self.fd_shortage_reported = false;
                self.pids.insert(pid, (id, role));
                *node.held(role) = Held::default();
                if role == Role::Service {
                    node.deferred = false;
                }
                Ok(pid)
            }
            Err(e) => Err(failure(&e)),
        }
    }

    fn report(&mut self, name: &OsStr, report: Report) {
        match report {
            Report::AdoptFailed { role, cause } => warden::say!(
                "svscan: warning: unable to adopt the running supervisor of {}: {cause}",
                shown_as(name, role)
            ),
            Report::PipeNotTakenOver => warden::say!(
                "svscan: warning: unable to take over the log pipe of {}: a restarted side \
                 gets a new pipe",
                shown(name)
            ),
            Report::StartFailed { role, error, delay } => warden::say!(
                "svscan: warning: unable to start the supervisor of {}: {error}; retrying in {}",
                shown_as(name, role),
                humanize(delay)
            ),
            Report::FdShortage { role, error } => {
                if !std::mem::replace(self.fd_shortage_reported, true) {
                    warden::say!(
                        "svscan: warning: unable to start the supervisor of {}: {error}; \
                         retrying every {} while file descriptors are short",
                        shown_as(name, role),
                        humanize(FD_SHORTAGE_RETRY)
                    );
                }
            }
            Report::Ended {
                role,
                status,
                delay,
            } => warden::say!(
                "svscan: warning: the supervisor of {} ended ({status}); restarting it in {}",
                shown_as(name, role),
                humanize(delay)
            ),
            Report::Straggler(role) => warden::say!(
                "svscan: warning: {} did not stop in time: sending KILL",
                shown_as(name, role)
            ),
        }
    }
}

/// Starts `supervise ARGS...` (warden's, beside svscan; looked for again while it is
/// missing: it may have been installed since).
fn spawn_supervise(
    programs: &Programs,
    args: &[&OsStr],
    stdio: Stdio<'_>,
    launches: &mut Launches,
) -> io::Result<i32> {
    let found;
    let supervise = match &programs.supervise {
        Ok(path) => path.as_os_str(),
        Err(_) => {
            found = warden::companion::find("supervise")
                .map_err(|why| io::Error::new(io::ErrorKind::NotFound, why))?;
            found.as_os_str()
        }
    };
    launch::spawn(supervise, args, stdio, system::CAUGHT, launches)
        .map(|pid| pid.as_raw_nonzero().get())
}

/// The read end a draining logger gets: the leftover's, made a pipe again when its write end
/// could be reopened ([`leftover_to_pipe`]), or the bare leftover.
fn leftover_read<'a>(pipe: &'a Option<Pipe>, leftover: &'a Option<OwnedFd>) -> Option<&'a OwnedFd> {
    pipe.as_ref().map(|p| &p.read).or(leftover.as_ref())
}

/// Makes the leftover a pipe again, with a write end reopened for it; false (said aloud, the
/// leftover kept as it is) when that could not be done. A pipe already held is left alone.
fn leftover_to_pipe(
    pipe: &mut Option<Pipe>,
    leftover: &mut Option<OwnedFd>,
    logger: impl FnOnce() -> String,
) -> bool {
    let (None, Some(read)) = (&pipe, leftover.as_ref()) else {
        return true;
    };
    match system::writer_for(read) {
        Ok(write) => {
            *pipe = leftover.take().map(|read| Pipe { read, write });
            true
        }
        Err(e) => {
            warden::say!(
                "svscan: warning: {}: unable to open what is left of its pipe for writing \
                 again: {e} (its logger may be started once more after reading it all)",
                logger()
            );
            false
        }
    }
}

/// Closes what is left of a removed service's log pipe when no logger will read it, saying
/// how much is lost (runsv drops it silently).
fn drop_leftover(name: &OsStr, read: &OwnedFd, why: &str) {
    match system::unread(read) {
        Ok(0) => {}
        Ok(n) => warden::say!(
            "svscan: warning: {} {why}: {n} unread bytes of its pipe are dropped",
            shown_as(name, Role::Log)
        ),
        Err(e) => warden::say!(
            "svscan: warning: {} {why}: what is left in its pipe is dropped (unable to count \
             it: {e})",
            shown_as(name, Role::Log)
        ),
    }
}

/// What svscan finds of a supervisor an earlier svscan left running in `dir`.
fn adoption(dir: &std::path::Path) -> (Adoption, Option<OwnedFd>) {
    match system::adopt(dir) {
        Ok(Some(adopted)) => (Adoption::Running(adopted.run), Some(adopted.pidfd)),
        Ok(None) => (Adoption::None, None),
        Err(cause) => (Adoption::Failed(cause), None),
    }
}

impl Tree {
    pub fn new(programs: Programs) -> Tree {
        Tree {
            entries: HashMap::new(),
            index: Index::default(),
            by_name: HashMap::new(),
            uncaught: None,
            shutting_down: false,
            pids: HashMap::new(),
            programs,
            fd_shortage_reported: false,
            launches: Launches::default(),
            container_exit_seen: false,
            status_watches: Vec::new(),
        }
    }

    /// Splits the tree into its entries and what carrying out their actions needs.
    fn parts(&mut self, now: Instant) -> (&mut HashMap<Id, Node>, Exec<'_>) {
        let exec = Exec {
            programs: &self.programs,
            pids: &mut self.pids,
            fd_shortage_reported: &mut self.fd_shortage_reported,
            launches: &mut self.launches,
            container_exit_seen: &mut self.container_exit_seen,
            status_watches: &mut self.status_watches,
            uncaught: self
                .uncaught
                .as_ref()
                .and_then(|u| u.pipe.as_ref())
                .map(|pipe| &pipe.write),
            now,
        };
        (&mut self.entries, exec)
    }

    /// Steps entry `id` with `event`, and forgets it once it is finished.
    fn drive(&mut self, id: Id, event: Event, now: Instant) -> Vec<Action> {
        let (entries, mut exec) = self.parts(now);
        let Some(node) = entries.get_mut(&id) else {
            return Vec::new();
        };
        let out = exec.drive(id, node, event);
        self.settle(id);
        out
    }

    /// After entry `id` changed: forgotten if it is finished, else filed anew in the index.
    fn settle(&mut self, id: Id) {
        let keys = match self.entries.get(&id) {
            Some(node) if node.life.finished() => {
                if let Some(node) = self.entries.remove(&id) {
                    self.unname(id, &node.name);
                }
                None
            }
            Some(node) => Some(Keys::of(node)),
            None => None,
        };
        self.index.update(id, keys);
    }

    pub fn contains(&self, id: &Id) -> bool {
        self.entries.contains_key(id)
    }

    /// No entry is left, nor the catch-all logger.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
            && self
                .uncaught
                .as_ref()
                .map_or(true, |u| u.life.log.slot.is_gone())
    }

    /// Sends the output of every service without a `log/` to a logger supervised in `dir`
    /// (absolute), adopting the one an earlier svscan left running there, and its pipe.
    pub fn set_uncaught(&mut self, dir: PathBuf, now: Instant) -> io::Result<()> {
        let meta = std::fs::metadata(&dir)?;
        let id = (meta.dev(), meta.ino());
        let name = dir.clone().into_os_string();
        let (adopted, pidfd) = match system::adopt(&dir) {
            Ok(Some(adopted)) => (Some(adopted.run), Some(adopted.pidfd)),
            Ok(None) => (None, None),
            Err(cause) => {
                warden::say!(
                    "svscan: warning: unable to adopt the running supervisor of {}: {cause}",
                    shown(&name)
                );
                (None, None)
            }
        };
        let pipe = match adopted.and_then(|run| system::reopen_pipe(run.pid, 0)) {
            Some(pipe) => pipe,
            None => {
                if adopted.is_some() {
                    warden::say!(
                        "svscan: warning: unable to take over the pipe of the catch-all logger \
                         {}: its next start gets a new one",
                        shown(&name)
                    );
                }
                system::new_pipe()?
            }
        };
        if let Some(run) = adopted {
            self.pids.insert(run.pid, (id, Role::Log));
        }
        self.uncaught = Some(Uncaught {
            id,
            dir,
            life: Catchall::new(adopted, now),
            held: Held {
                pidfd,
                cgroup: None,
            },
            pipe: Some(pipe),
            leftover: None,
        });
        // Now, before the first scan starts any service: the pipe has its reader first.
        self.start_uncaught(now);
        Ok(())
    }

    /// Steps the catch-all logger's machine and carries out what it says; returns the
    /// actions the scanner is to hear of.
    fn drive_uncaught(&mut self, event: catchall::Event, now: Instant) -> Vec<Action> {
        let Tree {
            uncaught,
            programs,
            launches,
            pids,
            status_watches,
            ..
        } = self;
        let Some(u) = uncaught.as_mut() else {
            return Vec::new();
        };
        let mut scanner = Vec::new();
        let mut next = Some(u.life.step(event, now));
        while let Some(actions) = next.take() {
            let mut then = Vec::new();
            let mut reopen_failed = false;
            for action in actions {
                match action {
                    Action::PipeToLeftover => {
                        if let Some(pipe) = u.pipe.take() {
                            u.leftover = Some(pipe.read);
                        }
                    }
                    Action::LeftoverToPipe => {
                        reopen_failed |= !leftover_to_pipe(&mut u.pipe, &mut u.leftover, || {
                            format!("the catch-all logger {}", u.dir.display())
                        });
                    }
                    Action::DropLeftover(why) => {
                        if let (Some(read), Some(why)) = (u.leftover.take(), why) {
                            if let Ok(n @ 1..) = system::unread(&read) {
                                warden::say!(
                                    "svscan: warning: the catch-all logger {} {why}: {n} unread \
                                     bytes of its pipe are dropped",
                                    u.dir.display()
                                );
                            }
                        }
                    }
                    Action::Start(_, end) => {
                        let read = match end {
                            End::PipeRead => u.pipe.as_ref().map(|p| &p.read),
                            End::Leftover => leftover_read(&u.pipe, &u.leftover),
                            End::PipeWrite | End::Uncaught => None,
                        };
                        let result = match (read, &programs.supervise) {
                            (Some(read), Ok(supervise)) => launch::spawn(
                                supervise.as_os_str(),
                                &[OsStr::new("--default-log"), u.dir.as_os_str()],
                                Stdio::Input(read),
                                system::CAUGHT,
                                launches,
                            )
                            .map(|pid| pid.as_raw_nonzero().get()),
                            _ => Err(io::Error::from(io::ErrorKind::BrokenPipe)),
                        };
                        if let Ok(pid) = result {
                            pids.insert(pid, (u.id, Role::Log));
                            u.held = Held::default();
                        }
                        then.push(catchall::Event::Launched {
                            result: result.map_err(|e| failure(&e)),
                            reopen_failed,
                        });
                    }
                    Action::Signal(_, sig) => {
                        if let Some(run) = u.life.log.slot.running() {
                            let what = if sig == Signal::HUP {
                                "log supervisor"
                            } else {
                                "supervisor"
                            };
                            let pidfd = u.held.pidfd.as_ref();
                            system::signal(run.pid, pidfd, sig, what, u.dir.as_os_str());
                        }
                    }
                    Action::KillGroup(_) => {
                        if let Some(run) = u.life.log.slot.running() {
                            system::kill_group_of(&system::supervisor_dir(run.pid));
                        }
                    }
                    Action::NoteCgroup(_) => {
                        if let (Some(run), None) = (u.life.log.slot.running(), &u.held.cgroup) {
                            u.held.cgroup = system::cgroup_of(&system::supervisor_dir(run.pid));
                        }
                    }
                    Action::RemoveCgroup(_) => system::remove_cgroup(u.held.cgroup.take()),
                    Action::CheckLogger => {
                        if let Some(run) = u.life.awaits_hup() {
                            let dir = system::supervisor_dir(run.pid);
                            then.push(catchall::Event::LoggerSeen(system::logger_state(&dir)));
                        }
                    }
                    Action::WatchStatus => {
                        if let Some(run) = u.life.log.slot.running() {
                            let dir = system::supervisor_dir(run.pid);
                            let name = u.dir.clone().into_os_string();
                            status_watches.push((u.id, Some((dir, name))));
                        }
                    }
                    Action::UnwatchStatus => status_watches.push((u.id, None)),
                    Action::RecheckLogger => scanner.push(action),
                    Action::Report(report) => u.report(report),
                    // Not asked of the catch-all: its pipe is made once, its cgroup noted.
                    Action::OpenPipe
                    | Action::ClosePipe
                    | Action::RemoveDeadCgroup(_)
                    | Action::LogWatchDone => {}
                }
            }
            let mut more = Vec::new();
            for event in then {
                more.extend(u.life.step(event, now));
            }
            if !more.is_empty() {
                next = Some(more);
            }
        }
        scanner
    }

    /// After a failed exec of the next stage (PID 1): the catch-all logger is wanted again,
    /// with a new pipe if the old one was let go.
    pub fn resume(&mut self, now: Instant) {
        self.shutting_down = false;
        let Some(u) = self.uncaught.as_mut() else {
            return;
        };
        if u.pipe.is_none() {
            match system::new_pipe() {
                Ok(pipe) => u.pipe = Some(pipe),
                Err(e) => warden::say!(
                    "svscan: warning: unable to make the pipe of the catch-all logger: {e}; \
                     services without a log/ now write where svscan does"
                ),
            }
        }
        let pipe = u.pipe.is_some();
        self.drive_uncaught(catchall::Event::Resumed { pipe }, now);
    }

    /// Once every entry is gone in a shutdown: svscan lets go of the catch-all pipe's write
    /// end and tells the logger's supervisor to exit once the logger has read it all.
    fn stop_uncaught(&mut self, now: Instant) {
        if !self.shutting_down || !self.entries.is_empty() {
            return;
        }
        let Some(u) = self.uncaught.as_ref() else {
            return;
        };
        // What the pipe holds: it becomes the leftover.
        let read = u.pipe.as_ref().map(|p| &p.read).or(u.leftover.as_ref());
        let unread = read.is_some_and(|fd| system::unread(fd).is_ok_and(|n| n > 0));
        self.drive_uncaught(catchall::Event::AllGone { unread }, now);
    }

    /// Starts the catch-all logger's supervisor when it is due.
    fn start_uncaught(&mut self, now: Instant) {
        let Some(u) = self.uncaught.as_ref() else {
            return;
        };
        if !u.life.log.slot.due(now) {
            return;
        }
        let event = catchall::Event::Due {
            unread: u.unread(),
            can_start: self.programs.supervise.is_ok(),
        };
        self.drive_uncaught(event, now);
    }

    /// The catch-all logger's supervisor exited: restarted on the same pipe, so that no line
    /// is lost, unless the shutdown is over for it.
    fn uncaught_exited(&mut self, pid: i32, status: Option<WaitStatus>, now: Instant) {
        let Some(u) = self.uncaught.as_ref() else {
            return;
        };
        let event = catchall::Event::Exited {
            pid,
            status: describe(status),
            unread: u.unread(),
        };
        self.drive_uncaught(event, now);
        if let Some(u) = self.uncaught.as_mut() {
            if u.life.log.slot.running().map_or(true, |run| run.pid != pid) {
                u.held = Held::default();
            }
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn name(&self, id: &Id) -> Option<&OsStr> {
        self.entries.get(id).map(|e| e.name.as_os_str())
    }

    /// (name, id) of every entry, wanted or being stopped.
    pub fn names(&self) -> Vec<(OsString, Id)> {
        self.entries
            .iter()
            .map(|(id, e)| (e.name.clone(), *id))
            .collect()
    }

    pub fn rename(&mut self, id: &Id, name: &OsStr) {
        let Some(entry) = self.entries.get_mut(id) else {
            return;
        };
        let old = std::mem::replace(&mut entry.name, name.to_owned());
        self.unname(*id, &old);
        self.by_name.entry(name.to_owned()).or_default().push(*id);
    }

    /// The entries named `name` (more than one while a replaced directory's is stopping).
    pub fn named(&self, name: &OsStr) -> &[Id] {
        self.by_name.get(name).map_or(&[], Vec::as_slice)
    }

    fn unname(&mut self, id: Id, name: &OsStr) {
        if let Some(ids) = self.by_name.get_mut(name) {
            ids.retain(|other| *other != id);
            if ids.is_empty() {
                self.by_name.remove(name);
            }
        }
    }

    /// A service directory appeared: supervise it (held, if its dependencies are not ready),
    /// adopting supervisors an earlier svscan left running, and their pipe. True when the
    /// service's supervisor was adopted.
    pub fn add(
        &mut self,
        id: Id,
        name: &OsStr,
        held: bool,
        start_at: Instant,
        now: Instant,
    ) -> bool {
        let (service, service_pidfd) = adoption(&service_path(name));
        let log_dir = has_log(name);
        let (log, log_pidfd) = if log_dir {
            adoption(&log_path(name))
        } else {
            (Adoption::None, None)
        };
        let pid_of = |a: &Adoption| match a {
            Adoption::Running(run) => Some(run.pid),
            _ => None,
        };
        let pipe = pid_of(&service)
            .and_then(|pid| system::reopen_pipe(pid, 1))
            .or_else(|| pid_of(&log).and_then(|pid| system::reopen_pipe(pid, 0)));
        for (adopted, role) in [(pid_of(&service), Role::Service), (pid_of(&log), Role::Log)] {
            if let Some(pid) = adopted {
                self.pids.insert(pid, (id, role));
            }
        }
        let adopted = pid_of(&service).is_some();
        let found = Found {
            log_dir,
            service,
            log,
            pipe: pipe.is_some(),
        };
        let container_exit = system::container_exit_of(name, None);
        self.container_exit_seen |= container_exit.is_some();
        let (life, actions) = life::appear_at(found, now, start_at.max(now));
        let mut node = Node {
            name: name.to_owned(),
            life,
            pipe,
            leftover: None,
            service: Held {
                pidfd: service_pidfd,
                cgroup: None,
            },
            log: Held {
                pidfd: log_pidfd,
                cgroup: None,
            },
            container_exit,
            start_held: held,
            deferred: start_at > now,
        };
        let (entries, mut exec) = self.parts(now);
        // Started at once, not at the end of the scan that found it: at boot the first
        // supervisors are then at work while svscan still looks at the rest.
        exec.carry_out(id, &mut node, actions);
        if let Some(old) = entries.insert(id, node) {
            self.unname(id, &old.name);
        }
        self.by_name.entry(name.to_owned()).or_default().push(id);
        self.settle(id);
        adopted
    }

    /// Whether the service's supervisor, at its next start, starts held.
    pub fn set_held(&mut self, id: &Id, held: bool) {
        if let Some(node) = self.entries.get_mut(id) {
            node.start_held = held;
            if !held && std::mem::take(&mut node.deferred) {
                // Its dependencies are ready before its put-off start: now.
                if let life::State::Waiting { at } = &mut node.life.service.state {
                    *at = (*at).min(Instant::now());
                }
            }
            self.settle(*id);
        }
    }

    /// The pid of the service's supervisor, while it runs.
    pub fn supervisor_pid(&self, id: &Id) -> Option<i32> {
        self.entries.get(id)?.life.service.running().map(|r| r.pid)
    }

    /// Whether the service's supervisor has exited for good (or there is no such entry).
    pub fn service_gone(&self, id: &Id) -> bool {
        self.entries
            .get(id)
            .map_or(true, |e| e.life.service.is_gone())
    }

    /// Entries still wanted (during a shutdown in dependency order: not told to stop yet).
    pub fn wanted(&self) -> Vec<Id> {
        let wanted = self.entries.iter().filter(|(_, e)| e.life.wanted);
        wanted.map(|(id, _)| *id).collect()
    }

    /// A shutdown begins: the catch-all logger is to stop once the entries are gone, which
    /// are told to stop one by one (`unwant`), dependents first.
    pub fn begin_shutdown(&mut self) {
        self.shutting_down = true;
    }

    /// A directory that was being stopped is back (moved out and in again).
    pub fn want(&mut self, id: &Id, now: Instant) {
        if self.entries.get(id).is_some_and(|n| !n.life.wanted) {
            self.drive(*id, Event::Returned, now);
        }
    }

    pub fn is_wanted(&self, id: &Id) -> bool {
        self.entries.get(id).is_some_and(|e| e.life.wanted)
    }

    /// The directory is gone, or svscan shuts down: stop the service (`x`, by TERM to its
    /// supervisor); its logger follows once the service's supervisor has exited.
    pub fn unwant(&mut self, id: &Id) {
        let Some(node) = self.entries.get(id) else {
            return;
        };
        // A service that runs is only told to stop: its log is let go once it has exited.
        let drain = node.drain(node.life.service.running().is_none());
        // No deadline is set by a vanishing: any clock will do.
        self.drive(*id, Event::Vanished { drain }, Instant::now());
    }

    pub fn unwant_all(&mut self) {
        self.shutting_down = true;
        let ids: Vec<Id> = self.entries.keys().copied().collect();
        for id in ids {
            self.unwant(&id);
        }
    }

    /// A child was reaped, or an adopted supervisor's pidfd said it exited. Unknown pids are
    /// orphans svscan reaps as PID 1 or subreaper: nothing to do.
    pub fn exited(&mut self, pid: i32, status: Option<WaitStatus>, now: Instant) {
        // A supervisor whose exec failed exits 127: the exec's error says why.
        let exec_error = self.launches.exec_error(pid);
        let Some((id, role)) = self.pids.remove(&pid) else {
            return;
        };
        if self.uncaught.as_ref().is_some_and(|u| u.id == id) {
            self.uncaught_exited(pid, status, now);
            return;
        }
        let Some(node) = self.entries.get(&id) else {
            return;
        };
        let event = Event::Exited {
            role,
            pid,
            status: describe(status),
            exec_error: exec_error.map(|e| e.to_string()),
            drain: node.drain(!node.life.wanted),
        };
        self.drive(id, event, now);
        if let Some(node) = self.entries.get_mut(&id) {
            if node.run(role).map_or(true, |run| run.pid != pid) {
                // The run that exited took its pidfd and cgroup with it.
                *node.held(role) = Held::default();
            }
            self.settle(id);
        }
    }

    /// A service made in place got its `log/` just after svscan started its supervisor (the
    /// `mkdir -p foo/log` or `cp -r` race): its supervisor is told to exit (`x`) and started
    /// again at once, now with the pipe and the logger. True once there is nothing left to do.
    pub fn connect_new_log(&mut self, id: &Id) -> bool {
        let Some(node) = self.entries.get(id) else {
            return true;
        };
        let log_dir = node.life.log.is_none() && node.life.wanted && has_log(&node.name);
        let out = self.drive(*id, Event::LogAppeared { log_dir }, Instant::now());
        out.contains(&Action::LogWatchDone)
    }

    /// What changed, since the last call, of the loggers' supervisors that wait for their
    /// HUP: the scanner watches their status.
    pub fn take_status_watches(&mut self) -> Vec<StatusWatch> {
        std::mem::take(&mut self.status_watches)
    }

    /// Sends the pending HUP if the logger now runs.
    pub fn try_hup(&mut self, id: &Id) -> Hup {
        let hup = |state: Logger| match state {
            Logger::Coming => Hup::Pending,
            Logger::Unreadable => Hup::Recheck,
            Logger::Running | Logger::Down => Hup::Done,
        };
        if let Some(u) = self.uncaught.as_ref().filter(|u| u.id == *id) {
            if !u.life.log.hup_pending {
                return Hup::Done;
            }
            let Some(run) = u.life.awaits_hup() else {
                return Hup::Pending;
            };
            let state = system::logger_state(&system::supervisor_dir(run.pid));
            self.drive_uncaught(catchall::Event::LoggerSeen(state), Instant::now());
            return hup(state);
        }
        let Some(node) = self.entries.get(id) else {
            return Hup::Done;
        };
        if !node.life.log.as_ref().is_some_and(|l| l.hup_pending) {
            return Hup::Done;
        }
        let Some(run) = node.life.awaits_hup() else {
            return Hup::Pending;
        };
        let state = system::logger_state(&system::supervisor_dir(run.pid));
        self.drive(*id, Event::LoggerSeen(state), Instant::now());
        hup(state)
    }

    /// Before svscan sleeps: waits until the supervisors still starting are done with its
    /// memory, so that an idle tree holds nothing for them.
    pub fn settle_launches(&mut self) {
        self.launches.settle();
    }

    /// Starts every supervisor whose time has come: loggers before their services, so the
    /// pipe has a reader first.
    pub fn start_due(&mut self, now: Instant) {
        self.start_uncaught(now);
        for id in self.index.due_at(now) {
            let (entries, mut exec) = self.parts(now);
            let Some(node) = entries.get_mut(&id) else {
                continue;
            };
            if node.life.due(now) {
                let log_dir = node.life.probes_log(now) && has_log(&node.name);
                exec.drive(id, node, Event::Due { log_dir });
            }
            self.settle(id);
        }
        self.stop_uncaught(now);
    }

    /// The nearest time a supervisor is due to (re)start.
    pub fn next_deadline(&self) -> Option<Instant> {
        let uncaught = self
            .uncaught
            .as_ref()
            .and_then(|u| u.life.log.slot.deadline());
        let entries = self.index.deadlines.first().map(|(at, _)| *at);
        entries.into_iter().chain(uncaught).min()
    }

    /// pidfds of adopted supervisors, with their pids.
    pub fn pidfds(&self) -> Vec<(i32, BorrowedFd<'_>)> {
        let mut out = Vec::new();
        for e in self
            .index
            .adopted
            .iter()
            .filter_map(|id| self.entries.get(id))
        {
            for (role, held) in [(Role::Service, &e.service), (Role::Log, &e.log)] {
                if let (Some(run), Some(fd)) = (e.run(role), held.pidfd.as_ref()) {
                    out.push((run.pid, fd.as_fd()));
                }
            }
        }
        if let Some(u) = &self.uncaught {
            if let (Some(run), Some(fd)) = (u.life.log.slot.running(), u.held.pidfd.as_ref()) {
                out.push((run.pid, fd.as_fd()));
            }
        }
        out
    }

    /// Services with a `container-exit` file whose supervisor runs, with their directory:
    /// their `supervise/` is watched for the service's end.
    pub fn container_exits(&self) -> Vec<(Id, PathBuf)> {
        if !self.container_exit_seen {
            return Vec::new();
        }
        self.entries
            .iter()
            .filter(|(_, e)| e.life.wanted && e.container_exit.is_some())
            .filter(|(_, e)| e.life.service.running().is_some())
            .map(|(id, e)| (*id, service_path(&e.name)))
            .collect()
    }

    /// The status svscan is to end with, if the `container-exit` service `id` has ended: its
    /// supervisor (the one running now, not an earlier one whose files are left) records an
    /// exit of `run` newer than any svscan found at adoption, and, unless the file says
    /// `always`, the service is down and wanted down, with nothing of the run left.
    pub fn container_exit(&self, id: &Id) -> Option<u8> {
        let entry = self.entries.get(id).filter(|e| e.life.wanted)?;
        let mode = entry.container_exit?;
        let r = entry.life.service.running()?;
        let dir = ServiceDir::new(service_path(&entry.name));
        let x = dir.extended()?;
        let ours = x
            .supervisor_pid
            .is_some_and(|p| i64::from(p) == i64::from(r.pid));
        let exit = x.last_exit?;
        if !ours || x.last_exit_at.is_none() || x.last_exit_at == r.exit_seen {
            return None;
        }
        if mode == ContainerExit::Down {
            // supervise writes `status` before `supervise/warden`: a `warden` that still names
            // the run's group is from before that run ended, its `last_exit` an older one.
            if x.pgid.is_some() {
                return None;
            }
            let s = dir.status().ok()?;
            if s.state != warden::status::RunState::Down || s.want == warden::status::Want::Up {
                return None;
            }
        }
        Some(system::container_status(exit))
    }

    /// Whether every service supervisor has exited (loggers may still drain).
    pub fn services_gone(&self) -> bool {
        self.entries.values().all(|e| e.life.service.is_gone())
    }

    /// The shutdown grace is over: KILL what is left of the services (or of the loggers), the
    /// supervisor and the process group it recorded.
    pub fn kill_stragglers(&mut self, role: Role) {
        let now = Instant::now();
        if role == Role::Log {
            self.drive_uncaught(catchall::Event::GraceOver, now);
        }
        let (entries, mut exec) = self.parts(now);
        for (id, node) in entries.iter_mut() {
            exec.drive(*id, node, Event::GraceOver(role));
        }
        let ids: Vec<Id> = self.entries.keys().copied().collect();
        for id in ids {
            self.settle(id);
        }
    }
}

#[cfg(test)]
mod index_tests {
    use super::{Index, Keys};
    use std::time::{Duration, Instant};

    fn keys(due: Option<Instant>, deadline: Option<Instant>, adopted: bool) -> Option<Keys> {
        Some(Keys {
            due,
            deadline,
            adopted,
        })
    }

    #[test]
    fn due_entries_come_earliest_first_and_only_once_due() {
        let now = Instant::now();
        let later = now + Duration::from_secs(5);
        let mut index = Index::default();
        index.update((1, 1), keys(Some(later), Some(later), false));
        index.update((1, 2), keys(Some(now), None, false));
        index.update((1, 3), keys(None, None, false));
        index.update(
            (1, 4),
            keys(Some(now - Duration::from_secs(1)), None, false),
        );
        assert_eq!(index.due_at(now), vec![(1, 4), (1, 2)]);
        assert_eq!(index.due_at(later), vec![(1, 4), (1, 2), (1, 1)]);
        assert_eq!(index.deadlines.first().map(|(at, _)| *at), Some(later));
    }

    #[test]
    fn a_change_of_keys_refiles_the_entry_and_a_gone_one_leaves_nothing() {
        let now = Instant::now();
        let later = now + Duration::from_secs(5);
        let mut index = Index::default();
        index.update((2, 1), keys(Some(now), Some(now), true));
        assert_eq!(index.adopted.len(), 1);
        // Started: no longer waiting; its adopted supervisor's pidfd went with the run.
        index.update((2, 1), keys(None, None, false));
        assert!(index.due_at(later).is_empty());
        assert!(index.deadlines.is_empty() && index.adopted.is_empty());
        // Back-off after a death: filed under the new time only.
        index.update((2, 1), keys(Some(later), Some(later), false));
        assert!(index.due_at(now).is_empty());
        assert_eq!(index.due_at(later), vec![(2, 1)]);
        assert_eq!(index.due.len(), 1);
        index.update((2, 1), None);
        assert!(index.due.is_empty() && index.deadlines.is_empty() && index.keys.is_empty());
        // Forgetting an entry never filed is harmless.
        index.update((9, 9), None);
        assert!(index.keys.is_empty());
    }
}
