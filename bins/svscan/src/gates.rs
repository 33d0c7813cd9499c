//! The executor of `graph`: reads each service's dependency files (`warden::deps`) and its
//! supervisor's status, keeps inotify watches on what can change them (the service directory,
//! its `needs/`, `wants/`, `after/`, `dependencies.d/`, and `supervise/` of the services
//! that take part in the graph), and tells the supervisors their gate (`H` or `G` on
//! `supervise/control`, or `supervise --held` at a start). A dependency's readiness is learnt
//! from its `supervise/` events, never by polling.

use crate::graph::{Gate, Graph, Out, Seen};
use crate::scandir::{service_path, shown, Id, Watch};
use crate::tree::Tree;
use rustix::io::Errno;
use std::collections::{BTreeSet, HashMap};
use std::ffi::{OsStr, OsString};
use std::time::{Duration, Instant};
use warden::control::Command;
use warden::service::deadline;
use warden::status::{RunState, Want};
use warden::svdir::ServiceDir;

/// The inotify watches kept for one service.
#[derive(Clone, Default)]
struct Watched {
    /// The service directory: dependency directories made or removed, `type` written,
    /// `supervise/` made.
    dir: Option<i32>,
    /// Its dependency directories that exist.
    subdirs: Vec<i32>,
    /// Its `supervise/`, while it takes part in the graph.
    supervise: Option<i32>,
    /// Instead, while `supervise` is a symlink to a directory not made yet (runit's packaging:
    /// `supervise -> /run/runit/supervise.NAME`, made by the supervisor at its start): the
    /// directory it is to be made in, and its name there.
    target_parent: Option<(i32, OsString)>,
}

impl Watched {
    fn all(&self) -> impl Iterator<Item = i32> + '_ {
        self.dir
            .iter()
            .chain(&self.subdirs)
            .chain(&self.supervise)
            .copied()
            .chain(self.target_parent.as_ref().map(|(wd, _)| *wd))
    }

    /// How many of the watches on its files and its status `wd` is (one directory may be two
    /// of them: a `needs` linked to the service directory, say).
    fn uses(&self, wd: i32) -> usize {
        let files = self.dir.iter().chain(&self.subdirs).chain(&self.supervise);
        files.filter(|w| **w == wd).count()
    }
}

#[derive(Default)]
pub struct Gates {
    graph: Graph,
    ids: HashMap<OsString, Id>,
    names: HashMap<Id, OsString>,
    watched: HashMap<OsString, Watched>,
    /// Which services each watch is for.
    by_wd: HashMap<i32, BTreeSet<OsString>>,
    /// Services whose files could not be read for a reason that passes (out of fds), and
    /// when they are read again.
    retry: BTreeSet<OsString>,
    retry_at: Option<Instant>,
    /// The shortage of inotify watches was said (once per svscan, by whichever part found it).
    watch_shortage_reported: bool,
}

/// How often files that could not be read for want of fds or memory are read again.
const RETRY: Duration = Duration::from_secs(1);

impl Gates {
    /// A service appeared: its dependencies are read (its supervisor is started after, with
    /// [`Gates::starting`]).
    pub fn appear(&mut self, id: Id, name: &OsStr, watch: Option<&Watch>, tree: &mut Tree) {
        self.ids.insert(name.to_owned(), id);
        self.names.insert(id, name.to_owned());
        self.refresh(name, watch, tree);
    }

    /// The gate the service is to have now.
    pub fn gate(&self, name: &OsStr) -> crate::graph::Gate {
        self.graph.gate(name)
    }

    /// How deep the service sits in the graph (0: no dependencies).
    pub fn depth(&self, name: &OsStr) -> usize {
        self.graph.depth(name)
    }

    /// The service's supervisor is started now: whether it starts held.
    pub fn starting(&mut self, name: &OsStr) -> bool {
        self.graph.starting(name) == Gate::Hold
    }

    /// After [`Gates::appear`], once the tree has the entry: an adopted supervisor is told its
    /// gate, and what it says is read.
    pub fn added(&mut self, name: &OsStr, adopted: bool, tree: &mut Tree) {
        if adopted {
            let out = self.graph.adopted(name);
            self.carry_out(out, tree);
        }
        if self.graph.is_member(name) {
            self.read_status(name, tree);
        }
    }

    /// The service is gone from the scan directory; returns the watches no longer needed.
    pub fn vanish(&mut self, id: &Id, tree: &mut Tree) -> Vec<i32> {
        let Some(name) = self.names.remove(id) else {
            return Vec::new();
        };
        self.ids.remove(&name);
        let out = self.graph.remove(&name);
        self.carry_out(out, tree);
        self.drop_watches(&name)
    }

    /// The entry now goes by another name (renamed in the scan directory): for the graph, the
    /// old name is gone and the new one appeared, with the supervisor it has.
    pub fn renamed(
        &mut self,
        id: Id,
        name: &OsStr,
        watch: Option<&Watch>,
        tree: &mut Tree,
    ) -> Vec<i32> {
        let dropped = self.vanish(&id, tree);
        self.appear(id, name, watch, tree);
        let held = self.starting(name);
        tree.set_held(&id, held);
        self.added(name, true, tree);
        dropped
    }

    /// Whether the graph knows the entry (it may have vanished and come back).
    pub fn knows(&self, id: &Id) -> bool {
        self.names.contains_key(id)
    }

    /// Whether one of these watches is ours.
    pub fn uses(&self, wd: i32) -> bool {
        self.by_wd.contains_key(&wd)
    }

    /// Watches of every service: after an inotify overflow, all are looked at again.
    pub fn all_watches(&self) -> Vec<i32> {
        self.by_wd.keys().copied().collect()
    }

    /// A watch fired: the dependency files and the status of its services are read again.
    /// `seen`: the names its events were about (`None`: may be anything). Returns the
    /// watches no longer needed.
    pub fn on_watch(
        &mut self,
        wd: i32,
        seen: Option<&BTreeSet<OsString>>,
        watch: Option<&Watch>,
        tree: &mut Tree,
    ) -> Vec<i32> {
        let names: Vec<OsString> = self.by_wd.get(&wd).into_iter().flatten().cloned().collect();
        let any = |pick: fn(&OsStr) -> bool| seen.map_or(true, |s| s.iter().any(|n| pick(n)));
        let mut dropped = Vec::new();
        for name in names {
            if !self.ids.contains_key(&name) {
                continue;
            }
            // The directory its `supervise` symlink points into: once the target is made
            // there, `supervise/` is watched (and its status read) through the link.
            if let Some(target) = self.awaited_target(&name, wd) {
                let only = self.watched.get(&name).is_some_and(|w| w.uses(wd) == 0);
                if seen.map_or(true, |s| s.contains(&target)) {
                    dropped.extend(self.watch_status(&name, watch));
                    self.read_status(&name, tree);
                }
                if only {
                    continue;
                }
            }
            // A status replaced in its `supervise/` (several per start, and again at
            // readiness): only the status is read again, and only for the two files it is
            // read from (not `pid` or `stat`). Its dependency files and watches change only
            // by events of the other watches.
            if self.is_only(&name, wd, |w| w.supervise) {
                if any(is_status_file) {
                    self.read_status(&name, tree);
                }
                continue;
            }
            // The service's own directory: only its dependency entries and `supervise/`
            // matter, not the files its service writes there (runit's idiom writes a `ready`
            // into it, say).
            let dir_only = self.is_only(&name, wd, |w| w.dir);
            if dir_only && !any(concerns_the_graph) {
                continue;
            }
            // Its `supervise/` made (by each new supervisor): watched, if the service takes
            // part in the graph, and its status read; its dependency files are as they were.
            if dir_only && !any(warden::deps::is_declaration) {
                if self.graph.is_member(&name) {
                    dropped.extend(self.watch_status(&name, watch));
                    self.read_status(&name, tree);
                }
                continue;
            }
            dropped.extend(self.refresh(&name, watch, tree));
            if self.graph.is_member(&name) {
                self.read_status(&name, tree);
            }
        }
        dropped
    }

    /// Whether `wd` is the service's watch that `which` picks, and none of its others on its
    /// files and status.
    fn is_only(&self, name: &OsStr, wd: i32, which: fn(&Watched) -> Option<i32>) -> bool {
        self.watched
            .get(name)
            .is_some_and(|w| which(w) == Some(wd) && w.uses(wd) == 1)
    }

    /// When files that could not be read are to be read again.
    pub fn retry_at(&self) -> Option<Instant> {
        self.retry_at
    }

    /// Reads again the files that could not be read, once their time has come.
    pub fn retry(&mut self, now: Instant, watch: Option<&Watch>, tree: &mut Tree) -> Vec<i32> {
        if self.retry_at.map_or(true, |at| at > now) {
            return Vec::new();
        }
        self.retry_at = None;
        let mut dropped = Vec::new();
        for name in std::mem::take(&mut self.retry) {
            if self.ids.contains_key(&name) {
                dropped.extend(self.refresh(&name, watch, tree));
                if self.graph.is_member(&name) {
                    self.read_status(&name, tree);
                }
            }
        }
        dropped
    }

    /// Brings the service's watches in line, then reads its dependency files and tells the
    /// graph; returns the watches it no longer needs. Watched first, read after: a file made
    /// after its directory's watch is reported by that watch, one made before is in the read,
    /// so one read is enough (a dependency directory made in between is read now, and its
    /// creation, reported by the watch on the service directory, brings its own watch).
    fn refresh(&mut self, name: &OsStr, watch: Option<&Watch>, tree: &mut Tree) -> Vec<i32> {
        let mut dropped = self.sync_watches(name, watch);
        let (_, out) = self.declare(name);
        let (joined, out): (Vec<Out>, Vec<Out>) =
            out.into_iter().partition(|o| matches!(o, Out::Joined(_)));
        self.carry_out(out, tree);
        for o in joined {
            let Out::Joined(joined) = o else { continue };
            if self.ids.contains_key(&joined) {
                dropped.extend(self.watch_status(&joined, watch));
                self.read_status(&joined, tree);
            }
        }
        dropped
    }

    /// Reads the service's files and tells the graph.
    fn declare(&mut self, name: &OsStr) -> (Gate, Vec<Out>) {
        let decl = warden::deps::read(&service_path(name));
        if decl.as_ref().is_err_and(|p| p.transient) {
            self.retry_later(name);
        }
        self.graph.declare(name, decl)
    }

    fn retry_later(&mut self, name: &OsStr) {
        self.retry.insert(name.to_owned());
        let now = Instant::now();
        self.retry_at.get_or_insert_with(|| deadline(now, RETRY));
    }

    /// The watch just added, if there is one. Out of watches (or of kernel memory), the
    /// service's files, and its status when it takes part in the graph, are read again every
    /// [`RETRY`] until it can be watched: a change made meanwhile is seen within that, not
    /// never. A directory that does not exist is no error.
    fn kept_watch(&mut self, name: &OsStr, added: Result<i32, Errno>) -> Option<i32> {
        match added {
            Ok(wd) => Some(wd),
            Err(e @ (Errno::NOSPC | Errno::NOMEM)) => {
                self.retry_later(name);
                self.report_watch_shortage(name, e);
                None
            }
            Err(_) => None,
        }
    }

    /// Says once per svscan that inotify watches are short, whoever found it (the scanner
    /// for a new service's `log/`, or the graph's watches), and what is done without them.
    pub fn report_watch_shortage(&mut self, what: &OsStr, e: Errno) {
        if !std::mem::replace(&mut self.watch_shortage_reported, true) {
            warden::say!(
                "svscan: warning: unable to watch {} with inotify: {e}; going on without \
                 (dependency files and statuses are then read again every second)",
                shown(what)
            );
        }
    }

    pub fn has_edges(&self) -> bool {
        self.graph.has_edges()
    }

    /// At shutdown: whether the entry is still to wait, for a dependent that still runs.
    pub fn stop_waits(&self, id: &Id, tree: &Tree) -> bool {
        let Some(name) = self.names.get(id) else {
            return false;
        };
        self.graph.stop_waits(name, |dependent| {
            self.ids
                .get(dependent)
                .map_or(true, |id| tree.service_gone(id))
        })
    }

    fn read_status(&mut self, name: &OsStr, tree: &mut Tree) {
        let seen = self
            .ids
            .get(name)
            .map_or(Seen::UNKNOWN, |id| seen(name, id, tree));
        let out = self.graph.seen(name, seen);
        self.carry_out(out, tree);
    }

    fn carry_out(&mut self, out: Vec<Out>, tree: &mut Tree) {
        for o in out {
            match o {
                Out::Send(name, gate) => {
                    let Some(id) = self.ids.get(&name) else {
                        continue;
                    };
                    tree.set_held(id, gate == Gate::Hold);
                    let command = match gate {
                        Gate::Hold => Command::Hold,
                        Gate::Go => Command::Go,
                    };
                    // No supervisor reads the FIFO yet (just started): it started with the
                    // gate of its start, or is told when its status first appears.
                    if ServiceDir::new(service_path(&name))
                        .send(&[command.byte()])
                        .is_err()
                    {
                        self.graph.undelivered(&name);
                    }
                }
                Out::Cycle(path) => warden::say!(
                    "svscan: warning: dependency cycle: {}: its services are not started until \
                     it is broken",
                    path.join(" -> ")
                ),
                Out::CycleGone(path) => {
                    warden::say!("svscan: dependency cycle {} is broken", path.join(" -> "))
                }
                // Said only by a declaration, which `refresh` makes and carries out itself.
                Out::Joined(_) => {}
                Out::Problem(name, problem) => warden::say!(
                    "svscan: warning: {}: {problem}: the service is not started until this is \
                     fixed",
                    shown(&name)
                ),
            }
        }
    }

    /// Adds the watches the service needs now, and returns those it no longer needs.
    fn sync_watches(&mut self, name: &OsStr, watch: Option<&Watch>) -> Vec<i32> {
        let Some(watch) = watch else {
            return Vec::new();
        };
        let dir = service_path(name);
        let mut want = Watched {
            dir: self.kept_watch(name, watch.add_log_watch(&dir)),
            ..Watched::default()
        };
        // Every service's dependency directories that exist, member or not: an empty
        // `needs/` made now gets its first file later, and only a watch on it sees that.
        for (sub, _) in warden::deps::DIRS {
            if let Some(wd) = self.kept_watch(name, watch.add_log_watch(&dir.join(sub))) {
                want.subdirs.push(wd);
            }
        }
        let mut added = Vec::new();
        if self.graph.is_member(name) {
            (want.supervise, want.target_parent) = self.status_watches(name, watch, &mut added);
        }
        self.install(name, want, added)
    }

    /// Makes `want` the service's watches; returns those no longer needed: its old ones not
    /// kept, and those `added` on the way that nobody uses.
    fn install(&mut self, name: &OsStr, want: Watched, mut added: Vec<i32>) -> Vec<i32> {
        let old = self.watched.remove(name).unwrap_or_default();
        let kept: BTreeSet<i32> = want.all().collect();
        added.retain(|wd| !kept.contains(wd) && !self.by_wd.contains_key(wd));
        for wd in old.all().filter(|wd| !kept.contains(wd)) {
            if self.unlink(wd, name) {
                added.push(wd);
            }
        }
        for wd in &kept {
            self.by_wd.entry(*wd).or_default().insert(name.to_owned());
        }
        self.watched.insert(name.to_owned(), want);
        added
    }

    /// Watches the service's `supervise/` (if it exists yet: its making is seen by the watch
    /// on the service directory, or by that on its symlink's target's directory), as one that
    /// takes part in the graph; returns the watches no longer needed.
    fn watch_status(&mut self, name: &OsStr, watch: Option<&Watch>) -> Vec<i32> {
        let (Some(watch), Some(mut want)) = (watch, self.watched.get(name).cloned()) else {
            return Vec::new();
        };
        let mut added = Vec::new();
        (want.supervise, want.target_parent) = self.status_watches(name, watch, &mut added);
        self.install(name, want, added)
    }

    /// The watch on the service's `supervise/`; or, while that is a symlink to a directory
    /// not made yet, the watch on the nearest directory of the target's path that exists, and
    /// the name to be made in it next (a supervisor makes the whole path, as `mkdir -p`:
    /// `/run/runit/supervise/NAME` at boot). Watches added but not kept are in `dropped`.
    fn status_watches(
        &mut self,
        name: &OsStr,
        watch: &Watch,
        dropped: &mut Vec<i32>,
    ) -> (Option<i32>, Option<(i32, OsString)>) {
        let dir = service_path(name);
        let supervise = dir.join(warden::svdir::SUPERVISE);
        // What is awaited may be made while its watch is added: then looked at again.
        for _ in 0..MAX_TARGET_ROUNDS {
            match watch.add_status_watch(&supervise) {
                Ok(wd) => return (Some(wd), None),
                Err(Errno::NOENT) => {}
                Err(e) => return (self.kept_watch(name, Err(e)), None),
            }
            let Ok(target) = std::fs::read_link(&supervise) else {
                return (None, None);
            };
            // Relative to the service directory, as its supervisor reads it.
            let Some((existing, next)) = nearest_existing(&dir.join(target)) else {
                return (None, None);
            };
            let Some(wd) = self.kept_watch(name, watch.add_creation_watch(&existing)) else {
                return (None, None);
            };
            if std::fs::symlink_metadata(existing.join(&next)).is_err() {
                return (None, Some((wd, next)));
            }
            dropped.push(wd);
        }
        (None, None)
    }

    /// The name of the target of the service's `supervise` symlink, if `wd` watches the
    /// directory it is awaited in.
    fn awaited_target(&self, name: &OsStr, wd: i32) -> Option<OsString> {
        let (parent, file) = self.watched.get(name)?.target_parent.as_ref()?;
        (*parent == wd).then(|| file.clone())
    }

    fn drop_watches(&mut self, name: &OsStr) -> Vec<i32> {
        let old = self.watched.remove(name).unwrap_or_default();
        old.all().filter(|wd| self.unlink(*wd, name)).collect()
    }

    /// Forgets that `wd` is for `name`; true when no service needs it any more.
    fn unlink(&mut self, wd: i32, name: &OsStr) -> bool {
        let Some(set) = self.by_wd.get_mut(&wd) else {
            return false;
        };
        set.remove(name);
        if set.is_empty() {
            self.by_wd.remove(&wd);
            return true;
        }
        false
    }
}

/// The most levels of a `supervise` symlink's target path made while svscan looks.
const MAX_TARGET_ROUNDS: usize = 8;

/// The nearest directory of `path`'s ancestors that exists, and the name under it that leads
/// to `path`. `None` past a `..` or at the root.
fn nearest_existing(path: &std::path::Path) -> Option<(std::path::PathBuf, OsString)> {
    let mut next = path.file_name()?.to_owned();
    let mut at = path.parent()?;
    loop {
        let here = if at.as_os_str().is_empty() {
            std::path::Path::new(".")
        } else {
            at
        };
        if here.is_dir() {
            return Some((here.to_path_buf(), next));
        }
        next = at.file_name()?.to_owned();
        at = at.parent()?;
    }
}

/// What the status of the service's supervisor says, if it is the supervisor svscan knows
/// runs there (a status left by an earlier one says nothing of now).
fn seen(name: &OsStr, id: &Id, tree: &Tree) -> Seen {
    let Some(pid) = tree.supervisor_pid(id) else {
        return Seen::UNKNOWN;
    };
    let dir = ServiceDir::new(service_path(name));
    let Some(x) = dir.extended() else {
        return Seen::UNKNOWN;
    };
    if x.supervisor_pid.map(i64::from) != Some(i64::from(pid)) {
        return Seen::UNKNOWN;
    }
    let Ok(status) = dir.status() else {
        return Seen::UNKNOWN;
    };
    Seen {
        up: status.state == RunState::Run,
        ready: warden::status::up_and_ready(&status, &x),
        want_up: status.want == Want::Up && !x.failed,
        failed: x.failed,
        retrying: warden::status::retrying(&status, &x),
    }
}

/// The files of `supervise/` that [`seen`] reads.
fn is_status_file(name: &OsStr) -> bool {
    name == warden::svdir::STATUS || name == warden::status::EXTENDED_FILE
}

/// An entry of a service directory that the graph looks at: its dependency declarations, or
/// its `supervise/` (made by its supervisor: its status can be watched then).
fn concerns_the_graph(name: &OsStr) -> bool {
    warden::deps::is_declaration(name) || name == warden::svdir::SUPERVISE
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    #[test]
    fn the_nearest_existing_directory_of_a_path_and_the_name_made_next_in_it() {
        let root = std::env::temp_dir().join(format!("warden-gates-test-{}", std::process::id()));
        std::fs::create_dir_all(root.join("run")).unwrap();
        let target = root.join("run/runit/supervise/db");
        assert_eq!(
            nearest_existing(&target),
            Some((root.join("run"), OsString::from("runit")))
        );
        std::fs::create_dir_all(root.join("run/runit/supervise")).unwrap();
        assert_eq!(
            nearest_existing(&target),
            Some((root.join("run/runit/supervise"), OsString::from("db")))
        );
        // A relative target, as the link says it, from the service directory.
        assert_eq!(
            nearest_existing(Path::new("supervise.db")),
            Some((PathBuf::from("."), OsString::from("supervise.db")))
        );
        // Past a `..` it is not followed.
        assert_eq!(nearest_existing(&root.join("nowhere/x/..")), None);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
