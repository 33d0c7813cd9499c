//! svscan's one event loop: a single poll over the signal pipe, the control FIFO, inotify on
//! the scan directory and the pidfds of adopted supervisors; the timeout is the nearest
//! deadline (a restart back-off, a retry, the end of a shutdown grace) or none at all.

use crate::controldir::ControlDir;
use crate::gates::Gates;
use crate::life::{self, Role};
use crate::scandir::shown;
use crate::scandir::{self, Id, Probe, Watch};
use crate::system;
use crate::tree::{Hup, Tree};
use rustix::event::{PollFd, PollFlags};
use rustix::io::Errno;
use rustix::process::{Signal, WaitOptions};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::ffi::OsString;
use std::time::{Duration, Instant};
use warden::service::deadline;
use warden::signal::SignalPipe;
use warden::svdir::scan_control;

/// What a shutdown leads to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// Tear down and exit (`t`; TERM or INT outside PID 1).
    Teardown,
    Poweroff,
    Reboot,
    Halt,
    /// A service with a `container-exit` file ended with this status (its exit code, or
    /// 128 + n for signal n): torn down, svscan exits with it.
    ContainerExit(u8),
}

impl Ending {
    /// svscan's exit status outside PID 1.
    pub fn exit_code(self) -> u8 {
        match self {
            Ending::Teardown => 0,
            Ending::Poweroff => 10,
            Ending::Reboot => 11,
            Ending::Halt => 12,
            Ending::ContainerExit(status) => status,
        }
    }

    /// The argument of `init --stage3` as PID 1; a plain teardown halts.
    pub fn stage3_action(self) -> &'static str {
        match self {
            Ending::Poweroff => "poweroff",
            Ending::Reboot => "reboot",
            Ending::Teardown | Ending::Halt | Ending::ContainerExit(_) => "halt",
        }
    }
}

/// A batch of inotify names bigger than this is cheaper to handle as one full scan.
const MAX_NAMES_PER_BATCH: usize = 64;
/// After the KILLs, how long to wait for the supervisors to be reaped before giving up.
const AFTER_KILL: Duration = Duration::from_secs(5);
/// Without inotify, how often a logger waiting for its HUP is looked at.
const HUP_RECHECK: Duration = Duration::from_millis(100);
/// Held supervisors found by one scan start this far apart, deepest last.
const HELD_STAGGER: Duration = Duration::from_millis(2);
/// The part of the shutdown grace the dependency order may take: past it, the services still
/// waiting for their dependents to stop are told to stop too, with the rest of the grace (a
/// third) to do it before the KILL.
fn order_share(grace: Duration) -> Duration {
    grace.saturating_sub(grace / 3)
}

/// How long a service made in place is watched for a `log/` that its maker adds after it.
const SETTLE: Duration = Duration::from_secs(2);

struct Shutdown {
    ending: Ending,
    /// With dependencies: when the order gives way, and every service still waiting for its
    /// dependents to stop is told to stop too (see [`order_share`]); `None` once it has.
    order_deadline: Option<Instant>,
    services_deadline: Instant,
    services_killed: bool,
    loggers_deadline: Option<Instant>,
    loggers_killed: bool,
    give_up: Option<Instant>,
}

pub struct Scanner {
    grace: Duration,
    pid1: bool,
    signals: SignalPipe,
    control: Option<ControlDir>,
    watch: Option<Watch>,
    watch_failures: u32,
    watch_retry: Option<Instant>,
    listing: scandir::Listing,
    scan_failures: u32,
    rescan_at: Option<Instant>,
    /// Names in the scan directory that cannot be used, with the reason already reported.
    broken: HashMap<OsString, String>,
    tree: Tree,
    shutdown: Option<Shutdown>,
    /// inotify watches on `log/supervise/` of loggers waiting for their HUP, by entry.
    hup_watches: HashMap<Id, i32>,
    /// Loggers' supervisors waiting for their HUP, by entry: the directory whose `supervise/`
    /// is watched, and its name for messages.
    hup_waiting: HashMap<Id, (std::path::PathBuf, OsString)>,
    /// Without inotify, pending HUPs are re-checked at this deadline instead.
    hup_recheck: Option<Instant>,
    /// Services just made in place, watched until a deadline for their `log/` appearing.
    young: Young,
    /// Services just made in place that could not be watched (no inotify, or no watches
    /// left): looked at for their `log/` every [`HUP_RECHECK`] until their deadline.
    young_unwatched: HashMap<Id, Instant>,
    young_recheck: Option<Instant>,
    /// inotify watches for services with a `container-exit` file, by entry: on their
    /// `supervise/` (true), or on the service dir until supervise has made `supervise/`.
    exit_watches: HashMap<Id, (i32, bool)>,
    /// Services whose `supervise/` changed: is their end the container's?
    exit_checks: HashSet<Id>,
    /// Without inotify, `container-exit` services are looked at again at this deadline.
    exit_recheck: Option<Instant>,
    /// The dependency graph, its watches, and the gates it sends.
    gates: Gates,
}

impl Scanner {
    pub fn new(
        grace: Duration,
        pid1: bool,
        signals: SignalPipe,
        control: Option<ControlDir>,
        tree: Tree,
    ) -> Scanner {
        Scanner {
            grace,
            pid1,
            signals,
            control,
            watch: None,
            watch_failures: 0,
            watch_retry: None,
            listing: scandir::Listing::open(std::path::Path::new(".")),
            scan_failures: 0,
            rescan_at: None,
            broken: HashMap::new(),
            tree,
            shutdown: None,
            hup_watches: HashMap::new(),
            hup_waiting: HashMap::new(),
            hup_recheck: None,
            young: Young::default(),
            young_unwatched: HashMap::new(),
            young_recheck: None,
            exit_watches: HashMap::new(),
            exit_checks: HashSet::new(),
            exit_recheck: None,
            gates: Gates::default(),
        }
    }

    pub fn signals() -> &'static [Signal] {
        system::CAUGHT
    }

    /// Watches the scan directory, then scans it: watching first, so nothing that appears
    /// in between is missed.
    pub fn start(&mut self) {
        let now = Instant::now();
        self.open_watch(now);
        self.rescan(now);
    }

    /// After a failed exec of the next stage (PID 1): back to supervising everything.
    pub fn resume(&mut self) {
        self.shutdown = None;
        self.tree.resume(Instant::now());
        self.rescan(Instant::now());
    }

    pub fn run(&mut self) -> Ending {
        loop {
            let now = Instant::now();
            self.tree.start_due(now);
            self.sync_hup_watches(now);
            self.sync_exit_watches(now);
            if let Some(ending) = self.shutdown_step(now) {
                return ending;
            }
            self.tree.settle_launches();
            let ready = self.wait(self.next_deadline());
            let now = Instant::now();
            if ready.signals {
                self.on_signals(now);
            }
            for pid in ready.pidfds {
                self.tree.exited(pid, None, now);
            }
            if ready.control {
                let bytes = self.control.as_ref().map(ControlDir::read_commands);
                for byte in bytes.unwrap_or_default() {
                    self.on_control(byte, now);
                }
            }
            if ready.watch {
                self.on_watch(now);
            }
            self.expire_young(now);
            self.recheck_young_unwatched(now);
            let dropped = self.gates.retry(now, self.watch.as_ref(), &mut self.tree);
            self.forget_watches(dropped);
            if self.rescan_at.is_some_and(|at| at <= now) {
                self.rescan(now);
            }
            if self.watch_retry.is_some_and(|at| at <= now) {
                self.open_watch(now);
                if self.watch.is_some() {
                    self.rescan(now);
                }
            }
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let mut deadlines = vec![
            self.tree.next_deadline(),
            self.rescan_at,
            self.watch_retry,
            self.hup_recheck,
            self.exit_recheck,
            self.gates.retry_at(),
            self.young.next_expiry(),
            self.young_recheck,
        ];
        if let Some(s) = &self.shutdown {
            if !s.services_killed {
                deadlines.push(Some(s.services_deadline));
            }
            deadlines.push(s.order_deadline);
            if !s.loggers_killed {
                deadlines.push(s.loggers_deadline);
            }
            deadlines.push(s.give_up);
        }
        deadlines.into_iter().flatten().min()
    }

    fn wait(&self, deadline: Option<Instant>) -> Ready {
        let pidfds = self.tree.pidfds();
        let mut fds = Vec::with_capacity(3 + pidfds.len());
        fds.push(PollFd::new(&self.signals, PollFlags::IN));
        let control_at = self.control.as_ref().map(|c| {
            fds.push(PollFd::new(c, PollFlags::IN));
            fds.len() - 1
        });
        let watch_at = self.watch.as_ref().map(|w| {
            fds.push(PollFd::new(w, PollFlags::IN));
            fds.len() - 1
        });
        let first_pidfd = fds.len();
        for (_, fd) in &pidfds {
            fds.push(PollFd::from_borrowed_fd(*fd, PollFlags::IN));
        }
        let timeout = warden::poll::until(deadline, Instant::now());
        let mut ready = Ready::default();
        match rustix::event::poll(&mut fds, timeout.as_ref()) {
            Ok(_) => {}
            Err(Errno::INTR) => return ready,
            Err(e) => {
                warden::say!("svscan: warning: unable to poll: {e}");
                return ready;
            }
        }
        let fired = |i: usize| fds.get(i).is_some_and(|f| !f.revents().is_empty());
        ready.signals = fired(0);
        ready.control = control_at.is_some_and(fired);
        ready.watch = watch_at.is_some_and(fired);
        ready.pidfds = pidfds
            .iter()
            .enumerate()
            .filter(|(i, _)| fired(first_pidfd + i))
            .map(|(_, (pid, _))| *pid)
            .collect();
        ready
    }

    fn on_signals(&mut self, now: Instant) {
        for sig in self.signals.take() {
            match sig {
                Signal::CHILD => self.reap(now),
                Signal::HUP | Signal::ALARM => self.rescan(now),
                Signal::TERM | Signal::INT if self.pid1 => self.begin_shutdown(Ending::Reboot, now),
                Signal::TERM | Signal::INT => self.begin_shutdown(Ending::Teardown, now),
                Signal::USR1 | Signal::POWER => self.begin_shutdown(Ending::Poweroff, now),
                Signal::USR2 => self.begin_shutdown(Ending::Halt, now),
                _ => {}
            }
        }
    }

    fn on_control(&mut self, byte: u8, now: Instant) {
        match byte {
            scan_control::RESCAN => self.rescan(now),
            scan_control::TEARDOWN => self.begin_shutdown(Ending::Teardown, now),
            scan_control::POWEROFF => self.begin_shutdown(Ending::Poweroff, now),
            scan_control::REBOOT => self.begin_shutdown(Ending::Reboot, now),
            scan_control::HALT => self.begin_shutdown(Ending::Halt, now),
            // Unknown bytes (a newline from `echo a >control`...) are ignored, as by supervise.
            _ => {}
        }
    }

    /// The one place children are reaped: every one, known or not (orphans, as PID 1).
    fn reap(&mut self, now: Instant) {
        loop {
            match rustix::process::wait(WaitOptions::NOHANG) {
                Ok(Some((pid, status))) => {
                    self.tree
                        .exited(pid.as_raw_nonzero().get(), Some(status), now)
                }
                Ok(None) | Err(Errno::CHILD) => break,
                Err(Errno::INTR) => continue,
                Err(e) => {
                    warden::say!("svscan: warning: unable to reap children: {e}");
                    break;
                }
            }
        }
    }

    fn begin_shutdown(&mut self, ending: Ending, now: Instant) {
        if let Some(s) = self.shutdown.as_mut() {
            // A later request picks what happens after the teardown already under way; but
            // once the container's main service has ended, its status is the one to report
            // (`docker stop` during that teardown must not turn a failure into 0).
            if !matches!(s.ending, Ending::ContainerExit(_)) {
                s.ending = ending;
            }
            return;
        }
        let ordered = self.gates.has_edges();
        self.shutdown = Some(Shutdown {
            ending,
            order_deadline: ordered.then(|| deadline(now, order_share(self.grace))),
            services_deadline: deadline(now, self.grace),
            services_killed: false,
            loggers_deadline: None,
            loggers_killed: false,
            give_up: None,
        });
        self.rescan_at = None;
        if ordered {
            // Dependents first: each service is told to stop once no service that depends
            // on it has a supervisor left (see `stop_in_order`).
            self.tree.begin_shutdown();
            self.stop_in_order();
        } else {
            self.tree.unwant_all();
        }
    }

    /// During a shutdown with dependencies: tells to stop each service whose dependents are
    /// all gone. Each step is bounded by the service's own `timeout-kill` (its supervisor
    /// sees to that), the whole by the shutdown grace.
    fn stop_in_order(&mut self) {
        for id in self.tree.wanted() {
            if !self.gates.stop_waits(&id, &self.tree) {
                self.tree.unwant(&id);
            }
        }
    }

    /// A dependent has not stopped in its share of the grace: the services still waiting for
    /// it are told to stop now, so each gets its down-signal and the rest of the grace to stop
    /// cleanly instead of a KILL at the end of it (a database behind a client that hangs).
    fn give_up_the_order(&mut self) {
        let Some(s) = self.shutdown.as_mut() else {
            return;
        };
        s.order_deadline = None;
        let waiting: Vec<Id> = self.tree.wanted();
        if waiting.is_empty() {
            return;
        }
        let names: Vec<String> = waiting
            .iter()
            .filter_map(|id| self.tree.name(id).map(shown))
            .collect();
        warden::say!(
            "svscan: warning: their dependents did not stop in time: stopping {} now",
            names.join(", ")
        );
        for id in waiting {
            self.tree.unwant(&id);
        }
    }

    /// Moves a shutdown along its deadlines; the ending once everything has exited.
    fn shutdown_step(&mut self, now: Instant) -> Option<Ending> {
        let order_over = self
            .shutdown
            .as_ref()
            .and_then(|s| s.order_deadline)
            .is_some_and(|at| now >= at);
        if order_over {
            self.give_up_the_order();
        } else if self.shutdown.is_some() && self.gates.has_edges() {
            self.stop_in_order();
        }
        let s = self.shutdown.as_mut()?;
        if self.tree.is_empty() {
            return Some(s.ending);
        }
        if !s.services_killed && now >= s.services_deadline && !self.tree.services_gone() {
            s.services_killed = true;
            // Those still waiting for their dependents to stop are out of time too.
            self.tree.unwant_all();
            s.give_up = Some(deadline(now, self.grace.saturating_add(AFTER_KILL)));
            self.tree.kill_stragglers(Role::Service);
        }
        if s.loggers_deadline.is_none() && self.tree.services_gone() {
            s.loggers_deadline = Some(deadline(now, self.grace));
            s.give_up = None;
        }
        if !s.loggers_killed && s.loggers_deadline.is_some_and(|d| now >= d) {
            s.loggers_killed = true;
            s.give_up = Some(deadline(now, AFTER_KILL));
            self.tree.kill_stragglers(Role::Log);
        }
        if s.give_up.is_some_and(|d| now >= d) {
            warden::say!(
                "svscan: warning: {} supervisors did not exit even after KILL: going on without them",
                self.tree.len()
            );
            return Some(s.ending);
        }
        None
    }

    /// Keeps one inotify watch per logger waiting for its HUP, as the tree says which wait,
    /// and sends the HUPs that are due: at once for a logger that just began to wait (it may
    /// run already), for all of them when a recheck is due; otherwise when a watch fires.
    fn sync_hup_watches(&mut self, now: Instant) {
        let mut fresh = Vec::new();
        for (id, change) in self.tree.take_status_watches() {
            match change {
                Some(waiting) => {
                    self.hup_waiting.insert(id, waiting);
                    fresh.push(id);
                }
                None => self.stop_hup_watch(&id),
            }
        }
        let recheck_due = self.hup_recheck.is_some_and(|at| at <= now);
        let ids: Vec<Id> = if recheck_due {
            self.hup_recheck = None;
            self.hup_waiting.keys().copied().collect()
        } else {
            fresh
        };
        for id in ids {
            let Some((dir, name)) = self.hup_waiting.get(&id).cloned() else {
                continue;
            };
            if !self.hup_watches.contains_key(&id) {
                let added = self
                    .watch
                    .as_ref()
                    .map(|w| w.add_status_watch(&dir.join(warden::svdir::SUPERVISE)));
                match added {
                    Some(Ok(wd)) => {
                        self.hup_watches.insert(id, wd);
                    }
                    Some(Err(e)) => {
                        // No `supervise/` under its cwd yet: a supervisor just started, that
                        // has not made its way into its directory. Looked at again soon, like
                        // one that could not be watched, but nothing is short.
                        if e != Errno::NOENT {
                            self.gates.report_watch_shortage(&name, e);
                        }
                        self.hup_recheck = Some(deadline(now, HUP_RECHECK));
                    }
                    None => self.hup_recheck = Some(deadline(now, HUP_RECHECK)),
                }
            }
            // The logger may have started before the watch was in place.
            self.try_hup(&id, now);
        }
    }

    /// Sends the pending HUP of `id` if its logger now runs.
    fn try_hup(&mut self, id: &Id, now: Instant) {
        match self.tree.try_hup(id) {
            Hup::Recheck => self.hup_recheck = Some(deadline(now, HUP_RECHECK)),
            Hup::Pending => {}
            // Sent, or no longer needed (the tree says so too, in its next changes).
            Hup::Done => self.stop_hup_watch(id),
        }
    }

    fn stop_hup_watch(&mut self, id: &Id) {
        self.hup_waiting.remove(id);
        if let Some(wd) = self.hup_watches.remove(id) {
            self.forget_watch(wd);
        }
    }

    /// Keeps an inotify watch on `supervise/` of each service with a `container-exit` file,
    /// and ends svscan when one of them has ended.
    fn sync_exit_watches(&mut self, now: Instant) {
        if self.shutdown.is_some() {
            let wds: Vec<i32> = self.exit_watches.drain().map(|(_, (wd, _))| wd).collect();
            for wd in wds {
                self.forget_watch(wd);
            }
            self.exit_checks.clear();
            self.exit_recheck = None;
            return;
        }
        let wanted = self.tree.container_exits();
        let stale: Vec<(Id, i32)> = self
            .exit_watches
            .iter()
            .filter(|(id, _)| !wanted.iter().any(|(w, _)| w == *id))
            .map(|(id, (wd, _))| (*id, *wd))
            .collect();
        for (id, wd) in stale {
            self.exit_watches.remove(&id);
            self.forget_watch(wd);
        }
        let recheck_due = self.exit_recheck.is_some_and(|at| at <= now);
        self.exit_recheck = None;
        for (id, dir) in wanted {
            let watched = self.exit_watches.get(&id).copied();
            if !matches!(watched, Some((_, true))) {
                let supervise = dir.join(warden::svdir::SUPERVISE);
                let added = self.watch.as_ref().map(|w| {
                    w.add_status_watch(&supervise)
                        .map(|wd| (wd, true))
                        // Not made yet by a supervise just started: its making is seen on
                        // the service dir.
                        .or_else(|_| w.add_log_watch(&dir).map(|wd| (wd, false)))
                });
                match added {
                    Some(Ok(new)) => {
                        if let Some((old, _)) = watched.filter(|(old, _)| *old != new.0) {
                            self.exit_watches.remove(&id);
                            self.forget_watch(old);
                        }
                        if watched != Some(new) {
                            self.exit_checks.insert(id);
                        }
                        self.exit_watches.insert(id, new);
                    }
                    Some(Err(e)) => {
                        self.gates.report_watch_shortage(dir.as_os_str(), e);
                        self.exit_recheck = Some(deadline(now, HUP_RECHECK));
                    }
                    None => self.exit_recheck = Some(deadline(now, HUP_RECHECK)),
                }
            }
            if recheck_due || self.exit_recheck.is_some() {
                self.exit_checks.insert(id);
            }
        }
        let checks: Vec<Id> = self.exit_checks.drain().collect();
        for id in checks {
            if let Some(status) = self.tree.container_exit(&id) {
                let name = self.tree.name(&id).map(shown).unwrap_or_default();
                warden::say!(
                    "svscan: {name} has container-exit and ended (status {status}): tearing \
                     down, then exiting {status}"
                );
                self.begin_shutdown(Ending::ContainerExit(status), now);
                return;
            }
        }
    }

    /// Watches a service that just appeared for a `log/` made right after it.
    fn watch_young(&mut self, id: Id, name: &OsString, now: Instant) {
        let added = self
            .watch
            .as_ref()
            .map(|watch| watch.add_log_watch(std::path::Path::new(name)));
        match added {
            Some(Ok(wd)) => {
                self.young.insert(id, wd, deadline(now, SETTLE));
                // The log/ may have come before the watch.
                self.check_young(&id);
            }
            Some(Err(e)) => {
                self.gates.report_watch_shortage(name.as_os_str(), e);
                self.look_at_young_unwatched(id, now);
            }
            // Without inotify at all (said when it failed), the same.
            None => self.look_at_young_unwatched(id, now),
        }
    }

    /// A young service with no watch: its `log/` is looked for now and every
    /// [`HUP_RECHECK`] until [`SETTLE`] has passed, so one made right after it is still
    /// connected, a little later.
    fn look_at_young_unwatched(&mut self, id: Id, now: Instant) {
        if self.tree.connect_new_log(&id) {
            return;
        }
        self.young_unwatched.insert(id, deadline(now, SETTLE));
        self.young_recheck
            .get_or_insert_with(|| deadline(now, HUP_RECHECK));
    }

    fn recheck_young_unwatched(&mut self, now: Instant) {
        if self.young_recheck.map_or(true, |at| at > now) {
            return;
        }
        self.young_recheck = None;
        let tree = &mut self.tree;
        self.young_unwatched
            .retain(|id, until| !tree.connect_new_log(id) && *until > now);
        if !self.young_unwatched.is_empty() {
            self.young_recheck = Some(deadline(now, HUP_RECHECK));
        }
    }

    fn check_young(&mut self, id: &Id) {
        if self.tree.connect_new_log(id) {
            if let Some(wd) = self.young.remove(id) {
                self.forget_watch(wd);
            }
        }
    }

    fn expire_young(&mut self, now: Instant) {
        for wd in self.young.expire(now) {
            self.forget_watch(wd);
        }
    }

    /// A service appeared: supervised, held if its dependencies are not ready.
    fn add(&mut self, id: Id, name: &OsString, now: Instant) {
        self.gates
            .appear(id, name, self.watch.as_ref(), &mut self.tree);
        self.supervise(id, name, now);
    }

    /// Starts the supervisor of a service the graph knows (see [`Gates::appear`]), at
    /// `start_at` if it is held (its gate brings it forward).
    fn supervise_at(&mut self, id: Id, name: &OsString, start_at: Instant, now: Instant) {
        let held = self.gates.starting(name);
        let at = if held { start_at } else { now };
        let adopted = self.tree.add(id, name, held, at, now);
        self.gates.added(name, adopted, &mut self.tree);
    }

    fn supervise(&mut self, id: Id, name: &OsString, now: Instant) {
        self.supervise_at(id, name, now, now);
    }

    /// A known directory is (still, or again) in the scan directory.
    fn want(&mut self, id: Id, name: &OsString, now: Instant) {
        self.tree.want(&id, now);
        if !self.gates.knows(&id) {
            // Back after it vanished: its supervisor may still run.
            self.gates
                .appear(id, name, self.watch.as_ref(), &mut self.tree);
            let held = self.gates.starting(name);
            self.tree.set_held(&id, held);
            self.gates.added(name, true, &mut self.tree);
        }
    }

    fn forget_watches(&self, wds: Vec<i32>) {
        for wd in wds {
            self.forget_watch(wd);
        }
    }

    /// Removes a watch unless another user (same inode) still needs it.
    fn forget_watch(&self, wd: i32) {
        let shared = self.young.uses(wd)
            || self.hup_watches.values().any(|w| *w == wd)
            || self.exit_watches.values().any(|(w, _)| *w == wd)
            || self.gates.uses(wd);
        if let (Some(watch), false) = (self.watch.as_ref(), shared) {
            watch.remove(wd);
        }
    }

    fn open_watch(&mut self, now: Instant) {
        self.watch_retry = None;
        match Watch::new() {
            Ok(watch) => {
                self.watch = Some(watch);
                self.watch_failures = 0;
            }
            Err(e) => {
                self.watch_failures = self.watch_failures.saturating_add(1);
                let delay = life::restart_delay(self.watch_failures);
                if self.watch_failures == 1 {
                    warden::say!(
                        "svscan: warning: unable to watch the scan directory with inotify: {e}; \
                         new services are seen on svctl rescan or SIGHUP until a retry works"
                    );
                }
                self.watch_retry = Some(deadline(now, delay));
            }
        }
    }

    fn on_watch(&mut self, now: Instant) {
        let Some(watch) = self.watch.as_mut() else {
            return;
        };
        let mut changes = watch.read();
        if changes.overflow {
            // Any logger waiting for its HUP may have missed its event.
            changes.others.extend(self.gates.all_watches());
            changes.others.extend(self.hup_watches.values().copied());
            changes
                .others
                .extend(self.exit_watches.values().map(|(wd, _)| *wd));
        }
        for wd in &changes.others {
            if self.gates.uses(*wd) {
                let seen = changes.names_seen(*wd);
                let dropped = self
                    .gates
                    .on_watch(*wd, seen, self.watch.as_ref(), &mut self.tree);
                self.forget_watches(dropped);
            }
            let ids: Vec<Id> = self
                .hup_watches
                .iter()
                .filter(|(_, w)| *w == wd)
                .map(|(id, _)| *id)
                .collect();
            for id in ids {
                self.try_hup(&id, now);
            }
            for id in self.young.on(*wd) {
                self.check_young(&id);
            }
            let exits = self.exit_watches.iter().filter(|(_, (w, _))| w == wd);
            let exits: Vec<Id> = exits.map(|(id, _)| *id).collect();
            for id in exits {
                // A service dir watched for `supervise/` to appear: watched there instead.
                if self.exit_watches.get(&id).is_some_and(|(_, on)| !on) {
                    self.exit_watches.remove(&id);
                    self.forget_watch(*wd);
                }
                self.exit_checks.insert(id);
            }
        }
        if changes.watch_lost {
            warden::say!(
                "svscan: warning: the scan directory was removed or unmounted: no longer watching it"
            );
            self.watch = None;
        }
        if self.shutdown.is_some() {
            return;
        }
        if changes.overflow || !self.check_names(&changes.names, now) {
            self.rescan(now);
        }
    }

    /// Handles names inotify reported, one stat each; false when only a full scan can tell
    /// (a known service's name now means something else, or more names than is worth it).
    fn check_names(&mut self, names: &BTreeSet<OsString>, now: Instant) -> bool {
        if names.len() > MAX_NAMES_PER_BATCH {
            return false;
        }
        for name in names {
            match scandir::probe(name) {
                Probe::Service(id) => {
                    if self.tree.named(name).iter().any(|old| *old != id) {
                        return false;
                    }
                    self.broken.remove(name);
                    if self.tree.contains(&id) {
                        self.want(id, name, now);
                    } else {
                        self.add(id, name, now);
                        self.watch_young(id, name, now);
                    }
                }
                Probe::NotService | Probe::Gone => {
                    self.broken.remove(name);
                    if !self.tree.named(name).is_empty() {
                        return false;
                    }
                }
                Probe::Broken(cause) => {
                    self.report_broken(name, cause);
                    if !self.tree.named(name).is_empty() {
                        return false;
                    }
                }
            }
        }
        true
    }

    fn report_broken(&mut self, name: &OsString, cause: String) {
        if self.broken.get(name) != Some(&cause) {
            warden::say!("svscan: warning: unable to use {}: {cause}", shown(name));
            self.broken.insert(name.clone(), cause);
        }
    }

    /// Reads the whole scan directory: new services start, vanished ones stop. Nothing is
    /// stopped on the word of an incomplete listing.
    fn rescan(&mut self, now: Instant) {
        if self.shutdown.is_some() {
            return;
        }
        self.rescan_at = None;
        let listing = system::with_fds(|| self.listing.list());
        let (names, errors) = match listing {
            Ok(listing) => {
                self.scan_failures = 0;
                listing
            }
            Err(e) => {
                self.scan_failures = self.scan_failures.saturating_add(1);
                let delay = life::restart_delay(self.scan_failures);
                if self.scan_failures == 1 {
                    warden::say!(
                        "svscan: warning: unable to read the scan directory: {e}; retrying in {}",
                        life::humanize(delay)
                    );
                }
                self.rescan_at = Some(deadline(now, delay));
                return;
            }
        };
        let mut complete = true;
        for e in errors {
            complete = false;
            warden::say!("svscan: warning: unable to read an entry of the scan directory: {e}");
        }
        let known: HashMap<OsString, Id> = self.tree.names().into_iter().collect();
        let mut seen: HashMap<Id, Vec<OsString>> = HashMap::new();
        let mut added = HashSet::new();
        let mut broken = HashMap::new();
        // Services with dependency files are read, and started, once the scan has seen
        // every name: the graph is whole when their gates are decided (a cycle found before
        // any of it runs, a dependency listed later known to exist), and the services
        // without any have their supervisors at work meanwhile (a dependency that runs
        // before its dependents are read joins the graph as they are).
        let mut with_deps = Vec::new();
        for name in names {
            match scandir::probe(&name) {
                Probe::Service(id) if !seen.contains_key(&id) && !self.tree.contains(&id) => {
                    if warden::deps::declares_any(&scandir::service_path(&name)) {
                        with_deps.push((id, name.clone()));
                    } else {
                        // Started now, while the scan goes on (at boot, the first
                        // supervisors are at work while svscan still looks at the rest).
                        self.add(id, &name, now);
                    }
                    // Made while svscan started (or while inotify's events were lost): its
                    // log/ may be on its way, as for a service inotify reported.
                    if scandir::changed_within(&name, SETTLE) {
                        self.watch_young(id, &name, now);
                    }
                    added.insert(id);
                    seen.insert(id, vec![name]);
                }
                Probe::Service(id) => seen.entry(id).or_default().push(name),
                Probe::NotService | Probe::Gone => {}
                Probe::Broken(cause) => {
                    // Unreadable right now is not proof of removal: keep what ran under it.
                    if let Some(id) = known.get(&name) {
                        seen.entry(*id).or_default().push(name.clone());
                    }
                    broken.insert(name, cause);
                }
            }
        }
        for (id, name) in &with_deps {
            self.gates
                .appear(*id, name, self.watch.as_ref(), &mut self.tree);
        }
        // In dependency order, and those held spread out (HELD_STAGGER apart): a boot of a
        // deep graph spends the CPU first on what can run now, and a held service whose
        // dependencies become ready before its turn starts then, unheld.
        with_deps.sort_by_cached_key(|(_, name)| self.gates.depth(name));
        let mut held = 0u32;
        for (id, name) in with_deps {
            let at = deadline(now, HELD_STAGGER.saturating_mul(held));
            if self.gates.gate(&name) == crate::graph::Gate::Hold {
                held = held.saturating_add(1);
            }
            self.supervise_at(id, &name, at, now);
        }
        for (name, cause) in broken.clone() {
            self.report_broken(&name, cause);
        }
        self.broken.retain(|name, _| broken.contains_key(name));
        for (id, names) in seen.iter().filter(|(id, _)| !added.contains(*id)) {
            let Some(first) = names.first() else { continue };
            let current = self.tree.name(id).map(|n| n.to_owned());
            if !current.is_some_and(|c| names.contains(&c)) {
                self.tree.rename(id, first);
                let dropped = self
                    .gates
                    .renamed(*id, first, self.watch.as_ref(), &mut self.tree);
                self.forget_watches(dropped);
            }
            let name = self.tree.name(id).map(|n| n.to_owned());
            if let Some(name) = name {
                self.want(*id, &name, now);
            }
        }
        if complete {
            for (_, id) in known {
                if !seen.contains_key(&id) && self.tree.is_wanted(&id) {
                    self.tree.unwant(&id);
                    let dropped = self.gates.vanish(&id, &mut self.tree);
                    self.forget_watches(dropped);
                }
            }
        }
    }
}

/// Young services and their watches, indexed both ways, with their deadlines in order (each
/// is now + SETTLE when made): the work for one event or one wake-up does not grow with the
/// number of services that just appeared (10,000 at boot).
#[derive(Default)]
struct Young {
    by_id: HashMap<Id, i32>,
    by_wd: HashMap<i32, BTreeSet<Id>>,
    expiries: std::collections::VecDeque<(Instant, Id)>,
}

impl Young {
    fn insert(&mut self, id: Id, wd: i32, until: Instant) {
        if let Some(old) = self.by_id.insert(id, wd) {
            self.unlink(old, &id);
        }
        self.by_wd.entry(wd).or_default().insert(id);
        self.expiries.push_back((until, id));
    }

    /// Forgets the service; its watch, if no other young service shares it.
    fn remove(&mut self, id: &Id) -> Option<i32> {
        let wd = self.by_id.remove(id)?;
        self.unlink(wd, id);
        Some(wd)
    }

    fn unlink(&mut self, wd: i32, id: &Id) {
        if let Some(set) = self.by_wd.get_mut(&wd) {
            set.remove(id);
            if set.is_empty() {
                self.by_wd.remove(&wd);
            }
        }
    }

    fn uses(&self, wd: i32) -> bool {
        self.by_wd.contains_key(&wd)
    }

    fn on(&self, wd: i32) -> Vec<Id> {
        self.by_wd.get(&wd).into_iter().flatten().copied().collect()
    }

    /// The earliest deadline of a service still young (entries removed since are skipped).
    fn next_expiry(&self) -> Option<Instant> {
        let live = self
            .expiries
            .iter()
            .find(|(_, id)| self.by_id.contains_key(id));
        live.map(|(at, _)| *at)
    }

    /// Ends the watch of each service whose time is up; returns the watches to forget.
    fn expire(&mut self, now: Instant) -> Vec<i32> {
        let mut out = Vec::new();
        while let Some(&(at, id)) = self.expiries.front() {
            // Those gone already (their log/ came) are dropped here, so that the next
            // deadline is found at the front.
            if at > now && self.by_id.contains_key(&id) {
                break;
            }
            self.expiries.pop_front();
            if at <= now {
                out.extend(self.remove(&id));
            }
        }
        out
    }
}

#[derive(Default)]
struct Ready {
    signals: bool,
    control: bool,
    watch: bool,
    pidfds: Vec<i32>,
}
