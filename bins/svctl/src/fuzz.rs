//! Property tests ("fuzzing") of svctl's command line: any words (UTF-8 or not), under any
//! program name, parse to an invocation that keeps the rules or to an error, never a panic;
//! every well-formed command line parses to what it says.
//!
//! 256 cases each in `cargo test`; a long run:
//! `PROPTEST_CASES=100000 cargo test -p warden -p logger -p svctl fuzz`.

use crate::cli::{self, Action, VERBS};
use proptest::prelude::*;
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::time::Duration;

fn config() -> ProptestConfig {
    ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Words an svctl command line is made of, and junk.
fn word() -> impl Strategy<Value = Vec<u8>> {
    let known: Vec<&'static str> = VERBS
        .iter()
        .map(|v| v.name)
        .chain([
            "start",
            "stop",
            "alrm",
            "status",
            "check",
            "log",
            "rescan",
            "shutdown",
            "poweroff",
            "reboot",
            "halt",
            "-d",
            "--scandir",
            "-w",
            "--wait",
            "--wait=",
            "-v",
            "--json",
            "-n",
            "--lines=",
            "-f",
            "-h",
            "-V",
            "--",
            "-",
            "-wv",
            "-n3",
            "5",
            "1.5",
            "500ms",
            "nan",
            "inf",
            "-1",
            "1e400",
            "x",
            "/abs",
            "./rel",
            "name/",
        ])
        .collect();
    prop_oneof![
        3 => proptest::sample::select(known).prop_map(|w| w.as_bytes().to_vec()),
        1 => proptest::collection::vec(any::<u8>(), 0..10),
        1 => "\\PC{0,10}".prop_map(String::into_bytes),
    ]
}

fn program() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => Just("svctl".to_owned()),
        1 => proptest::sample::select(vec!["poweroff", "reboot", "halt", "sv"]).prop_map(str::to_owned),
        1 => "\\PC{0,8}",
    ]
}

/// A service name as users write them (never an option).
fn service() -> impl Strategy<Value = String> {
    "[a-z0-9][a-z0-9._@/-]{0,15}"
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn fuzz_cli_never_panics(program in program(), words in proptest::collection::vec(word(), 0..8)) {
        let args: Vec<OsString> = words.into_iter().map(OsString::from_vec).collect();
        match cli::parse(&program, args) {
            Err(e) => prop_assert!(!e.is_empty()),
            Ok(inv) => match inv.action {
                Action::Control(_) | Action::Check => prop_assert!(!inv.services.is_empty()),
                Action::Deps => {
                    prop_assert!(!inv.services.is_empty());
                    prop_assert!(inv.wait.is_none());
                }
                Action::Log(_) => prop_assert_eq!(inv.services.len(), 1),
                Action::Svscan(_) | Action::Init(_) => {
                    prop_assert!(inv.services.is_empty());
                    prop_assert!(matches!(inv.action, Action::Svscan(_)) || inv.wait.is_none());
                }
                Action::Status { .. } | Action::Metrics => prop_assert!(inv.wait.is_none()),
                Action::Help | Action::Version => {}
            },
        }
    }

    #[test]
    fn fuzz_cli_well_formed_commands(
        verb in 0..VERBS.len(),
        services in proptest::collection::vec(service(), 1..5),
        wait in proptest::option::of(0u32..100_000),
        wait_first in any::<bool>(),
    ) {
        let verb = VERBS[verb];
        let mut args: Vec<String> = vec![verb.name.to_owned()];
        args.extend(services.iter().cloned());
        if let Some(secs) = wait {
            let opt = ["-w".to_owned(), secs.to_string()];
            if wait_first {
                args.splice(0..0, opt);
            } else {
                args.extend(opt);
            }
        }
        let inv = cli::parse("svctl", args.iter().map(OsString::from).collect()).unwrap();
        prop_assert!(matches!(inv.action, Action::Control(v) if v == verb));
        prop_assert_eq!(inv.services, services);
        prop_assert_eq!(inv.wait, wait.map(|s| Duration::from_secs(u64::from(s))));
    }

    #[test]
    fn fuzz_wait_durations(text in "\\PC{0,16}", secs in any::<u32>(), ms in 0u32..1000, d in any::<u64>()) {
        let _ = cli::parse_wait(&text);
        prop_assert_eq!(cli::parse_wait(&secs.to_string()), Ok(Duration::from_secs(u64::from(secs))));
        let tenths = format!("{secs}.{}", ms / 100);
        prop_assert_eq!(
            cli::parse_wait(&tenths),
            Ok(Duration::from_secs_f64(tenths.parse::<f64>().unwrap()))
        );
        // What `svctl status` prints (humantime), -w reads back.
        let d = Duration::from_millis(d % (1 << 40));
        prop_assert_eq!(cli::parse_wait(&humantime::format_duration(d).to_string()), Ok(d));
        for bad in ["-1", "nan", "-inf", "1e400", "", "soon"] {
            prop_assert!(cli::parse_wait(bad).is_err(), "{} accepted", bad);
        }
    }
}
