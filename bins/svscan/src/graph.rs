//! The dependency graph of the scan directory (`needs/`, `wants/`, `after/`,
//! `dependencies.d/`), as a pure planner: what svscan learns (a service's declared
//! dependencies, what its supervisor's status says, a service gone) goes in, and out come the
//! gates to tell the supervisors (`H` hold, `G` go), the cycles and the bad files to report.
//! It does no I/O; the scanner reads the files, watches them with inotify, and carries out
//! what comes out. Only the services a change touches are looked at: a tree of 10,000
//! services without dependencies costs nothing here.
//!
//! A service is let go (`G`) when every `needs` dependency exists, is up and ready, and every
//! `wants` or `after` dependency that exists and is wanted up is ready, or has failed to start
//! (it waits out a back-off, or has failed for good); it is held (`H`) otherwise, when its files are bad, or when it is in a cycle. Once
//! it runs, only a `needs` dependency that is no longer ready holds it again: a `wants` or
//! `after` one orders its start, and its stopping stops nothing.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::{OsStr, OsString};
use warden::deps::{Deps, Edge, Problem};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gate {
    Hold,
    Go,
}

/// What a service's supervisor says in its status files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seen {
    /// The service runs (or the oneshot is up).
    pub up: bool,
    pub ready: bool,
    pub want_up: bool,
    /// The restart limit was reached: it will not come up by itself.
    pub failed: bool,
    /// Its start failed (it ended before it was ready, or its `up` failed) and the next one
    /// waits out a back-off.
    pub retrying: bool,
}

impl Seen {
    /// Nothing read yet (no supervisor, or not ours): down, and presumably wanted up.
    pub const UNKNOWN: Seen = Seen {
        up: false,
        ready: false,
        want_up: true,
        failed: false,
        retrying: false,
    };

    fn ready(&self) -> bool {
        self.up && self.ready
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Out {
    /// Tell the supervisor of this service.
    Send(OsString, Gate),
    /// A new cycle, as `a -> b -> a`: its services are held until it is broken.
    Cycle(Vec<String>),
    /// A reported cycle is no more.
    CycleGone(Vec<String>),
    /// The service's dependency files cannot be used: it is held until they are fixed.
    Problem(OsString, Problem),
    /// The service takes part in the graph from now on (it declared its first edge, or a
    /// dependent declared it): its status is to be watched and read. Its supervisor may have
    /// been running for long, with nothing more to make in its directory.
    Joined(OsString),
}

struct Node {
    present: bool,
    decl: Result<Deps, Problem>,
    seen: Seen,
    gate: Gate,
    /// The supervisor is known to have been told `gate` (started with it, or sent it).
    delivered: bool,
    in_cycle: bool,
}

impl Node {
    fn absent() -> Node {
        Node {
            present: false,
            decl: Ok(Deps::default()),
            seen: Seen::UNKNOWN,
            gate: Gate::Go,
            delivered: true,
            in_cycle: false,
        }
    }

    fn edges(&self) -> impl Iterator<Item = (&str, Edge)> {
        self.decl.iter().flat_map(|d| d.edges())
    }
}

#[derive(Default)]
pub struct Graph {
    nodes: HashMap<OsString, Node>,
    /// Who depends on a name, by any edge.
    dependents: HashMap<OsString, BTreeSet<OsString>>,
    /// Cycles reported, each as its path.
    cycles: BTreeSet<Vec<String>>,
    /// Services with at least one edge: a graph without any costs nothing at shutdown.
    with_edges: usize,
}

impl Graph {
    /// A service appeared, or its dependency files changed (`decl` as `warden::deps::read`
    /// says). Returns the gate its supervisor is to be started with, and what is to be done.
    pub fn declare(&mut self, name: &OsStr, decl: Result<Deps, Problem>) -> (Gate, Vec<Out>) {
        let mut out = Vec::new();
        let was_member = self.is_member(name);
        let node = self
            .nodes
            .entry(name.to_owned())
            .or_insert_with(Node::absent);
        let was_present = std::mem::replace(&mut node.present, true);
        if let Some(p) = decl.as_ref().err().filter(|p| !p.transient) {
            if node.decl.as_ref().err() != Some(p) {
                out.push(Out::Problem(name.to_owned(), p.clone()));
            }
        }
        let old_edges: BTreeSet<(String, Edge)> =
            node.edges().map(|(n, e)| (n.to_owned(), e)).collect();
        node.decl = decl;
        let new_edges: BTreeSet<(String, Edge)> =
            node.edges().map(|(n, e)| (n.to_owned(), e)).collect();
        let mut touched = BTreeSet::from([name.to_owned()]);
        if old_edges != new_edges {
            // What it now depends on may join the graph by this edge.
            let joining: Vec<OsString> = new_edges
                .iter()
                .map(|(dep, _)| OsString::from(dep))
                .filter(|dep| dep.as_os_str() != name && !self.is_member(dep))
                .collect();
            self.relink(name, &old_edges, &new_edges);
            touched.extend(self.find_cycles(&mut out));
            for dep in joining {
                let present = self.nodes.get(&dep).is_some_and(|node| node.present);
                if present && self.is_member(&dep) {
                    out.push(Out::Joined(dep));
                }
            }
        }
        if !was_member && self.is_member(name) {
            out.push(Out::Joined(name.to_owned()));
        }
        if !was_present {
            touched.extend(self.dependents_of(name));
            // Its supervisor is about to be started with this gate: nothing to send.
            touched.remove(name);
            let gate = self.gate(name);
            if let Some(node) = self.nodes.get_mut(name) {
                node.gate = gate;
                node.delivered = true;
            }
        }
        self.regate(touched, &mut out);
        let gate = self.gate(name);
        (gate, out)
    }

    /// The service's supervisor is being started now: with the gate returned, which it
    /// then knows.
    pub fn starting(&mut self, name: &OsStr) -> Gate {
        let gate = self.gate(name);
        if let Some(node) = self.nodes.get_mut(name) {
            node.gate = gate;
            node.delivered = true;
        }
        gate
    }

    /// How deep the service sits: 0 without dependencies, else one more than its deepest
    /// dependency (a cycle counts as reached). For starting supervisors in dependency order.
    pub fn depth(&self, name: &OsStr) -> usize {
        let mut memo: HashMap<OsString, usize> = HashMap::new();
        // (node, children pushed)
        let mut stack = vec![(name.to_owned(), false)];
        let mut on_path: BTreeSet<OsString> = BTreeSet::new();
        while let Some((node, expanded)) = stack.pop() {
            let deps: Vec<OsString> = self
                .nodes
                .get(&node)
                .into_iter()
                .flat_map(|n| n.edges())
                .map(|(d, _)| OsString::from(d))
                .collect();
            if expanded {
                on_path.remove(&node);
                let deepest = deps.iter().filter_map(|d| memo.get(d)).max();
                let depth = deepest.map_or(0, |d| d.saturating_add(1));
                memo.insert(node, depth);
                continue;
            }
            if memo.contains_key(&node) || !on_path.insert(node.clone()) {
                continue;
            }
            stack.push((node, true));
            for d in deps {
                if !memo.contains_key(&d) && !on_path.contains(&d) {
                    stack.push((d, false));
                }
            }
        }
        memo.get(name).copied().unwrap_or(0)
    }

    /// The service is gone from the scan directory.
    pub fn remove(&mut self, name: &OsStr) -> Vec<Out> {
        let mut out = Vec::new();
        let Some(node) = self.nodes.get_mut(name) else {
            return out;
        };
        let old_edges: BTreeSet<(String, Edge)> =
            node.edges().map(|(n, e)| (n.to_owned(), e)).collect();
        *node = Node::absent();
        let mut touched: BTreeSet<OsString> = self.dependents_of(name).collect();
        if !old_edges.is_empty() {
            self.relink(name, &old_edges, &BTreeSet::new());
            touched.extend(self.find_cycles(&mut out));
        }
        if !self.dependents.contains_key(name) {
            self.nodes.remove(name);
        }
        self.regate(touched, &mut out);
        out
    }

    /// What the service's supervisor now says.
    pub fn seen(&mut self, name: &OsStr, seen: Seen) -> Vec<Out> {
        let mut out = Vec::new();
        let Some(node) = self.nodes.get_mut(name) else {
            return out;
        };
        let changed = std::mem::replace(&mut node.seen, seen) != seen;
        let mut touched = BTreeSet::from([name.to_owned()]);
        if changed {
            touched.extend(self.dependents_of(name));
        }
        self.regate(touched, &mut out);
        out
    }

    /// The last gate sent could not be delivered (no supervisor reads its FIFO yet): sent
    /// again when its status next changes.
    pub fn undelivered(&mut self, name: &OsStr) {
        if let Some(node) = self.nodes.get_mut(name) {
            node.delivered = false;
        }
    }

    /// The supervisor found running was not started with the gate (adopted): tell it.
    pub fn adopted(&mut self, name: &OsStr) -> Vec<Out> {
        match self.nodes.get_mut(name) {
            Some(node) if node.present && (node.gate == Gate::Hold || node.edges().count() > 0) => {
                node.delivered = false;
                let mut out = Vec::new();
                self.regate(BTreeSet::from([name.to_owned()]), &mut out);
                out
            }
            _ => Vec::new(),
        }
    }

    /// Whether the service takes part in the graph: its status matters to others, or it has
    /// edges (or unreadable dependency files) of its own; its `supervise/` is then watched.
    pub fn is_member(&self, name: &OsStr) -> bool {
        self.dependents.get(name).is_some_and(|d| !d.is_empty())
            || self
                .nodes
                .get(name)
                .is_some_and(|n| n.decl.is_err() || n.edges().count() > 0)
    }

    pub fn has_edges(&self) -> bool {
        self.with_edges > 0
    }

    /// The gate the service's supervisor is to have now.
    pub fn gate(&self, name: &OsStr) -> Gate {
        match self.nodes.get(name) {
            Some(node) => self.wanted_gate(node),
            None => Gate::Go,
        }
    }

    /// At shutdown, whether the service is still to wait before it is stopped: a service that
    /// depends on it still has a supervisor (`gone` says which are gone), dependents first. A
    /// dependent in a cycle never started, and holds nothing up.
    pub fn stop_waits(&self, name: &OsStr, gone: impl Fn(&OsStr) -> bool) -> bool {
        self.dependents_of(name).any(|d| {
            let node = self.nodes.get(&d);
            node.is_some_and(|n| n.present && !n.in_cycle) && !gone(&d)
        })
    }

    fn dependents_of(&self, name: &OsStr) -> impl Iterator<Item = OsString> + '_ {
        self.dependents.get(name).into_iter().flatten().cloned()
    }

    fn relink(
        &mut self,
        name: &OsStr,
        old: &BTreeSet<(String, Edge)>,
        new: &BTreeSet<(String, Edge)>,
    ) {
        for (dep, _) in old {
            if let Some(set) = self.dependents.get_mut(OsStr::new(dep)) {
                set.remove(name);
                if set.is_empty() {
                    self.dependents.remove(OsStr::new(dep));
                    let absent = self.nodes.get(OsStr::new(dep)).is_some_and(|n| !n.present);
                    if absent {
                        self.nodes.remove(OsStr::new(dep));
                    }
                }
            }
        }
        for (dep, _) in new {
            let dep = OsString::from(dep);
            self.nodes.entry(dep.clone()).or_insert_with(Node::absent);
            self.dependents
                .entry(dep)
                .or_default()
                .insert(name.to_owned());
        }
        self.with_edges = match (old.is_empty(), new.is_empty()) {
            (true, false) => self.with_edges.saturating_add(1),
            (false, true) => self.with_edges.saturating_sub(1),
            _ => self.with_edges,
        };
    }

    fn wanted_gate(&self, node: &Node) -> Gate {
        if node.decl.is_err() || node.in_cycle {
            return Gate::Hold;
        }
        // A want or an order is about the start: a service that runs is not stopped when such
        // a dependency stops (only a need does that), and waits for it again at its next start.
        let runs = node.seen.up;
        let blocked = node.edges().any(|(dep, edge)| {
            let dep = self.nodes.get(OsStr::new(dep)).filter(|d| d.present);
            match (edge, dep) {
                (Edge::Needs, None) => true,
                (Edge::Needs, Some(d)) => !d.seen.ready(),
                (Edge::Wants | Edge::After, None) => false,
                (Edge::Wants | Edge::After, Some(d)) => {
                    !runs && d.seen.want_up && !d.seen.failed && !d.seen.retrying && !d.seen.ready()
                }
            }
        });
        if blocked {
            Gate::Hold
        } else {
            Gate::Go
        }
    }

    /// Recomputes the gates of `names`; a changed gate, or one not delivered, is sent.
    fn regate(&mut self, names: BTreeSet<OsString>, out: &mut Vec<Out>) {
        for name in names {
            let Some(node) = self.nodes.get(&name) else {
                continue;
            };
            if !node.present {
                continue;
            }
            let gate = self.wanted_gate(node);
            let Some(node) = self.nodes.get_mut(&name) else {
                continue;
            };
            if node.gate != gate || !node.delivered {
                node.gate = gate;
                node.delivered = true;
                out.push(Out::Send(name, gate));
            }
        }
    }

    /// Finds the strongly connected components over every edge (Tarjan's, without
    /// recursion), marks their services, reports new cycles and those gone; returns the
    /// services whose membership changed.
    fn find_cycles(&mut self, out: &mut Vec<Out>) -> BTreeSet<OsString> {
        let names: Vec<&OsString> = {
            let mut v: Vec<&OsString> = self.nodes.keys().collect();
            v.sort();
            v
        };
        let index_of: HashMap<&OsStr, usize> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_os_str(), i))
            .collect();
        let succ: Vec<Vec<usize>> = names
            .iter()
            .map(|n| {
                let node = self.nodes.get(*n);
                let mut s: Vec<usize> = node
                    .into_iter()
                    .flat_map(|n| n.edges())
                    .filter_map(|(d, _)| index_of.get(OsStr::new(d)).copied())
                    .collect();
                s.sort_unstable();
                s
            })
            .collect();
        let components = tarjan(&succ);
        let mut cycles = BTreeSet::new();
        let mut cyclic = vec![false; names.len()];
        for comp in components {
            let self_loop = comp.len() == 1
                && comp
                    .iter()
                    .all(|&v| succ.get(v).is_some_and(|s| s.contains(&v)));
            if comp.len() < 2 && !self_loop {
                continue;
            }
            for &v in &comp {
                if let Some(c) = cyclic.get_mut(v) {
                    *c = true;
                }
            }
            let members: BTreeSet<usize> = comp.into_iter().collect();
            let path = cycle_path(&succ, &members);
            cycles.insert(
                path.iter()
                    .filter_map(|&v| names.get(v))
                    .map(|n| n.to_string_lossy().into_owned())
                    .collect::<Vec<String>>(),
            );
        }
        let mut changed = BTreeSet::new();
        let flags: Vec<(OsString, bool)> = names
            .iter()
            .zip(cyclic)
            .map(|(n, c)| ((*n).clone(), c))
            .collect();
        for (name, in_cycle) in flags {
            if let Some(node) = self.nodes.get_mut(&name) {
                if node.in_cycle != in_cycle {
                    node.in_cycle = in_cycle;
                    changed.insert(name);
                }
            }
        }
        for gone in self.cycles.difference(&cycles) {
            out.push(Out::CycleGone(gone.clone()));
        }
        for new in cycles.difference(&self.cycles) {
            out.push(Out::Cycle(new.clone()));
        }
        self.cycles = cycles;
        changed
    }
}

/// The strongly connected components of a graph given as successor lists (Tarjan's, with
/// an explicit stack). A successor out of range is skipped: no index can panic.
fn tarjan(succ: &[Vec<usize>]) -> Vec<Vec<usize>> {
    #[derive(Clone, Copy)]
    struct Mark {
        index: usize,
        low: usize,
        on_stack: bool,
    }
    let n = succ.len();
    let mut marks: Vec<Option<Mark>> = vec![None; n];
    let mut stack = Vec::new();
    let mut next = 0usize;
    let mut out = Vec::new();
    let successors = |v: usize| succ.get(v).map_or(&[][..], Vec::as_slice);
    for root in 0..n {
        if marks.get(root).copied().flatten().is_some() {
            continue;
        }
        // (vertex, position in its successor list)
        let mut work = vec![(root, 0usize)];
        while let Some((v, pos)) = work.pop() {
            if pos == 0 {
                if let Some(slot) = marks.get_mut(v) {
                    *slot = Some(Mark {
                        index: next,
                        low: next,
                        on_stack: true,
                    });
                }
                next = next.saturating_add(1);
                stack.push(v);
            }
            let Some(Some(mut mark)) = marks.get(v).copied() else {
                continue;
            };
            if let Some(&w) = successors(v).get(pos) {
                work.push((v, pos.saturating_add(1)));
                match marks.get(w).copied() {
                    Some(None) => work.push((w, 0)),
                    Some(Some(m)) if m.on_stack => {
                        mark.low = mark.low.min(m.index);
                        if let Some(slot) = marks.get_mut(v) {
                            *slot = Some(mark);
                        }
                    }
                    _ => {}
                }
                continue;
            }
            if let Some(&(parent, _)) = work.last() {
                if let Some(Some(p)) = marks.get_mut(parent) {
                    p.low = p.low.min(mark.low);
                }
            }
            if mark.low == mark.index {
                let mut comp = Vec::new();
                while let Some(w) = stack.pop() {
                    if let Some(Some(m)) = marks.get_mut(w) {
                        m.on_stack = false;
                    }
                    comp.push(w);
                    if w == v {
                        break;
                    }
                }
                out.push(comp);
            }
        }
    }
    out
}

/// One cycle through the smallest member of a component, as `a b ... a`: the shortest way
/// back, found breadth first within the component.
fn cycle_path(succ: &[Vec<usize>], members: &BTreeSet<usize>) -> Vec<usize> {
    let Some(&start) = members.first() else {
        return Vec::new();
    };
    let mut came_from: BTreeMap<usize, usize> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(v) = queue.pop_front() {
        for &w in succ.get(v).into_iter().flatten() {
            if !members.contains(&w) {
                continue;
            }
            if w == start {
                let mut path = vec![start];
                let mut at = v;
                // Walked back from v to start, then turned around.
                while at != start {
                    path.push(at);
                    at = came_from.get(&at).copied().unwrap_or(start);
                }
                path.reverse();
                path.insert(0, start);
                return path;
            }
            if let std::collections::btree_map::Entry::Vacant(e) = came_from.entry(w) {
                e.insert(v);
                queue.push_back(w);
            }
        }
    }
    vec![start, start]
}

#[cfg(test)]
#[path = "graph_tests.rs"]
mod tests;
