//! Property test of the logger's input framing through a real pipe: any bytes, written in
//! writes of any size, come out in `current` as they went in (with `-t none`: no stamp),
//! only a newline added after an unterminated last line.
//!
//! 64 cases in `cargo test` (each starts a logger); a long run:
//! `PROPTEST_CASES=5000 cargo test -p warden-tests --test fuzz_logger`.

use proptest::prelude::*;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;
use warden_tests::bin;

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn fuzz_logger_pipe_framing(
        data in proptest::collection::vec(prop_oneof![6 => any::<u8>(), 1 => Just(b'\n')], 0..20_000),
        cuts in proptest::collection::vec(1usize..4096, 1..50),
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("log");
        let mut child = Command::new(bin("logger"))
            .args(["-t", "none"])
            .arg(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let mut pos = 0;
        for cut in cuts.iter().cycle() {
            if pos >= data.len() {
                break;
            }
            let n = (*cut).min(data.len() - pos);
            stdin.write_all(&data[pos..pos + n]).unwrap();
            pos += n;
        }
        drop(stdin);
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("logger did not exit at end of input");
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        let mut err = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
        prop_assert!(status.success(), "logger: {status}: {err}");
        let mut expected = data.clone();
        if !expected.is_empty() && !expected.ends_with(b"\n") {
            expected.push(b'\n');
        }
        let got = std::fs::read(dir.join("current")).unwrap_or_default();
        prop_assert!(got == expected, "{} bytes in, {} out; stderr: {err}", data.len(), got.len());
    }
}
