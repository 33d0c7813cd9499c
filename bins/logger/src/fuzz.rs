//! Property tests ("fuzzing") of what the logger reads: its input framing (`lines::plan` over
//! any bytes, in any read sizes), the labels of `--show`, its arguments and sizes, and the
//! UTC clock of `-t iso`. The pipe itself is fuzzed with the real binary in
//! tests/tests/fuzz_logger.rs.
//!
//! 256 cases each in `cargo test`; a long run:
//! `PROPTEST_CASES=100000 cargo test -p warden -p logger -p svctl fuzz`.

use crate::args::{self, Command};
use crate::lines::{plan, End, Record};
use crate::show::Converter;
use proptest::prelude::*;
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

fn config() -> ProptestConfig {
    ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Input with many newlines, so that lines of every length occur.
fn input() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(prop_oneof![3 => any::<u8>(), 1 => Just(b'\n')], 0..400)
}

/// Cut points of a read loop: each read brings 1..=64 bytes.
fn reads() -> impl Strategy<Value = Vec<usize>> {
    proptest::collection::vec(1usize..=64, 1..200)
}

/// What the logger writes for `records` (stamps aside).
fn output(batch: &[u8], records: &[Record]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in records {
        out.extend_from_slice(&batch[r.start..r.end]);
        out.extend_from_slice(r.ending.suffix());
    }
    out
}

/// The logger's loop in read mode: bring in a read, write what `plan` covers, keep the rest.
fn framed_in_reads(data: &[u8], cuts: &[usize], max_line: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut batch = Vec::new();
    let mut pos = 0;
    let mut cuts = cuts.iter().cycle();
    while pos < data.len() {
        let n = (*cuts.next().unwrap()).min(data.len() - pos);
        batch.extend_from_slice(&data[pos..pos + n]);
        pos += n;
        let mut records = Vec::new();
        let used = plan(&batch, max_line, false, &mut records);
        out.extend(output(&batch, &records));
        batch.drain(..used);
    }
    let mut records = Vec::new();
    let used = plan(&batch, max_line, true, &mut records);
    assert_eq!(used, batch.len());
    out.extend(output(&batch, &records));
    out
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn fuzz_plan_records_are_well_formed(batch in input(), max_line in 0usize..80, at_eof in any::<bool>()) {
        let mut records = Vec::new();
        let used = plan(&batch, max_line, at_eof, &mut records);
        let max_line = max_line.max(1);
        prop_assert!(used <= batch.len());
        let mut pos = 0;
        for (i, r) in records.iter().enumerate() {
            prop_assert_eq!(r.start, pos, "records are contiguous");
            prop_assert!(r.end > r.start);
            let body = &batch[r.start..r.end];
            match r.ending {
                End::Newline => {
                    prop_assert!(body.ends_with(b"\n"));
                    prop_assert!(!body[..body.len() - 1].contains(&b'\n'));
                    prop_assert!(body.len() <= max_line + 1);
                }
                End::Split => {
                    prop_assert!(!body.contains(&b'\n'));
                    prop_assert_eq!(body.len(), max_line);
                }
                End::Eof => {
                    prop_assert!(at_eof && i == records.len() - 1 && r.end == batch.len());
                    prop_assert!(!body.contains(&b'\n'));
                }
            }
            prop_assert_eq!(r.body_len(), body.len() + r.ending.suffix().len());
            pos = r.end;
        }
        prop_assert_eq!(pos, used);
        let rest = &batch[used..];
        if at_eof {
            prop_assert!(rest.is_empty());
        } else {
            // What is left is the start of a line that may still grow.
            prop_assert!(!rest.contains(&b'\n') && rest.len() <= max_line);
        }
    }

    /// However the bytes arrive, the output is the same, and it is the input with only the
    /// split markers and a final newline added.
    #[test]
    fn fuzz_plan_is_independent_of_read_sizes(data in input(), cuts in reads(), max_line in 1usize..80) {
        let whole = framed_in_reads(&data, &[data.len().max(1)], max_line);
        prop_assert_eq!(&framed_in_reads(&data, &cuts, max_line), &whole);
        let mut back = Vec::new();
        for line in whole.split_inclusive(|&b| b == b'\n') {
            back.extend_from_slice(line.strip_suffix(b"[...]\n").unwrap_or(line));
        }
        if !data.ends_with(b"\n") && !data.is_empty() && back.ends_with(b"\n") {
            back.pop();
        }
        prop_assert_eq!(back, data);
    }

    #[test]
    fn fuzz_find_newline(bytes in input()) {
        prop_assert_eq!(crate::lines::find_newline(&bytes), bytes.iter().position(|&b| b == b'\n'));
    }

    /// `--show`: labels become local time whatever their value, other lines pass unchanged,
    /// and reads of any size give the same text.
    #[test]
    fn fuzz_show_converter(
        lines in proptest::collection::vec(
            prop_oneof![
                "@[0-9a-f]{24} [ -~]{0,20}\n",
                "@[0-9a-fA-F]{20,26}[ -~]{0,5}\n",
                "[ -~]{0,40}\n",
            ],
            0..20,
        ),
        tail in proptest::collection::vec(any::<u8>(), 0..40),
        cuts in reads(),
    ) {
        let mut data: Vec<u8> = lines.concat().into_bytes();
        data.extend_from_slice(&tail);
        let convert = |cuts: &[usize]| {
            let mut out = Vec::new();
            let mut c = Converter::default();
            let mut pos = 0;
            let mut cuts = cuts.iter().cycle();
            while pos < data.len() {
                let n = (*cuts.next().unwrap()).min(data.len() - pos);
                c.feed(&data[pos..pos + n], &mut out).unwrap();
                pos += n;
            }
            c.finish(&mut out).unwrap();
            out
        };
        let whole = convert(&[data.len().max(1)]);
        prop_assert_eq!(&convert(&cuts), &whole);
        let in_lines = data.split_inclusive(|&b| b == b'\n').count();
        prop_assert_eq!(whole.split_inclusive(|&b| b == b'\n').count(), in_lines);
        for (line, shown) in data.split_inclusive(|&b| b == b'\n').zip(whole.split_inclusive(|&b| b == b'\n')) {
            let label = line.get(..warden::tai::LABEL_LEN).and_then(warden::Tai64N::parse_label);
            match label {
                None => prop_assert_eq!(shown, line),
                Some(_) => prop_assert!(shown.ends_with(&line[warden::tai::LABEL_LEN..])),
            }
        }
    }

    #[test]
    fn fuzz_args_never_panic(words in proptest::collection::vec(
        prop_oneof![
            Just(b"-s".to_vec()), Just(b"-n".to_vec()), Just(b"-t".to_vec()), Just(b"-f".to_vec()),
            Just(b"--show".to_vec()), Just(b"--size=".to_vec()), Just(b"-".to_vec()),
            Just(b"--".to_vec()), Just(b"iso".to_vec()), Just(b"1Mi".to_vec()),
            proptest::collection::vec(any::<u8>(), 0..12),
        ],
        0..8,
    )) {
        let args: Vec<OsString> = words.into_iter().map(OsString::from_vec).collect();
        match args::parse(args) {
            Ok(Command::Write(w)) => prop_assert!(w.limit >= args::MIN_SIZE),
            Ok(_) => {}
            Err(e) => prop_assert!(!e.is_empty()),
        }
    }

    #[test]
    fn fuzz_sizes(text in "\\PC{0,12}", n in 0u64..1 << 40, unit in 0usize..10) {
        let _ = args::parse_size(&text);
        let units: [(&str, u64); 10] = [
            ("", 1), ("k", 1000), ("K", 1000), ("M", 1_000_000), ("Ki", 1024), ("KiB", 1024),
            ("Mi", 1 << 20), ("MiB", 1 << 20), ("G", 1_000_000_000), ("Gi", 1 << 30),
        ];
        let (suffix, factor) = units[unit];
        prop_assert_eq!(args::parse_size(&format!("{n}{suffix}")), n.checked_mul(factor));
        prop_assert_eq!(args::parse_size(&format!("{n}x{suffix}")), None);
    }

    #[test]
    fn fuzz_iso_clock(unix in any::<i64>(), nanos in 0u32..1_000_000_000) {
        let c = crate::clock::utc(unix);
        prop_assert!((1..=12).contains(&c.month) && (1..=31).contains(&c.day));
        prop_assert!(c.hour < 24 && c.minute < 60 && c.second < 60);
        let _ = crate::clock::format_iso_utc(unix, nanos);
        let mut s = String::new();
        crate::clock::format_local(&mut s, unix, nanos);
    }
}
