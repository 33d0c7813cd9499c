//! Dependencies as svctl sees them (issue 14): what a service needs, wants and comes after,
//! the state of each, what a held service waits for, a cycle it is caught in, what `up`
//! pulls in and what `down` stops first, and `svctl deps`'s tree. The walks and the texts are
//! pure (edges and states come in as closures and values); reading the files and statuses is
//! `DepView::read`'s, through `warden::deps`, the parser svscan uses too.

use crate::goal::Snapshot;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::Path;
use std::time::SystemTime;
use warden::deps::{Deps, Edge, Problem};
use warden::status::{RunState, Want};
use warden::svdir::{ClientError, ServiceDir};

/// A dependency's state, as far as waiting for it goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DepState {
    /// No such service in the scan directory.
    Missing,
    /// Down (or not supervised); `want_up`: it is wanted up (and not failed); `retrying`:
    /// its start failed and the next one waits out a back-off.
    Down {
        want_up: bool,
        retrying: bool,
    },
    /// Up for `secs`, not ready yet.
    NotReady {
        secs: u64,
    },
    Ready,
    /// Its status could not be read.
    Unknown(String),
}

impl DepState {
    /// `down`, `not ready, 3s`, `no such service`, `up, ready`.
    pub fn words(&self) -> String {
        match self {
            DepState::Missing => "no such service".into(),
            DepState::Down { .. } => "down".into(),
            DepState::NotReady { secs } => format!("not ready, {secs}s"),
            DepState::Ready => "up, ready".into(),
            DepState::Unknown(why) => why.clone(),
        }
    }

    /// For `--json`: `missing`, `down`, `not-ready`, `ready`, `unknown`.
    pub fn key(&self) -> &'static str {
        match self {
            DepState::Missing => "missing",
            DepState::Down { .. } => "down",
            DepState::NotReady { .. } => "not-ready",
            DepState::Ready => "ready",
            DepState::Unknown(_) => "unknown",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dep {
    pub name: String,
    pub edge: Edge,
    pub state: DepState,
}

impl Dep {
    /// Whether the service waits for this one, as svscan decides: a need until it is ready;
    /// a want or an after only while it exists, is wanted up, is not ready and has not failed
    /// to start.
    pub fn holds_up(&self) -> bool {
        match (self.edge, &self.state) {
            (_, DepState::Ready) => false,
            (Edge::Needs, _) => true,
            (_, DepState::Down { want_up, retrying }) => *want_up && !*retrying,
            (_, DepState::NotReady { .. }) => true,
            (_, DepState::Missing | DepState::Unknown(_)) => false,
        }
    }
}

/// What `status` shows of a service's dependencies.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DepView {
    pub deps: Vec<Dep>,
    /// A dependency file that cannot be used (`needs/x: dangling symlink to /y`).
    pub problem: Option<Problem>,
    /// A cycle reachable from the service, as `a b a`.
    pub cycle: Option<Vec<String>>,
}

impl DepView {
    /// The dependencies of the service in `dir` (a directory of `scandir`) with their
    /// states; `None` when it declares none (five `lstat`s).
    pub fn read(scandir: &Path, dir: &Path, now: SystemTime) -> Option<DepView> {
        if !warden::deps::declares_any(dir) {
            return None;
        }
        let name = dir.file_name()?.to_string_lossy().into_owned();
        let deps = match warden::deps::read(dir) {
            Ok(deps) => deps,
            Err(problem) => {
                return Some(DepView {
                    problem: Some(problem),
                    ..DepView::default()
                })
            }
        };
        let list = deps
            .edges()
            .map(|(dep, edge)| Dep {
                name: dep.to_owned(),
                edge,
                state: state_of(scandir, dep, now),
            })
            .collect();
        Some(DepView {
            deps: list,
            problem: None,
            cycle: find_cycle(&name, |n| edges_of(scandir, n)),
        })
    }

    pub fn waiting(&self) -> Vec<&Dep> {
        self.deps.iter().filter(|d| d.holds_up()).collect()
    }

    /// Why a held service does not run: `waiting for db (down), cache (not ready, 3s)`,
    /// `dependency cycle: a -> b -> a`, or the bad file.
    pub fn why_held(&self) -> Option<String> {
        if let Some(p) = &self.problem {
            return Some(p.to_string());
        }
        if let Some(cycle) = &self.cycle {
            return Some(format!("dependency cycle: {}", cycle.join(" -> ")));
        }
        let waiting = self.waiting();
        (!waiting.is_empty()).then(|| waiting_text(&waiting))
    }
}

/// `waiting for db (down), cache (not ready, 3s), metrics (no such service)`.
pub fn waiting_text(waiting: &[&Dep]) -> String {
    let items: Vec<String> = waiting
        .iter()
        .map(|d| format!("{} ({})", d.name, d.state.words()))
        .collect();
    format!("waiting for {}", items.join(", "))
}

/// The state of service `name` of the scan directory.
pub fn state_of(scandir: &Path, name: &str, now: SystemTime) -> DepState {
    let dir = ServiceDir::new(scandir.join(name));
    match Snapshot::take(&dir) {
        Ok(snap) => from_snapshot(&snap, now),
        Err(ClientError::NoSuchService(_)) => DepState::Missing,
        Err(ClientError::NotSupervised(_)) => DepState::Down {
            want_up: !dir.normally_down(),
            retrying: false,
        },
        Err(e) => DepState::Unknown(crate::report::error_words(&e)),
    }
}

/// Ready as svscan reads it: a notification or a passed `check` (`ready_at`), or running at
/// all for a service that has neither (runsv's too), or a oneshot whose `up` worked.
pub fn from_snapshot(snap: &Snapshot, now: SystemTime) -> DepState {
    let s = &snap.status;
    if s.state == RunState::Run && snap.is_up() {
        if snap.ready() == Some(false) {
            let since = s.stamp.to_system_time();
            let secs = now.duration_since(since).unwrap_or_default().as_secs();
            return DepState::NotReady { secs };
        }
        return DepState::Ready;
    }
    let failed = snap.extended.as_ref().is_some_and(|x| x.failed);
    DepState::Down {
        want_up: s.want == Want::Up && !failed,
        retrying: snap
            .extended
            .as_ref()
            .is_some_and(|x| warden::status::retrying(s, x)),
    }
}

/// The dependencies of `name` (all edges), from its files; none when they cannot be read.
pub fn edges_of(scandir: &Path, name: &str) -> Vec<(String, Edge)> {
    read_deps(scandir, name)
        .map(|d| d.edges().map(|(n, e)| (n.to_owned(), e)).collect())
        .unwrap_or_default()
}

pub fn read_deps(scandir: &Path, name: &str) -> Option<Deps> {
    let dir = scandir.join(name);
    if !dir.is_dir() {
        return None;
    }
    warden::deps::read(&dir).ok()
}

/// A cycle reachable from `start`, as the names along it with the first repeated at the end
/// (`a b a`); depth first, each name expanded once.
pub fn find_cycle(
    start: &str,
    mut edges: impl FnMut(&str) -> Vec<(String, Edge)>,
) -> Option<Vec<String>> {
    let mut done: BTreeSet<String> = BTreeSet::new();
    // The path from `start`, each with the successors still to try.
    let mut path: Vec<(String, VecDeque<String>)> = Vec::new();
    let succ = |n: &str, edges: &mut dyn FnMut(&str) -> Vec<(String, Edge)>| {
        let mut s: Vec<String> = edges(n).into_iter().map(|(d, _)| d).collect();
        s.sort();
        s.dedup();
        VecDeque::from(s)
    };
    let first = succ(start, &mut edges);
    path.push((start.to_owned(), first));
    while let Some((_, todo)) = path.last_mut() {
        let Some(next) = todo.pop_front() else {
            if let Some((name, _)) = path.pop() {
                done.insert(name);
            }
            continue;
        };
        if let Some(at) = path.iter().position(|(n, _)| *n == next) {
            let mut cycle: Vec<String> = path.get(at..)?.iter().map(|(n, _)| n.clone()).collect();
            cycle.push(next);
            return Some(cycle);
        }
        if done.contains(&next) {
            continue;
        }
        let s = succ(&next, &mut edges);
        path.push((next, s));
    }
    None
}

/// Everything `starts` pull in through `edges` (for `up`: needs and wants), breadth first,
/// without the starts themselves.
pub fn closure(starts: &[String], mut edges: impl FnMut(&str) -> Vec<String>) -> Vec<String> {
    let mut seen: BTreeSet<String> = starts.iter().cloned().collect();
    let mut queue: VecDeque<String> = starts.iter().cloned().collect();
    let mut out = Vec::new();
    while let Some(n) = queue.pop_front() {
        for d in edges(&n) {
            if seen.insert(d.clone()) {
                out.push(d.clone());
                queue.push_back(d);
            }
        }
    }
    out
}

/// The services that need `target` (through `needs` or `dependencies.d`), transitively, the
/// farthest first: the order in which `down` stops them. `needs` maps each service to what it
/// needs.
pub fn needing(target: &str, needs: &BTreeMap<String, Vec<String>>) -> Vec<String> {
    let mut reverse: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (svc, deps) in needs {
        for d in deps {
            reverse.entry(d.as_str()).or_default().push(svc.as_str());
        }
    }
    let mut seen: BTreeSet<&str> = BTreeSet::from([target]);
    let mut queue = VecDeque::from([target]);
    let mut order = Vec::new();
    while let Some(n) = queue.pop_front() {
        for &d in reverse.get(n).into_iter().flatten() {
            if seen.insert(d) {
                order.push(d.to_owned());
                queue.push_back(d);
            }
        }
    }
    order.reverse();
    order
}

/// One level of the tree being drawn: the children left, the prefix of their lines, and the
/// path from the root to their parent.
type Level = (VecDeque<(String, Edge)>, String, Vec<String>);

/// `svctl deps`'s tree under `root`: each dependency with its edge and state, a name shown
/// once in full (later `(see above)`), a cycle marked and not followed.
pub fn render_tree(
    root: &str,
    root_state: &str,
    mut edges: impl FnMut(&str) -> Vec<(String, Edge)>,
    mut state: impl FnMut(&str) -> String,
) -> String {
    let mut out = format!("{root}: {root_state}\n");
    let mut shown: BTreeSet<String> = BTreeSet::from([root.to_owned()]);
    let first = edges(root);
    let mut stack: Vec<Level> = vec![(VecDeque::from(first), String::new(), vec![root.to_owned()])];
    while let Some((todo, prefix, path)) = stack.last_mut() {
        let Some((name, edge)) = todo.pop_front() else {
            stack.pop();
            continue;
        };
        let last = todo.is_empty();
        let (branch, more) = if last {
            ("└─ ", "   ")
        } else {
            ("├─ ", "│  ")
        };
        let line_prefix = format!("{prefix}{branch}");
        let child_prefix = format!("{prefix}{more}");
        let kind = edge.name();
        if path.contains(&name) {
            out.push_str(&format!(
                "{line_prefix}{kind} {name}: dependency cycle: {} -> {name}\n",
                path.join(" -> ")
            ));
            continue;
        }
        let words = state(&name);
        if !shown.insert(name.clone()) {
            out.push_str(&format!(
                "{line_prefix}{kind} {name}: {words} (see above)\n"
            ));
            continue;
        }
        out.push_str(&format!("{line_prefix}{kind} {name}: {words}\n"));
        let children = edges(&name);
        if !children.is_empty() {
            let mut next_path = path.clone();
            next_path.push(name);
            stack.push((VecDeque::from(children), child_prefix, next_path));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(pairs: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        pairs
            .iter()
            .map(|(n, d)| (n.to_string(), d.iter().map(|s| s.to_string()).collect()))
            .collect()
    }

    fn needs_of(g: &BTreeMap<String, Vec<String>>) -> impl FnMut(&str) -> Vec<(String, Edge)> + '_ {
        move |n| {
            g.get(n)
                .into_iter()
                .flatten()
                .map(|d| (d.clone(), Edge::Needs))
                .collect()
        }
    }

    #[test]
    fn the_waiting_text_names_each_dependency_and_why() {
        let dep = |name: &str, edge, state| Dep {
            name: name.into(),
            edge,
            state,
        };
        let view = DepView {
            deps: vec![
                dep(
                    "db",
                    Edge::Needs,
                    DepState::Down {
                        want_up: false,
                        retrying: false,
                    },
                ),
                dep("cache", Edge::Needs, DepState::NotReady { secs: 3 }),
                dep("disk", Edge::Needs, DepState::Ready),
                dep("metrics", Edge::Needs, DepState::Missing),
                dep(
                    "net",
                    Edge::After,
                    DepState::Down {
                        want_up: false,
                        retrying: false,
                    },
                ),
                dep("dns", Edge::Wants, DepState::Missing),
                dep("ntp", Edge::Wants, DepState::NotReady { secs: 1 }),
                // A want whose start failed, waiting out its back-off, is not waited for.
                dep(
                    "mail",
                    Edge::Wants,
                    DepState::Down {
                        want_up: true,
                        retrying: true,
                    },
                ),
                dep(
                    "spool",
                    Edge::Wants,
                    DepState::Down {
                        want_up: true,
                        retrying: false,
                    },
                ),
            ],
            ..DepView::default()
        };
        assert_eq!(
            view.why_held().unwrap(),
            "waiting for db (down), cache (not ready, 3s), metrics (no such service), \
             ntp (not ready, 1s), spool (down)"
        );
    }

    #[test]
    fn a_cycle_or_a_bad_file_is_the_reason_first() {
        let view = DepView {
            cycle: Some(vec!["a".into(), "b".into(), "a".into()]),
            ..DepView::default()
        };
        assert_eq!(view.why_held().unwrap(), "dependency cycle: a -> b -> a");
        let view = DepView {
            problem: Some(Problem {
                file: "needs/x".into(),
                cause: "dangling symlink to /y".into(),
                transient: false,
            }),
            ..view
        };
        assert_eq!(view.why_held().unwrap(), "needs/x: dangling symlink to /y");
        assert_eq!(DepView::default().why_held(), None);
    }

    #[test]
    fn cycles_are_found_from_the_service_through_its_dependencies() {
        let g = graph(&[("a", &["b"]), ("b", &["c"]), ("c", &["a"]), ("d", &["a"])]);
        assert_eq!(
            find_cycle("a", needs_of(&g)),
            Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
        );
        assert_eq!(
            find_cycle("d", needs_of(&g)),
            Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
        );
        let dag = graph(&[("a", &["b", "c"]), ("b", &["c"]), ("c", &[])]);
        assert_eq!(find_cycle("a", needs_of(&dag)), None);
        let me = graph(&[("a", &["a"])]);
        assert_eq!(
            find_cycle("a", needs_of(&me)),
            Some(vec!["a".into(), "a".into()])
        );
    }

    #[test]
    fn up_pulls_in_transitively_once_each() {
        let g = graph(&[
            ("web", &["app", "cache"]),
            ("app", &["db", "cache"]),
            ("db", &[]),
        ]);
        let pulled = closure(&["web".into()], |n| g.get(n).cloned().unwrap_or_default());
        assert_eq!(pulled, ["app", "cache", "db"]);
    }

    #[test]
    fn down_stops_the_farthest_dependents_first() {
        let g = graph(&[
            ("web", &["app"]),
            ("app", &["db"]),
            ("cron", &["db"]),
            ("db", &[]),
        ]);
        let order = needing("db", &g);
        assert_eq!(order.len(), 3);
        let at = |n: &str| order.iter().position(|x| x == n).unwrap();
        assert!(at("web") < at("app"), "{order:?}");
        assert!(needing("web", &g).is_empty());
    }

    #[test]
    fn the_tree_shows_each_edge_once_and_marks_cycles() {
        let g = graph(&[
            ("web", &["app", "db"]),
            ("app", &["db", "web"]),
            ("db", &[]),
        ]);
        let text = render_tree("web", "down", needs_of(&g), |n| format!("state of {n}"));
        assert_eq!(
            text,
            "web: down\n\
             ├─ needs app: state of app\n\
             │  ├─ needs db: state of db\n\
             │  └─ needs web: dependency cycle: web -> app -> web\n\
             └─ needs db: state of db (see above)\n"
        );
    }
}
