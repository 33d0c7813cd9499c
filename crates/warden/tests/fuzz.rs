//! Property tests ("fuzzing") of every parser in the library that reads what users or other
//! programs write: the status record and `supervise/warden`, control bytes, TAI64N, signal
//! names, service-dir settings and durations, `env/` files.
//!
//! Each property runs 256 cases in `cargo test`; for a long run:
//! `PROPTEST_CASES=100000 cargo test -p warden -p logger -p svctl fuzz` (a debug build:
//! overflow checks on).

use proptest::prelude::*;
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use warden::control::Command;
use warden::service::{self, EnvVar, Settings};
use warden::status::{Exit, Extended, RunState, Status, StatusError, Want};
use warden::Tai64N;

fn any_stamp() -> impl Strategy<Value = Tai64N> {
    (any::<u64>(), 0u32..1_000_000_000).prop_map(|(secs, nanos)| Tai64N { secs, nanos })
}

/// Stamps of this era and a few centuries around it, where every conversion is exact.
fn sane_stamp() -> impl Strategy<Value = Tai64N> {
    (-(1i64 << 40)..(1i64 << 40), 0u32..1_000_000_000)
        .prop_map(|(unix, nanos)| Tai64N::from_system_time(system_time(unix, nanos)))
}

fn system_time(unix: i64, nanos: u32) -> SystemTime {
    let base = if unix >= 0 {
        UNIX_EPOCH + Duration::from_secs(unix as u64)
    } else {
        UNIX_EPOCH - Duration::from_secs(unix.unsigned_abs())
    };
    base + Duration::from_nanos(u64::from(nanos))
}

fn any_status() -> impl Strategy<Value = Status> {
    (
        any_stamp(),
        any::<u32>(),
        any::<bool>(),
        prop_oneof![Just(Want::Up), Just(Want::Down), Just(Want::Exit)],
        any::<bool>(),
        prop_oneof![
            Just(RunState::Down),
            Just(RunState::Run),
            Just(RunState::Finish)
        ],
    )
        .prop_map(|(stamp, pid, paused, want, term_sent, state)| Status {
            stamp,
            pid,
            paused,
            want,
            term_sent,
            state,
        })
}

/// Text a supervisor may put in `supervise/warden` (a cgroup path, an error message): any
/// characters, a carriage return at the end now and then.
fn any_text() -> impl Strategy<Value = String> {
    (any::<String>(), any::<bool>()).prop_map(|(s, cr)| if cr { s + "\r" } else { s })
}

fn any_exit() -> impl Strategy<Value = Exit> {
    prop_oneof![
        any::<i32>().prop_map(Exit::Code),
        any::<i32>().prop_map(Exit::Signal)
    ]
}

fn any_extended() -> impl Strategy<Value = Extended> {
    let settings = proptest::collection::vec(("[a-z.]{1,12}", any_text()), 0..4);
    (
        any_extended_runit_part(),
        proptest::option::of(any_text()),
        any::<bool>(),
        settings,
        (
            any::<bool>(),
            any::<bool>(),
            proptest::option::of(any_text()),
        ),
    )
        .prop_map(
            |(x, last_exit_oom, failed, settings, (held, oneshot, ready_by))| Extended {
                last_exit_oom,
                failed,
                settings,
                held,
                oneshot,
                ready_by,
                ..x
            },
        )
}

fn any_extended_runit_part() -> impl Strategy<Value = Extended> {
    (
        any::<u64>(),
        proptest::option::of(any_exit()),
        proptest::option::of(any_stamp()),
        proptest::option::of(any_stamp()),
        proptest::option::of(any_stamp()),
        proptest::option::of(any::<u32>()),
        proptest::option::of(any_text()),
        proptest::option::of(any::<u32>()),
        proptest::option::of(any_text()),
    )
        .prop_map(
            |(
                restarts,
                last_exit,
                last_exit_at,
                ready_at,
                next_start_at,
                pgid,
                cgroup,
                supervisor_pid,
                last_error,
            )| Extended {
                restarts,
                last_exit,
                last_exit_at,
                ready_at,
                next_start_at,
                pgid,
                cgroup,
                supervisor_pid,
                last_error,
                ..Extended::default()
            },
        )
}

/// Everything a client does with a decoded stamp: none of it may panic.
fn use_stamp(t: Tai64N) {
    let now = Tai64N::now();
    let _ = t.to_system_time();
    let _ = t.unix_secs();
    let _ = now.saturating_since(t);
    let _ = t.saturating_since(now);
    let _ = SystemTime::now().duration_since(t.to_system_time());
    let _ = t.to_string();
}

/// Cases from `PROPTEST_CASES` (256 by default); no regression files in the source tree:
/// each crash found is a named unit test beside the code it crashed.
fn config() -> ProptestConfig {
    ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn fuzz_status_decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
        match Status::decode(&bytes) {
            Ok(status) => {
                prop_assert!(bytes.len() >= 18);
                prop_assert_eq!(status.pid, u32::from_le_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]));
                let _ = status.stat_text();
                let _ = status.pid_text();
                use_stamp(status.stamp);
                // What a reader decodes, a writer writes back the same (flags normalised).
                if bytes.len() >= 20 {
                    let again = status.encode();
                    prop_assert_eq!(&again[..16], &bytes[..16]);
                    prop_assert_eq!(again[16], u8::from(bytes[16] != 0));
                    prop_assert_eq!(again[17], if bytes[17] == b'u' { b'u' } else { b'd' });
                    prop_assert_eq!(again[18], u8::from(bytes[18] != 0));
                    prop_assert_eq!(again[19], bytes[19]);
                }
            }
            Err(StatusError::Truncated(n)) => prop_assert!(n == bytes.len() && n < 18),
            Err(StatusError::BadTimestamp) => {
                let nanos = u32::from_be_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
                prop_assert!(nanos >= 1_000_000_000);
            }
            Err(StatusError::BadState(b)) => prop_assert!(bytes.len() >= 20 && b == bytes[19] && b > 2),
        }
    }

    #[test]
    fn fuzz_status_round_trip(status in any_status()) {
        let bytes = status.encode();
        let back = Status::decode(&bytes).unwrap();
        let want = if status.want == Want::Exit { Want::Down } else { status.want };
        prop_assert_eq!(back, Status { want, ..status });
        // daemontools reads the first 18 bytes: same stamp, pid, flags.
        let dt = Status::decode(&bytes[..18]).unwrap();
        prop_assert_eq!((dt.stamp, dt.pid, dt.paused, dt.want), (status.stamp, status.pid, status.paused, want));
        prop_assert_eq!(dt.state == RunState::Down, status.pid == 0);
    }

    #[test]
    fn fuzz_extended_decode_never_panics(text in any::<String>()) {
        let x = Extended::decode(&text);
        for t in [x.last_exit_at, x.ready_at, x.next_start_at].into_iter().flatten() {
            use_stamp(t);
        }
        let _ = x.last_exit.map(|e| e.to_string());
        // Whatever was read, written again, reads the same.
        prop_assert_eq!(Extended::decode(&x.encode()), x);
    }

    #[test]
    fn fuzz_extended_decode_of_junk_lines(lines in proptest::collection::vec(
        (prop_oneof![
            Just("restarts"), Just("last_exit"), Just("last_exit_at"), Just("ready_at"),
            Just("next_start_at"), Just("pgid"), Just("supervisor_pid"), Just("cgroup"),
            Just("last_error"), Just("last_exit_oom"), Just("failed"), Just("setting"),
            Just("held"), Just("oneshot"), Just("ready_by"), Just("future_key")
        ], "[ -~]{0,40}"), 0..12)) {
        let text: String = lines.iter().map(|(k, v)| format!("{k} {v}\n")).collect();
        let x = Extended::decode(&text);
        prop_assert_eq!(Extended::decode(&x.encode()), x);
    }

    #[test]
    fn fuzz_extended_round_trip(x in any_extended()) {
        // The texts are written on one line: line breaks become blanks, nothing else changes.
        let flat = |s: &Option<String>| s.as_ref().map(|s| s.replace(['\n', '\r'], " "));
        let settings = x.settings.iter().map(|(n, v)| (n.clone(), v.replace(['\n', '\r'], " "))).collect();
        let expected = Extended {
            cgroup: flat(&x.cgroup),
            last_error: flat(&x.last_error),
            last_exit_oom: flat(&x.last_exit_oom),
            ready_by: flat(&x.ready_by),
            settings,
            ..x.clone()
        };
        prop_assert_eq!(Extended::decode(&x.encode()), expected);
    }

    #[test]
    fn fuzz_control_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let cmds: Vec<Command> = Command::parse_all(&bytes).collect();
        let kept: Vec<u8> = bytes.iter().copied().filter(|b| b"udoxpchaiq12tkeHG".contains(b)).collect();
        prop_assert_eq!(cmds.len(), kept.len());
        for (c, b) in cmds.iter().zip(&kept) {
            prop_assert_eq!(c.byte(), *b);
            prop_assert_eq!(Command::from_byte(*b), Some(*c));
        }
    }

    #[test]
    fn fuzz_tai_label_parse_never_panics(text in proptest::collection::vec(any::<u8>(), 0..30)) {
        if let Some(t) = Tai64N::parse_label(&text) {
            let hex = text.strip_prefix(b"@").unwrap_or(&text);
            prop_assert_eq!(hex.len(), 24);
            prop_assert!(hex.iter().all(u8::is_ascii_hexdigit));
            prop_assert!(t.nanos < 1_000_000_000);
            prop_assert_eq!(t.label().to_vec(), [b"@".as_slice(), &hex.to_ascii_lowercase()].concat());
            use_stamp(t);
        }
    }

    #[test]
    fn fuzz_tai_hex_labels(hex in "@?[0-9a-fA-F]{24}") {
        let t = Tai64N::parse_label(hex.as_bytes());
        let digits = hex.trim_start_matches('@');
        let nanos = u32::from_str_radix(&digits[16..], 16).unwrap();
        prop_assert_eq!(t.is_some(), nanos < 1_000_000_000);
        if let Some(t) = t {
            prop_assert_eq!(t.secs, u64::from_str_radix(&digits[..16], 16).unwrap());
            use_stamp(t);
        }
    }

    #[test]
    fn fuzz_tai_bytes(bytes in proptest::array::uniform12(any::<u8>())) {
        match Tai64N::from_bytes(&bytes) {
            Some(t) => {
                prop_assert_eq!(t.to_bytes(), bytes);
                prop_assert_eq!(Tai64N::parse_label(&t.label()), Some(t));
                use_stamp(t);
            }
            None => prop_assert!(u32::from_be_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) >= 1_000_000_000),
        }
    }

    #[test]
    fn fuzz_tai_round_trips(t in any_stamp()) {
        prop_assert_eq!(Tai64N::from_bytes(&t.to_bytes()), Some(t));
        prop_assert_eq!(Tai64N::parse_label(&t.label()), Some(t));
        use_stamp(t);
    }

    #[test]
    fn fuzz_tai_system_time_round_trip(t in sane_stamp()) {
        prop_assert_eq!(Tai64N::from_system_time(t.to_system_time()), t);
        prop_assert_eq!(t.saturating_since(t), Duration::ZERO);
    }

    #[test]
    fn fuzz_signal_names(text in any::<String>(), n in any::<i32>()) {
        let _ = warden::signal::parse(&text);
        let _ = warden::signal::name_or_number(n);
        if let Some(name) = warden::signal::name(n) {
            prop_assert_eq!(warden::signal::parse(name).map(|s| s.as_raw()), Some(n));
            let sig = format!(" sig{} ", name.to_ascii_lowercase());
            prop_assert_eq!(warden::signal::parse(&sig).map(|s| s.as_raw()), Some(n));
        }
    }

    #[test]
    fn fuzz_duration_parse_never_panics(text in any::<String>()) {
        let _ = service::parse_duration(&text);
    }

    #[test]
    fn fuzz_duration_round_trips(ms in any::<u64>(), secs in any::<u32>(), nanos in 0u32..1_000_000_000) {
        prop_assert_eq!(service::parse_duration(&format!(" {ms}\n")), Ok(Duration::from_millis(ms)));
        // What humantime writes (svctl status shows uptimes that way), it reads back.
        let d = Duration::new(u64::from(secs), nanos);
        let text = humantime::format_duration(d).to_string();
        prop_assert_eq!(service::parse_duration(&text), Ok(d));
    }

    #[test]
    fn fuzz_settings_files(
        down_signal in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..24)),
        timeout_kill in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..24)),
        timeout_finish in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..24)),
        notification_fd in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..24)),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let files = [
            (service::DOWN_SIGNAL, &down_signal),
            (service::TIMEOUT_KILL, &timeout_kill),
            (service::TIMEOUT_FINISH, &timeout_finish),
            (service::NOTIFICATION_FD, &notification_fd),
        ];
        for (name, content) in files {
            if let Some(bytes) = content {
                std::fs::write(dir.path().join(name), bytes).unwrap();
            }
        }
        let (settings, errors) = Settings::read(dir.path());
        // Every error names one of the files given, and that setting keeps its default.
        let defaults = Settings::default();
        for e in &errors {
            let name = e.file.file_name().unwrap().to_str().unwrap();
            prop_assert!(files.iter().any(|(n, c)| *n == name && c.is_some()), "{}", e);
            prop_assert!(e.to_string().starts_with(&e.file.display().to_string()));
            match name {
                service::DOWN_SIGNAL => prop_assert_eq!(settings.down_signal, defaults.down_signal),
                service::TIMEOUT_KILL => prop_assert_eq!(settings.timeout_kill, defaults.timeout_kill),
                service::TIMEOUT_FINISH => prop_assert_eq!(settings.timeout_finish, defaults.timeout_finish),
                service::NOTIFICATION_FD => prop_assert_eq!(settings.notification_fd, defaults.notification_fd),
                other => prop_assert!(false, "unexpected file {}", other),
            }
        }
        if let Some(fd) = settings.notification_fd {
            prop_assert!(fd >= 3);
        }
    }

    #[test]
    fn fuzz_settings_values_are_read(ms in any::<u32>(), fd in 3i32..1024, sig in 1i32..32) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(service::TIMEOUT_KILL), format!("{ms}\nignored")).unwrap();
        std::fs::write(dir.path().join(service::TIMEOUT_FINISH), format!("  {ms}ms  ")).unwrap();
        std::fs::write(dir.path().join(service::NOTIFICATION_FD), format!("{fd}\n")).unwrap();
        std::fs::write(dir.path().join(service::DOWN_SIGNAL), format!("{sig}\n")).unwrap();
        let (settings, errors) = Settings::read(dir.path());
        let signal_ok = rustix::process::Signal::from_named_raw(sig).is_some();
        prop_assert_eq!(errors.len(), usize::from(!signal_ok), "{:?}", errors);
        let d = Duration::from_millis(u64::from(ms));
        prop_assert_eq!(settings.timeout_kill, Some(d).filter(|d| !d.is_zero()));
        prop_assert_eq!(settings.timeout_finish, d);
        prop_assert_eq!(settings.notification_fd, Some(fd));
        if signal_ok {
            prop_assert_eq!(settings.down_signal.as_raw(), sig);
        }
    }

    #[test]
    fn fuzz_envdir_files(files in proptest::collection::btree_map(
        "[A-Za-z_][A-Za-z0-9_]{0,8}",
        proptest::collection::vec(any::<u8>(), 0..200),
        0..6,
    )) {
        let dir = tempfile::tempdir().unwrap();
        for (name, content) in &files {
            std::fs::write(dir.path().join(name), content).unwrap();
        }
        let vars = service::read_envdir(dir.path()).unwrap();
        // envdir's rules: first line, trailing blanks cut, NUL becomes newline, empty unsets.
        let expected: Vec<EnvVar> = files
            .iter()
            .map(|(name, content)| {
                let name = OsString::from(name);
                if content.is_empty() {
                    return EnvVar::Unset(name);
                }
                let mut line: Vec<u8> = content.split(|&b| b == b'\n').next().unwrap().to_vec();
                while matches!(line.last(), Some(b' ' | b'\t')) {
                    line.pop();
                }
                let line = line.into_iter().map(|b| if b == 0 { b'\n' } else { b }).collect();
                EnvVar::Set(name, OsString::from_vec(line))
            })
            .collect();
        prop_assert_eq!(vars, expected);
    }
}

/// Issue 17's service-dir files: `user`, `limits`, `nice`, `umask`, `restart-limit` and the
/// cgroup values, with the passwd and group databases.
mod runas_files {
    use super::config;
    use proptest::prelude::*;
    use warden::runas::{self, Rlimit, UNLIMITED};

    fn any_limit() -> impl Strategy<Value = Rlimit> {
        let value = prop_oneof![Just(UNLIMITED), 0u64..u64::MAX];
        (0..runas::RESOURCES.len(), value.clone(), value).prop_map(|(at, a, b)| {
            let (name, resource) = runas::RESOURCES[at];
            Rlimit {
                name,
                resource,
                soft: a.min(b),
                hard: a.max(b),
            }
        })
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn fuzz_runas_parsers_never_panic(text in any::<String>(), db in any::<String>()) {
            let _ = runas::parse_limits(&text);
            let _ = runas::parse_limit_value(&text);
            let _ = runas::parse_nice(&text);
            let _ = runas::parse_umask(&text);
            let _ = runas::parse_restart_limit(&text);
            let _ = runas::parse_cgroup_value(&text);
            if let Ok(spec) = runas::parse_user(&text) {
                let _ = runas::resolve_user(&spec, &db, &db);
            }
            for file in runas::CGROUP_FILES {
                let _ = runas::v1_equivalent(file, &text);
            }
        }

        #[test]
        fn fuzz_limits_round_trip(limits in proptest::collection::vec(any_limit(), 0..8)) {
            // Written as `limits` shows them, read back the same; a later line for a resource wins.
            let text: String = limits.iter().map(|l| runas::limit_text(l) + "\n").collect();
            let mut expected: Vec<Rlimit> = Vec::new();
            for l in &limits {
                match expected.iter_mut().find(|e| e.resource == l.resource) {
                    Some(e) => *e = *l,
                    None => expected.push(*l),
                }
            }
            prop_assert_eq!(runas::parse_limits(&text), Ok(expected));
        }

        #[test]
        fn fuzz_user_resolves_to_its_own_entry(
            names in proptest::collection::vec("[a-z][a-z0-9_-]{0,8}", 1..6),
            pick in any::<prop::sample::Index>(),
        ) {
            let mut names = names;
            names.sort();
            names.dedup();
            let passwd: String = names.iter().enumerate()
                .map(|(i, n)| format!("{n}:x:{}:{}:gecos:/home/{n}:/bin/sh\n", 1000 + i, 2000 + i))
                .collect();
            let group: String = names.iter().enumerate()
                .map(|(i, n)| format!("g{n}:x:{}:{}\n", 3000 + i, names.join(",")))
                .collect();
            let at = pick.index(names.len());
            let spec = runas::parse_user(&names[at]).unwrap();
            let a = runas::resolve_user(&spec, &passwd, &group).unwrap();
            prop_assert_eq!(a.uid, 1000 + at as u32);
            prop_assert_eq!(a.gid, 2000 + at as u32);
            prop_assert_eq!(a.home, format!("/home/{}", names[at]));
            // Its primary group and every group listing it.
            prop_assert_eq!(a.groups.len(), names.len() + 1);
        }

        #[test]
        fn fuzz_numbers_in_range_parse(nice in -20i32..=19, mask in 0u32..=0o777, count in 1u32..1000, ms in 1u64..1_000_000) {
            prop_assert_eq!(runas::parse_nice(&format!("{nice}\n")), Ok(nice));
            prop_assert_eq!(runas::parse_umask(&format!("{mask:04o}\n")), Ok(mask));
            let limit = runas::parse_restart_limit(&format!("{count} {ms}ms")).unwrap();
            prop_assert_eq!((limit.count, limit.within.as_millis() as u64), (count, ms));
        }
    }
}
