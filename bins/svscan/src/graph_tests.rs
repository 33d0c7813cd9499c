//! The graph planner with plain values: ordering, cycles, and what each change starts and
//! stops.

use super::*;
use std::collections::BTreeSet;

fn deps(needs: &[&str], wants: &[&str], after: &[&str]) -> Result<Deps, Problem> {
    let set = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<BTreeSet<_>>();
    Ok(Deps {
        kind: warden::deps::Kind::Longrun,
        needs: set(needs),
        wants: set(wants),
        after: set(after),
    })
}

fn name(n: &str) -> OsString {
    OsString::from(n)
}

fn send(n: &str, g: Gate) -> Out {
    Out::Send(name(n), g)
}

const READY: Seen = Seen {
    up: true,
    ready: true,
    want_up: true,
    failed: false,
    retrying: false,
};
const UP_NOT_READY: Seen = Seen {
    up: true,
    ready: false,
    want_up: true,
    failed: false,
    retrying: false,
};
const DOWN_WANTED_DOWN: Seen = Seen {
    up: false,
    ready: false,
    want_up: false,
    failed: false,
    retrying: false,
};

/// What is to be done but the joins (see [`joined`]).
fn others(out: Vec<Out>) -> Vec<Out> {
    out.into_iter()
        .filter(|o| !matches!(o, Out::Joined(_)))
        .collect()
}

fn sends(out: &[Out]) -> Vec<(String, Gate)> {
    out.iter()
        .filter_map(|o| match o {
            Out::Send(n, g) => Some((n.to_string_lossy().into_owned(), *g)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_service_without_dependencies_goes_and_nothing_is_sent() {
    let mut g = Graph::default();
    let (gate, out) = g.declare(OsStr::new("web"), deps(&[], &[], &[]));
    assert_eq!(gate, Gate::Go);
    assert!(out.is_empty(), "{out:?}");
    assert!(!g.is_member(OsStr::new("web")));
    assert!(!g.has_edges());
    assert!(g.seen(OsStr::new("web"), READY).is_empty());
}

#[test]
fn three_levels_go_one_after_the_other_as_each_becomes_ready() {
    let mut g = Graph::default();
    let (gate, _) = g.declare(OsStr::new("app"), deps(&["db"], &[], &[]));
    assert_eq!(gate, Gate::Hold, "db does not exist yet");
    let (gate, _) = g.declare(OsStr::new("db"), deps(&["disk"], &[], &[]));
    assert_eq!(gate, Gate::Hold);
    let (gate, out) = g.declare(OsStr::new("disk"), deps(&[], &[], &[]));
    assert_eq!(gate, Gate::Go);
    assert!(
        sends(&out).is_empty(),
        "db still waits for disk to be ready: {out:?}"
    );
    assert!(g.is_member(OsStr::new("disk")));

    let out = g.seen(OsStr::new("disk"), UP_NOT_READY);
    assert!(sends(&out).is_empty(), "up is not ready: {out:?}");
    let out = g.seen(OsStr::new("disk"), READY);
    assert_eq!(out, [send("db", Gate::Go)]);
    let out = g.seen(OsStr::new("db"), UP_NOT_READY);
    assert!(sends(&out).is_empty());
    let out = g.seen(OsStr::new("db"), READY);
    assert_eq!(out, [send("app", Gate::Go)]);
    // The same status again changes nothing.
    assert!(g.seen(OsStr::new("db"), READY).is_empty());
}

#[test]
fn a_need_going_down_holds_its_dependents_and_they_go_again_when_it_is_back() {
    let mut g = Graph::default();
    g.declare(OsStr::new("db"), deps(&[], &[], &[]));
    g.declare(OsStr::new("app"), deps(&["db"], &[], &[]));
    g.seen(OsStr::new("db"), READY);
    assert_eq!(g.gate(OsStr::new("app")), Gate::Go);
    let out = g.seen(OsStr::new("db"), Seen::UNKNOWN);
    assert_eq!(out, [send("app", Gate::Hold)]);
    let out = g.seen(OsStr::new("db"), READY);
    assert_eq!(out, [send("app", Gate::Go)]);
    let out = g.remove(OsStr::new("db"));
    assert_eq!(out, [send("app", Gate::Hold)], "a need that vanishes holds");
}

#[test]
fn wants_and_after_wait_only_for_a_dependency_that_exists_and_is_wanted_up() {
    let mut g = Graph::default();
    let (gate, _) = g.declare(OsStr::new("web"), deps(&[], &["metrics"], &["net"]));
    assert_eq!(gate, Gate::Go, "absent soft dependencies do not hold");
    let (_, out) = g.declare(OsStr::new("net"), deps(&[], &[], &[]));
    assert_eq!(
        sends(&out),
        [("web".into(), Gate::Hold)],
        "net exists, wanted up, not ready"
    );
    let out = g.seen(OsStr::new("net"), DOWN_WANTED_DOWN);
    assert_eq!(
        out,
        [send("web", Gate::Go)],
        "net is wanted down: nothing to wait for"
    );
    let out = g.seen(OsStr::new("net"), Seen::UNKNOWN);
    assert_eq!(out, [send("web", Gate::Hold)]);
    let failed = Seen {
        failed: true,
        want_up: false,
        ..Seen::UNKNOWN
    };
    let out = g.seen(OsStr::new("net"), failed);
    assert_eq!(
        out,
        [send("web", Gate::Go)],
        "failed for good: not waited for"
    );
    g.seen(OsStr::new("net"), Seen::UNKNOWN);
    let retrying = Seen {
        retrying: true,
        ..Seen::UNKNOWN
    };
    let out = g.seen(OsStr::new("net"), retrying);
    assert_eq!(
        out,
        [send("web", Gate::Go)],
        "its start failed, the next one waits out a back-off: not waited for"
    );
    g.seen(OsStr::new("net"), READY);
    g.declare(OsStr::new("metrics"), deps(&[], &[], &[]));
    g.seen(OsStr::new("metrics"), READY);
    assert_eq!(g.gate(OsStr::new("web")), Gate::Go);
    // A soft dependency going away does not stop the service.
    let out = g.remove(OsStr::new("metrics"));
    assert!(sends(&out).is_empty(), "{out:?}");
}

#[test]
fn an_edge_added_and_removed_live() {
    let mut g = Graph::default();
    g.declare(OsStr::new("cache"), deps(&[], &[], &[]));
    let (gate, _) = g.declare(OsStr::new("web"), deps(&[], &[], &[]));
    assert_eq!(gate, Gate::Go);
    let (gate, out) = g.declare(OsStr::new("web"), deps(&["cache"], &[], &[]));
    assert_eq!(gate, Gate::Hold);
    assert_eq!(others(out), [send("web", Gate::Hold)]);
    let (gate, out) = g.declare(OsStr::new("web"), deps(&[], &[], &[]));
    assert_eq!(gate, Gate::Go);
    assert_eq!(out, [send("web", Gate::Go)]);
    assert!(!g.has_edges());
}

#[test]
fn a_cycle_is_reported_once_held_and_released_when_broken() {
    let mut g = Graph::default();
    g.declare(OsStr::new("a"), deps(&["b"], &[], &[]));
    g.declare(OsStr::new("c"), deps(&[], &[], &[]));
    let (gate, out) = g.declare(OsStr::new("b"), deps(&[], &[], &["a"]));
    assert_eq!(gate, Gate::Hold);
    let cycles: Vec<&Out> = out.iter().filter(|o| matches!(o, Out::Cycle(_))).collect();
    assert_eq!(
        cycles,
        [&Out::Cycle(vec!["a".into(), "b".into(), "a".into()])]
    );
    assert_eq!(g.gate(OsStr::new("c")), Gate::Go, "the rest is unaffected");
    // A's status changing does not report the cycle again.
    g.seen(OsStr::new("a"), READY);
    let (_, out) = g.declare(OsStr::new("c"), deps(&["a"], &[], &[]));
    assert!(!out.iter().any(|o| matches!(o, Out::Cycle(_))), "{out:?}");
    // Broken: b loses its edge.
    let (gate, out) = g.declare(OsStr::new("b"), deps(&[], &[], &[]));
    assert_eq!(gate, Gate::Go);
    assert!(out.contains(&Out::CycleGone(vec!["a".into(), "b".into(), "a".into()])));
    assert!(out.contains(&send("b", Gate::Go)), "{out:?}");
}

#[test]
fn a_service_that_needs_itself_is_a_cycle() {
    let mut g = Graph::default();
    let (gate, out) = g.declare(OsStr::new("a"), deps(&["a"], &[], &[]));
    assert_eq!(gate, Gate::Hold);
    assert!(out.contains(&Out::Cycle(vec!["a".into(), "a".into()])));
}

#[test]
fn the_reported_path_of_a_longer_cycle_follows_its_edges() {
    let mut g = Graph::default();
    g.declare(OsStr::new("a"), deps(&["c"], &[], &[]));
    g.declare(OsStr::new("c"), deps(&["b"], &[], &[]));
    let (_, out) = g.declare(OsStr::new("b"), deps(&["a", "x"], &[], &[]));
    let path: Vec<String> = ["a", "c", "b", "a"].map(String::from).into();
    assert!(out.contains(&Out::Cycle(path)), "{out:?}");
}

#[test]
fn bad_files_hold_and_are_reported_once() {
    let mut g = Graph::default();
    let bad = || {
        Err(Problem {
            file: "needs/x".into(),
            cause: "dangling symlink to /nowhere".into(),
            transient: false,
        })
    };
    let (gate, out) = g.declare(OsStr::new("a"), bad());
    assert_eq!(gate, Gate::Hold);
    let out = others(out);
    assert_eq!(out.len(), 1);
    assert!(matches!(&out[0], Out::Problem(n, p) if n == "a" && p.file == "needs/x"));
    let (_, out) = g.declare(OsStr::new("a"), bad());
    assert!(out.is_empty(), "{out:?}");
    let (gate, out) = g.declare(OsStr::new("a"), deps(&[], &[], &[]));
    assert_eq!(gate, Gate::Go);
    assert_eq!(out, [send("a", Gate::Go)]);
}

#[test]
fn an_undelivered_gate_is_sent_again_at_the_next_status() {
    let mut g = Graph::default();
    g.declare(OsStr::new("db"), deps(&[], &[], &[]));
    g.declare(OsStr::new("app"), deps(&["db"], &[], &[]));
    let out = g.seen(OsStr::new("db"), READY);
    assert_eq!(out, [send("app", Gate::Go)]);
    g.undelivered(OsStr::new("app"));
    let out = g.seen(OsStr::new("app"), Seen::UNKNOWN);
    assert_eq!(out, [send("app", Gate::Go)]);
    assert!(g.seen(OsStr::new("app"), UP_NOT_READY).is_empty());
}

#[test]
fn an_adopted_member_is_told_its_gate_and_a_plain_one_is_not() {
    let mut g = Graph::default();
    g.declare(OsStr::new("plain"), deps(&[], &[], &[]));
    assert!(g.adopted(OsStr::new("plain")).is_empty());
    g.declare(OsStr::new("app"), deps(&["db"], &[], &[]));
    assert_eq!(g.adopted(OsStr::new("app")), [send("app", Gate::Hold)]);
}

#[test]
fn shutdown_waits_for_dependents_first_except_those_in_a_cycle() {
    let mut g = Graph::default();
    g.declare(OsStr::new("db"), deps(&[], &[], &[]));
    g.declare(OsStr::new("app"), deps(&["db"], &[], &[]));
    g.declare(OsStr::new("web"), deps(&[], &["app"], &[]));
    let gone = |set: &'static [&'static str]| move |n: &OsStr| set.iter().any(|s| n == *s);
    assert!(g.stop_waits(OsStr::new("db"), gone(&[])));
    assert!(g.stop_waits(OsStr::new("app"), gone(&[])));
    assert!(!g.stop_waits(OsStr::new("web"), gone(&[])));
    assert!(!g.stop_waits(OsStr::new("app"), gone(&["web"])));
    assert!(g.stop_waits(OsStr::new("db"), gone(&["web"])));
    assert!(!g.stop_waits(OsStr::new("db"), gone(&["web", "app"])));
    g.declare(OsStr::new("x"), deps(&["y"], &[], &[]));
    g.declare(OsStr::new("y"), deps(&["x"], &[], &[]));
    assert!(!g.stop_waits(OsStr::new("x"), gone(&[])));
}

#[test]
fn a_service_removed_and_back_is_known_again_by_its_dependents() {
    let mut g = Graph::default();
    g.declare(OsStr::new("app"), deps(&["db"], &[], &[]));
    g.declare(OsStr::new("db"), deps(&[], &[], &[]));
    g.seen(OsStr::new("db"), READY);
    assert_eq!(g.gate(OsStr::new("app")), Gate::Go);
    g.remove(OsStr::new("db"));
    assert_eq!(g.gate(OsStr::new("app")), Gate::Hold);
    let (_, out) = g.declare(OsStr::new("db"), deps(&[], &[], &[]));
    assert!(sends(&out).is_empty(), "back but not ready yet: {out:?}");
    assert_eq!(g.seen(OsStr::new("db"), READY), [send("app", Gate::Go)]);
    g.remove(OsStr::new("app"));
    assert!(!g.is_member(OsStr::new("db")));
}

#[test]
fn depth_counts_the_longest_way_down_and_survives_a_cycle() {
    let mut g = Graph::default();
    g.declare(OsStr::new("web"), deps(&["app", "db"], &[], &[]));
    g.declare(OsStr::new("app"), deps(&["db"], &[], &[]));
    g.declare(OsStr::new("db"), deps(&[], &[], &[]));
    assert_eq!(g.depth(OsStr::new("db")), 0);
    assert_eq!(g.depth(OsStr::new("app")), 1);
    assert_eq!(g.depth(OsStr::new("web")), 2);
    assert_eq!(g.depth(OsStr::new("nothing")), 0);
    g.declare(OsStr::new("x"), deps(&["y"], &[], &[]));
    g.declare(OsStr::new("y"), deps(&["x"], &[], &[]));
    assert!(g.depth(OsStr::new("x")) <= 2);
}

#[test]
fn a_transient_problem_holds_without_a_report() {
    let mut g = Graph::default();
    let short = Err(Problem {
        file: "needs".into(),
        cause: "Too many open files".into(),
        transient: true,
    });
    let (gate, out) = g.declare(OsStr::new("a"), short);
    assert_eq!(gate, Gate::Hold);
    assert!(others(out).is_empty());
    let (gate, out) = g.declare(OsStr::new("a"), deps(&[], &[], &[]));
    assert_eq!(gate, Gate::Go);
    assert_eq!(out, [send("a", Gate::Go)]);
}

fn joined(out: &[Out]) -> Vec<String> {
    out.iter()
        .filter_map(|o| match o {
            Out::Joined(n) => Some(n.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_service_joins_the_graph_once_by_its_first_edge_or_its_first_dependent() {
    let mut g = Graph::default();
    let (_, out) = g.declare(OsStr::new("db"), deps(&[], &[], &[]));
    assert!(joined(&out).is_empty(), "no edge, no dependent: {out:?}");
    // A dependent of a service that runs already: both join, the dependency by that edge.
    let (_, out) = g.declare(OsStr::new("app"), deps(&["db", "cache"], &[], &[]));
    assert_eq!(joined(&out), ["db", "app"], "cache does not exist: {out:?}");
    // A second dependent: db takes part already.
    let (_, out) = g.declare(OsStr::new("web"), deps(&[], &["db"], &[]));
    assert_eq!(joined(&out), ["web"]);
    // The missing one appears with dependents waiting: a member from its first read, which
    // watches its status then (not told again).
    let (_, out) = g.declare(OsStr::new("cache"), deps(&[], &[], &[]));
    assert!(joined(&out).is_empty(), "{out:?}");
    assert!(g.is_member(OsStr::new("cache")));
    // Files read again, unchanged: nobody joins again.
    let (_, out) = g.declare(OsStr::new("app"), deps(&["db", "cache"], &[], &[]));
    assert!(joined(&out).is_empty(), "{out:?}");
    // Bad files make a service take part too (it is held, and its status shown).
    let (_, out) = g.declare(
        OsStr::new("odd"),
        Err(Problem {
            file: "type".into(),
            cause: "unknown type".into(),
            transient: false,
        }),
    );
    assert_eq!(joined(&out), ["odd"]);
}

#[test]
fn a_want_or_an_order_that_stops_does_not_stop_a_running_dependent_but_holds_its_next_start() {
    let mut g = Graph::default();
    g.declare(OsStr::new("app"), deps(&[], &[], &[]));
    g.declare(OsStr::new("net"), deps(&[], &[], &[]));
    g.declare(OsStr::new("web"), deps(&[], &["app"], &["net"]));
    g.seen(OsStr::new("app"), READY);
    let out = g.seen(OsStr::new("net"), READY);
    assert_eq!(out, [send("web", Gate::Go)]);
    g.seen(OsStr::new("web"), READY);
    // Both go down, still wanted up (held for a need of their own, or crashed): web runs on.
    assert!(sends(&g.seen(OsStr::new("app"), Seen::UNKNOWN)).is_empty());
    assert!(sends(&g.seen(OsStr::new("net"), UP_NOT_READY)).is_empty());
    assert_eq!(g.gate(OsStr::new("web")), Gate::Go);
    // web's own run ends: its next start waits for them again.
    let out = g.seen(OsStr::new("web"), Seen::UNKNOWN);
    assert_eq!(out, [send("web", Gate::Hold)]);
    g.seen(OsStr::new("app"), READY);
    assert_eq!(g.seen(OsStr::new("net"), READY), [send("web", Gate::Go)]);
}
