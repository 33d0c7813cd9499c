//! The I/O layer: one poll loop over the signal pipe, the control FIFO and the readiness pipe,
//! with the machine's nearest deadline as timeout. It turns what happened into machine events
//! and carries out the actions the machine returns.

use crate::files::{SuperviseDir, CHUNK};
use crate::machine::{Action, Event, Limits, Machine, Now, Readiness, Target};
use crate::tree::Tree;
use crate::{spawn, Fatal};
use rustix::event::{PollFd, PollFlags};
use rustix::io::Errno;
use rustix::process::{Pid, Signal, WaitOptions};
use std::collections::VecDeque;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use warden::control::Command;
use warden::runas::{self, Identity, RestartLimit};
use warden::service::Settings;
use warden::signal::SignalPipe;
use warden::status::Exit;

/// Bytes a readiness pipe may carry without a newline before it is closed: a ready line is
/// a newline, perhaps after a few bytes (s6-notifyoncheck writes one byte).
const NOTIFY_LIMIT: usize = 512;

const ANNOUNCE_RETRY_FIRST: Duration = Duration::from_millis(100);
const ANNOUNCE_RETRY_MAX: Duration = Duration::from_secs(5);
const POLL_RETRY_FIRST: Duration = Duration::from_millis(10);
const POLL_RETRY_MAX: Duration = Duration::from_secs(1);

pub struct Supervisor {
    /// The service dir, absolute, for messages and the cgroup's name.
    service: PathBuf,
    files: SuperviseDir,
    signals: SignalPipe,
    tree: Tree,
    machine: Machine,
    /// Read end of the current run's readiness pipe.
    notify: Option<OwnedFd>,
    notification_fd: Option<i32>,
    /// When `ok` could not be opened (see `announce`): the next try and the wait before the
    /// one after it.
    announce_retry: Option<(Instant, Duration)>,
    /// The wait before the next try after a failed poll; zero while poll works.
    poll_backoff: Duration,
    /// Bytes read from the current readiness pipe without a newline.
    notify_garbage: usize,
    events: VecDeque<Event>,
    dirty: bool,
    pid: u32,
    /// The `logger` to run as `logger ./main` while the dir has no `run` (`--default-log`).
    /// An error when warden's logger was not found (the start then fails and is retried).
    default_run: Option<Result<PathBuf, String>>,
    /// The settings read at startup, used by the first start instead of reading them again.
    boot_settings: Option<StartSettings>,
    /// The user, limits, niceness and umask of the current or last run, for its `finish`.
    identity: Identity,
    /// The memory limit of the current run and the OOM killer's count at its start.
    oom: Option<(String, u64)>,
    /// While the service is failed by `restart-limit`: an inotify fd on the service dir, so a
    /// change of the file starts it again (`Some(None)`: it could not be made).
    watch: Option<Option<OwnedFd>>,
}

/// What one reading of the settings gives a start.
struct StartSettings {
    limits: Limits,
    /// The bad setting files, each reported.
    warnings: Vec<Event>,
    /// What is wrong with the dependency and type files (read for the type): the start fails
    /// on it, naming the file.
    deps_problem: Option<warden::deps::Problem>,
}

impl Supervisor {
    /// Enters the service dir and takes it over: lock, FIFOs, signals, cgroup.
    /// `held`: started by svscan for a service whose dependencies are not ready yet (`G` lets
    /// it go).
    pub fn start(
        dir: &Path,
        default_run: Option<Result<PathBuf, String>>,
        held: bool,
    ) -> Result<Supervisor, Fatal> {
        let service = absolute(dir);
        std::env::set_current_dir(dir)
            .map_err(|e| Fatal::io("change to directory", &service, &e))?;
        let signals = SignalPipe::new(&spawn::CAUGHT)
            .map_err(|e| Fatal::io("catch", Path::new("signals"), &e))?;
        let files = SuperviseDir::open(&service)?;
        // Orphans of the service (daemons that double-forked) come to us, so their exit wakes
        // the loop and the tree can be watched until it is empty.
        let _ = rustix::process::set_child_subreaper(Some(rustix::process::getpid()));
        let tree = Tree::new(&service);
        let mut machine = Machine::new(Now::read());
        machine.ext.cgroup = tree.cgroup_name().map(str::to_owned);
        let pid = rustix::process::getpid().as_raw_nonzero().get() as u32;
        machine.ext.supervisor_pid = Some(pid);
        machine.ext.held = held;
        Ok(Supervisor {
            service,
            files,
            signals,
            tree,
            machine,
            notify: None,
            notification_fd: None,
            notify_garbage: 0,
            announce_retry: None,
            poll_backoff: Duration::ZERO,
            events: VecDeque::with_capacity(8),
            dirty: true,
            pid,
            default_run,
            boot_settings: None,
            identity: Identity::default(),
            oom: None,
            watch: None,
        })
    }

    /// Supervises until told to exit (`x`, `e`, SIGTERM, SIGHUP) and the service is down.
    pub fn run(mut self) -> Result<(), Fatal> {
        let settings = self.read_settings();
        let (limits, warnings) = (settings.limits, settings.warnings.clone());
        self.boot_settings = Some(settings);
        let leftovers = !self.tree.is_empty();
        // A oneshot's `down` is its program, not runit's marker.
        let oneshot = limits.oneshot;
        self.events.push_back(Event::Boot {
            normally_down: Path::new(warden::service::DOWN).exists() && !oneshot,
            leftovers,
            limits,
            customisable: self.default_run.is_none(),
        });
        self.events.extend(warnings);
        self.feed(Event::Tick);
        // A start later than this one (down file, leftovers, back-off) reads them afresh.
        self.boot_settings = None;
        self.flush();
        // The service may be running already: from here on nothing makes supervise leave it
        // unsupervised. A failure to announce or to wait is reported and retried.
        self.announce();
        loop {
            self.flush();
            if self
                .announce_retry
                .is_some_and(|(at, _)| at <= Instant::now())
            {
                self.announce();
            }
            if self.machine.done {
                self.tree.remove();
                return Ok(());
            }
            give_back_free_memory();
            let (signalled, control, notify, watched) = self.wait();
            if watched {
                self.read_watch();
            }
            if signalled {
                // TERM and HUP before a death: svscan sends a logger's supervisor HUP before
                // it lets the logger read EOF, so a logger that then exits is not started
                // again. (`take` looks at CHILD first, so a HUP sent before the death is
                // always in the same batch or an earlier one.)
                let signals = self.signals.take();
                for signal in &signals {
                    match *signal {
                        Signal::TERM => self.feed(Event::Command(Command::Exit)),
                        Signal::HUP => self.feed(Event::Command(Command::ExitAfter)),
                        _ => {}
                    }
                }
                if signals.contains(&Signal::CHILD) {
                    self.reap();
                }
            }
            if control && self.machine.accepts_commands() {
                let mut commands = [Command::Up; CHUNK];
                while let Some(count) = self.files.read_commands(&mut commands) {
                    for &command in commands.iter().take(count) {
                        self.feed(Event::Command(command));
                    }
                    if !self.machine.accepts_commands() {
                        break;
                    }
                }
            }
            if notify {
                self.read_notification();
            }
            if self.machine.deadline().is_some_and(|d| d <= Instant::now()) {
                self.feed(Event::Tick);
            }
            if self.machine.awaiting_tree() && self.tree.is_empty() {
                self.feed(Event::TreeEmpty);
            }
        }
    }

    /// Opens `ok`, so that clients see a running supervisor; on failure (a removed `ok`, no
    /// fd left) says so and tries again later, with a back-off doubling from 100 ms to 5 s.
    fn announce(&mut self) {
        match self.files.announce() {
            Ok(()) => self.announce_retry = None,
            Err(fatal) => {
                let wait = match self.announce_retry {
                    Some((_, wait)) => wait,
                    None => ANNOUNCE_RETRY_FIRST,
                };
                say!("supervise: warning: {fatal}; trying again in {wait:?}");
                let next = wait.saturating_mul(2).min(ANNOUNCE_RETRY_MAX);
                self.announce_retry = Instant::now().checked_add(wait).map(|at| (at, next));
            }
        }
    }

    /// The nearest of the machine's deadline and the next try to announce.
    fn deadline(&self) -> Option<Instant> {
        match (
            self.machine.deadline(),
            self.announce_retry.map(|(at, _)| at),
        ) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Blocks until a signal, a control byte, readiness, the cgroup emptying (while waiting for
    /// that) or the nearest deadline. Returns which of the first three woke it. A failed poll
    /// is reported and, after a back-off (10 ms doubling to 1 s: poll itself cannot be the
    /// way to wait then), reported as a wake-up of everything, so each source is read without
    /// blocking and the loop goes on.
    fn wait(&mut self) -> (bool, bool, bool, bool) {
        let timeout = warden::poll::until(self.deadline(), Instant::now());
        let filler = PollFd::new(&self.signals, PollFlags::empty());
        let mut fds = [
            PollFd::new(&self.signals, PollFlags::IN),
            // While a `control/` hook runs, commands stay in the FIFO until it is over.
            PollFd::from_borrowed_fd(
                self.files.control(),
                if self.machine.accepts_commands() {
                    PollFlags::IN
                } else {
                    PollFlags::empty()
                },
            ),
            filler.clone(),
            filler.clone(),
            filler,
        ];
        let mut used = 2;
        let mut notify_at = None;
        if let (Some(notify), Some(slot)) = (&self.notify, fds.get_mut(used)) {
            *slot = PollFd::new(notify, PollFlags::IN);
            notify_at = Some(used);
            used += 1;
        }
        let mut events_at = None;
        if self.machine.awaiting_tree() {
            if let (Some(events), Some(slot)) = (self.tree.events_fd(), fds.get_mut(used)) {
                *slot = PollFd::from_borrowed_fd(events, PollFlags::PRI);
                events_at = Some(used);
                used += 1;
            }
        }
        let mut watch_at = None;
        if let (Some(Some(watch)), Some(slot)) = (&self.watch, fds.get_mut(used)) {
            *slot = PollFd::new(watch, PollFlags::IN);
            watch_at = Some(used);
            used += 1;
        }
        let fds = fds.get_mut(..used).unwrap_or_default();
        match rustix::event::poll(fds, timeout.as_ref()) {
            Ok(_) | Err(Errno::INTR) => self.poll_backoff = Duration::ZERO,
            Err(e) => {
                let wait = self.poll_backoff.max(POLL_RETRY_FIRST);
                say!(
                    "supervise: warning: unable to poll in {}: {}; trying again in {wait:?}",
                    self.service.display(),
                    crate::cause_errno(e)
                );
                std::thread::sleep(wait);
                self.poll_backoff = wait.saturating_mul(2).min(POLL_RETRY_MAX);
                return (true, true, self.notify.is_some(), self.watch.is_some());
            }
        }
        let woke = |at: Option<usize>| {
            at.and_then(|i| fds.get(i))
                .is_some_and(|fd| !fd.revents().is_empty())
        };
        let signalled = woke(Some(0));
        let control = woke(Some(1));
        let notify = woke(notify_at);
        let watched = woke(watch_at);
        if woke(events_at) {
            self.tree.events_seen();
        }
        (signalled, control, notify, watched)
    }

    /// Watches the service dir while the service is failed by `restart-limit` (and says so
    /// once when it becomes so); drops the watch otherwise, so an idle supervisor has no
    /// inotify fd.
    fn sync_watch(&mut self) {
        use rustix::fs::inotify;
        let failed = self.machine.ext.failed;
        if failed == self.watch.is_some() {
            return;
        }
        if !failed {
            self.watch = None;
            return;
        }
        if let Some(error) = &self.machine.ext.last_error {
            say!("supervise: warning: {}: {error}", self.service.display());
        }
        let flags = inotify::WatchFlags::CLOSE_WRITE
            | inotify::WatchFlags::MOVED_TO
            | inotify::WatchFlags::MOVED_FROM
            | inotify::WatchFlags::CREATE
            | inotify::WatchFlags::DELETE
            | inotify::WatchFlags::ONLYDIR;
        let watch = inotify::init(inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK)
            .and_then(|fd| inotify::add_watch(&fd, ".", flags).map(|_| fd));
        match watch {
            Ok(fd) => self.watch = Some(Some(fd)),
            Err(e) => {
                say!(
                    "supervise: warning: unable to watch {} for changes of {}: {}; svctl up \
                     restarts it",
                    self.service.display(),
                    runas::RESTART_LIMIT,
                    crate::cause_errno(e)
                );
                // Not retried, so the warning comes once.
                self.watch = Some(None);
            }
        }
    }

    /// Reads the watch's events: a change of `restart-limit` restarts a failed service.
    fn read_watch(&mut self) {
        use rustix::fs::inotify;
        let Some(Some(fd)) = &self.watch else { return };
        let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 1024];
        let mut reader = inotify::Reader::new(fd, &mut buf);
        let mut changed = false;
        loop {
            match reader.next() {
                Ok(event) => {
                    if event
                        .file_name()
                        .is_some_and(|n| n.to_bytes() == runas::RESTART_LIMIT.as_bytes())
                    {
                        changed = true;
                    }
                }
                Err(Errno::INTR) => {}
                Err(_) => break,
            }
        }
        if changed {
            self.feed(Event::RestartLimitChanged);
        }
    }

    /// Reaps every child that exited: the run, the finish, or an orphan of the service.
    fn reap(&mut self) {
        loop {
            let (pid, status) = match rustix::process::wait(WaitOptions::NOHANG) {
                Ok(Some(child)) => child,
                Ok(None) | Err(Errno::CHILD) => return,
                Err(Errno::INTR) => continue,
                Err(e) => {
                    say!(
                        "supervise: warning: unable to wait for children: {}",
                        crate::cause_errno(e)
                    );
                    return;
                }
            };
            let pid = pid.as_raw_nonzero().get() as u32;
            let exit = match status.terminating_signal() {
                Some(signal) => Exit::Signal(signal),
                None => Exit::Code(status.exit_status().unwrap_or(0)),
            };
            let is_run = self.machine.run_pid() == Some(pid);
            let is_finish = self.machine.finish_pid() == Some(pid);
            // What a hook leaves behind goes with it, as for finish; what a check leaves
            // behind is killed.
            let helper: Option<(Target, &[Signal])> = if self.machine.hook_pid() == Some(pid) {
                Some((Target::Hook(pid), &[Signal::TERM, Signal::CONT]))
            } else if self.machine.check.and_then(|c| c.pid) == Some(pid) {
                Some((Target::Check(pid), &[Signal::KILL]))
            } else {
                None
            };
            if let Some((target, signals)) = helper {
                for &signal in signals {
                    self.signal(target, signal);
                }
                self.feed(Event::Exited {
                    pid,
                    exit,
                    leftovers: false,
                    has_finish: false,
                });
                continue;
            }
            if !is_run && !is_finish {
                continue;
            }
            let mut oom = None;
            if is_run {
                self.notify = None;
                if let Some((limit, before)) = self.oom.take() {
                    if self.tree.oom_kills().is_some_and(|now| now > before) {
                        say!(
                            "supervise: warning: ./run in {} was {}",
                            self.service.display(),
                            warden::status::oom_text(&limit)
                        );
                        oom = Some(limit);
                    }
                }
            } else {
                // What the finish script left behind goes with it.
                self.signal(Target::Finish(pid), Signal::TERM);
                self.signal(Target::Finish(pid), Signal::CONT);
            }
            let leftovers = !self.tree.is_empty();
            let has_finish = is_run
                && !self.machine.limits.oneshot
                && Path::new(warden::service::FINISH).exists();
            self.feed(Event::Exited {
                pid,
                exit,
                leftovers,
                has_finish,
            });
            if let Some(limit) = oom {
                self.feed(Event::OomKilled { limit });
            }
        }
    }

    /// A newline on the readiness pipe means ready; EOF means the service gave up the fd.
    /// One read per wake-up, so a service that writes without end cannot keep the loop busy,
    /// and more than [`NOTIFY_LIMIT`] bytes without a newline close the pipe with a message
    /// (s6 reads a line of at most a few bytes here too): the service never becomes ready
    /// through it, and its writes get EPIPE.
    fn read_notification(&mut self) {
        let Some(fd) = &self.notify else { return };
        let mut buf = [0u8; NOTIFY_LIMIT];
        match rustix::io::read(fd, &mut buf) {
            Ok(0) => self.notify = None,
            Ok(n) => {
                if buf.iter().take(n).any(|&b| b == b'\n') {
                    self.notify = None;
                    self.notify_garbage = 0;
                    self.feed(Event::Ready);
                    return;
                }
                self.notify_garbage = self.notify_garbage.saturating_add(n);
                if self.notify_garbage >= NOTIFY_LIMIT {
                    self.notify = None;
                    self.notify_garbage = 0;
                    let error = format!(
                        "closing the notification-fd pipe of {}: {NOTIFY_LIMIT} bytes or more without a newline",
                        self.service.display()
                    );
                    say!("supervise: warning: {error}");
                    self.feed(Event::Warning { error });
                }
            }
            // The next wake-up tries again (EINTR), or there was nothing after all (EAGAIN).
            Err(Errno::INTR) | Err(Errno::AGAIN) => {}
            Err(e) => {
                self.notify = None;
                say!(
                    "supervise: warning: unable to read the notification-fd pipe of {}: {}",
                    self.service.display(),
                    crate::cause_errno(e)
                );
            }
        }
    }

    /// Steps the machine with `event` and every event its actions bring about.
    fn feed(&mut self, event: Event) {
        // After `x` or `e` has ended it, later bytes (`xu`) must not start anything.
        if self.machine.done {
            return;
        }
        self.events.push_back(event);
        while let Some(event) = self.events.pop_front() {
            if self.machine.done {
                self.events.clear();
                return;
            }
            let actions = self.machine.step(event, Now::read());
            for &action in actions.as_slice() {
                self.execute(action);
            }
        }
    }

    fn execute(&mut self, action: Action) {
        match action {
            Action::SpawnRun => self.spawn_run(),
            Action::SpawnFinish(exit) => match spawn::finish(&self.service, exit, &self.identity) {
                Ok(pid) => self.events.push_back(Event::FinishStarted { pid }),
                Err(error) => {
                    say!("supervise: warning: {error}");
                    self.events.push_back(Event::FinishFailed { error });
                }
            },
            Action::SpawnCheck => match spawn::check(&self.service, &self.identity) {
                Ok(pid) => self.events.push_back(Event::CheckStarted { pid }),
                Err(error) => {
                    // Said once per run: a check that cannot start is retried quietly.
                    if self.machine.ext.last_error.as_deref() != Some(error.as_str()) {
                        say!("supervise: warning: {error}");
                        self.events.push_back(Event::Warning {
                            error: error.clone(),
                        });
                    }
                    self.events.push_back(Event::CheckFailed);
                }
            },
            Action::SpawnDown => match spawn::oneshot_down(&self.service, &self.identity) {
                Ok(pid) => self.events.push_back(Event::FinishStarted { pid }),
                Err(error) => {
                    say!("supervise: warning: {error}");
                    self.events.push_back(Event::FinishFailed { error });
                }
            },
            Action::Signal(target, signal) => self.signal(target, signal),
            Action::Hook { letter, pid } => {
                match spawn::hook(&self.service, letter, pid, || self.read_identity(None)) {
                    Ok(Some(pid)) => self.events.push_back(Event::HookStarted { pid }),
                    Ok(None) => self.events.push_back(Event::HookAbsent),
                    Err(error) => {
                        say!("supervise: warning: {error}");
                        self.events.push_back(Event::HookAbsent);
                        self.events.push_back(Event::Warning { error });
                    }
                }
            }
            Action::Resume => self.events.push_back(Event::Resume),
            Action::Publish => self.dirty = true,
            // The loop sees `machine.done` and returns after publishing.
            Action::Exit => self.dirty = true,
        }
    }

    fn spawn_run(&mut self) {
        // Each start reads the settings afresh, except the first, which has them from startup.
        let StartSettings {
            mut limits,
            mut warnings,
            deps_problem,
        } = match self.boot_settings.take() {
            Some(settings) => settings,
            None => self.read_settings(),
        };
        let prepared = match self.prepare(deps_problem) {
            Ok(prepared) => prepared,
            Err(error) => {
                say!("supervise: warning: {error}");
                self.events.push_back(Event::StartFailed { error });
                return;
            }
        };
        limits.restart_limit = prepared.restart_limit;
        warnings.extend(prepared.warnings.into_iter().map(|error| {
            say!("supervise: warning: {error}");
            Event::Warning { error }
        }));
        let join = self.tree.join_fds();
        // Looked for again after a failure: it may have been installed since.
        if let Some(Err(_)) = self.default_run {
            self.default_run = Some(spawn::find_logger());
        }
        match spawn::run(
            &self.service,
            limits.oneshot,
            self.default_run
                .as_ref()
                .map(|found| found.as_deref().map_err(String::as_str)),
            self.tree.join_fd(),
            self.notification_fd,
            &prepared.identity,
            &join,
        ) {
            Ok(started) => {
                self.oom = prepared.applied.memory_limit.zip(prepared.oom_before);
                let mut settings = prepared.applied.settings;
                settings.extend(prepared.identity.settings());
                if let Some(limit) = prepared.restart_limit {
                    settings.push((
                        runas::RESTART_LIMIT.to_owned(),
                        format!("{} {:?}", limit.count, limit.within),
                    ));
                }
                self.machine.ext.settings = settings;
                self.identity = prepared.identity;
                self.tree.started(started.pid);
                self.notify = started.notify;
                self.notify_garbage = 0;
                self.events.push_back(Event::RunStarted {
                    pid: started.pid,
                    limits,
                });
                self.events.extend(warnings);
                for error in started.warnings {
                    say!("supervise: warning: {error}");
                    self.events.push_back(Event::Warning { error });
                }
            }
            Err(error) => {
                say!("supervise: warning: {error}");
                self.events.push_back(Event::StartFailed { error });
            }
        }
    }

    /// Reads what the run is started as and with (issue 17): the cgroup settings, written to
    /// the cgroup here, and the user, limits, niceness and umask the child takes. A bad one
    /// is the error: the service is not started. A bad `restart-limit` is a warning only.
    fn prepare(&mut self, deps_problem: Option<warden::deps::Problem>) -> Result<Prepared, String> {
        let here = rustix::fs::CWD;
        let unusable = |file: &str, cause: &dyn std::fmt::Display| {
            format!(
                "unable to use {}: {cause}",
                self.service.join(file).display()
            )
        };
        // A bad dependency or type file: not started until it is fixed (svscan holds such a
        // service anyway; a supervise run by hand says why here).
        if let Some(p) = deps_problem {
            return Err(unusable(&p.file, &p.cause));
        }
        // One listing of the dir instead of a dozen failed opens on every start.
        let present = runas::present(here);
        let has = |file: &str| present.as_ref().map_or(true, |p| p.contains(&file));
        let mut wanted = Vec::new();
        for file in runas::CGROUP_FILES {
            if !has(file) {
                continue;
            }
            match runas::read_file(here, file, runas::SETTING_CAP) {
                Ok(None) => {}
                Ok(Some(text)) => {
                    let value = runas::parse_cgroup_value(&text).map_err(|e| unusable(file, &e))?;
                    wanted.push((file, value));
                }
                Err(e) => return Err(unusable(file, &e)),
            }
        }
        let identity = self.read_identity(present.as_deref())?;
        let mut warnings = Vec::new();
        let restart_limit = if has(runas::RESTART_LIMIT) {
            runas::read_file(here, runas::RESTART_LIMIT, runas::SETTING_CAP)
        } else {
            Ok(None)
        };
        let restart_limit = match restart_limit {
            Ok(None) => None,
            Ok(Some(text)) => match runas::parse_restart_limit(&text) {
                Ok(limit) => Some(limit),
                Err(e) => {
                    warnings.push(unusable(runas::RESTART_LIMIT, &e));
                    None
                }
            },
            Err(e) => {
                warnings.push(unusable(runas::RESTART_LIMIT, &e));
                None
            }
        };
        let applied = self.tree.apply(&wanted, &self.service)?;
        warnings.extend(applied.warnings.iter().cloned());
        let oom_before = applied
            .memory_limit
            .as_ref()
            .map(|_| self.tree.oom_kills().unwrap_or(0));
        Ok(Prepared {
            identity,
            restart_limit,
            applied,
            oom_before,
            warnings,
        })
    }

    /// `user`, `limits`, `nice` and `umask`, the user resolved; the error names the file.
    fn read_identity(&self, present: Option<&[&str]>) -> Result<Identity, String> {
        Identity::read_present(rustix::fs::CWD, present).map_err(|e| {
            format!(
                "unable to use {}: {}",
                self.service.join(&e.file).display(),
                e.cause
            )
        })
    }

    /// Reads the setting files; each bad one is reported, kept at its default and recorded.
    fn read_settings(&mut self) -> StartSettings {
        // Read where the dir is now: svscan keeps a supervisor across a rename of its dir.
        let here = Path::new(".");
        let (settings, errors) = Settings::read(here);
        let mut warnings = Vec::new();
        for error in errors {
            let file = error.file.strip_prefix(here).unwrap_or(&error.file);
            let shown = self.service.join(file);
            let message = format!("unable to use {}: {}", shown.display(), error.cause);
            say!("supervise: warning: {message}");
            warnings.push(Event::Warning { error: message });
        }
        self.notification_fd = settings.notification_fd;
        let readiness = if settings.notification_fd.is_some() {
            Readiness::Notification
        } else if is_executable(warden::service::CHECK) {
            Readiness::Check
        } else {
            Readiness::Exec
        };
        // Read for the type: the graph itself is svscan's. A bad file fails the start
        // (`prepare`), naming it.
        let declared = warden::deps::read(here);
        let kind = declared.as_ref().map(|d| d.kind).unwrap_or_default();
        let oneshot = kind == warden::deps::Kind::Oneshot;
        let limits = Limits {
            down_signal: settings.down_signal,
            timeout_kill: settings.timeout_kill,
            timeout_finish: settings.timeout_finish,
            restart_limit: None,
            readiness,
            oneshot,
            has_down: oneshot && is_executable(warden::deps::ONESHOT_DOWN),
        };
        StartSettings {
            limits,
            warnings,
            deps_problem: declared.err(),
        }
    }

    fn signal(&mut self, target: Target, signal: Signal) {
        let to_pid = |pid: u32| i32::try_from(pid).ok().and_then(Pid::from_raw);
        let result = match target {
            Target::Main(pid) => match to_pid(pid) {
                Some(pid) => rustix::process::kill_process(pid, signal),
                None => Ok(()),
            },
            Target::Finish(pid) | Target::Hook(pid) | Target::Check(pid) => match to_pid(pid) {
                Some(pid) => rustix::process::kill_process_group(pid, signal),
                None => Ok(()),
            },
            Target::Tree => {
                self.tree.signal(signal);
                Ok(())
            }
        };
        match result {
            Ok(()) | Err(Errno::SRCH) => {}
            Err(e) => say!(
                "supervise: warning: unable to send {} to {}: {}",
                warden::signal::name_or_number(signal.as_raw()),
                self.service.display(),
                crate::cause_errno(e)
            ),
        }
    }

    fn flush(&mut self) {
        if self.dirty {
            self.dirty = false;
            // Before the status says failed, so no change of the file after it goes unseen.
            self.sync_watch();
            self.machine.ext.supervisor_pid = Some(self.pid);
            self.files
                .publish(&self.machine.status(), &self.machine.ext);
        }
    }
}

/// What [`Supervisor::prepare`] read and did for a start.
struct Prepared {
    identity: Identity,
    restart_limit: Option<RestartLimit>,
    applied: crate::tree::Applied,
    oom_before: Option<u64>,
    warnings: Vec<String>,
}

/// Hands freed heap pages back to the kernel before sleeping: a hundred idle supervisors
/// should not each keep the pages that reading mountinfo or spawning once dirtied.
#[cfg(target_env = "gnu")]
fn give_back_free_memory() {
    // SAFETY: malloc_trim only walks glibc's own free lists; no Rust object is touched.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// musl's allocator unmaps freed pages itself and has no `malloc_trim`.
#[cfg(not(target_env = "gnu"))]
fn give_back_free_memory() {}

fn absolute(dir: &Path) -> PathBuf {
    if dir.is_absolute() {
        return dir.to_owned();
    }
    match std::env::current_dir() {
        Ok(cwd) => cwd.join(dir),
        Err(_) => dir.to_owned(),
    }
}

/// Whether `name` in the service dir is an executable file (a `check`, a oneshot's `down`).
fn is_executable(name: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(name).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
