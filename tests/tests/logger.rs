//! Process tests of `logger` (issue 4): the real binary on real pipes, killed, stopped, starved
//! of disk space and restarted on half-rotated directories.

use std::fs::File;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use warden_tests::{bin, require, run, wait_until, Spawned};

const DEADLINE: Duration = Duration::from_secs(30);

/// A pipe whose both ends the test holds, as svscan does; close-on-exec so that loggers of
/// other tests running in parallel never inherit a write end (and never see EOF late).
fn pipe() -> (OwnedFd, OwnedFd) {
    rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap()
}

/// A logger on `stdin` writing to `dir`, its stderr in `dir`'s parent as `<name>.err`.
fn logger(stdin: Stdio, dir: &Path, args: &[&str]) -> Spawned {
    let err = File::create(stderr_path(dir)).unwrap();
    Spawned::new(
        Command::new(bin("logger"))
            .args(args)
            .arg(dir)
            .stdin(stdin)
            .stdout(Stdio::null())
            .stderr(err),
    )
}

fn stderr_path(dir: &Path) -> PathBuf {
    let name = dir.file_name().unwrap().to_string_lossy();
    dir.with_file_name(format!("{name}.err"))
}

fn stderr_of(dir: &Path) -> String {
    std::fs::read_to_string(stderr_path(dir)).unwrap_or_default()
}

fn on_pipe(read: &OwnedFd) -> Stdio {
    Stdio::from(read.try_clone().unwrap())
}

fn archives(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with('@') && n.ends_with(".s"))
        .collect();
    names.sort();
    names
}

/// Every file's bytes in order: archives oldest first, then `previous` (rotated, not yet
/// archived: a logger killed mid-rotation leaves it for the next one), then `current`.
fn log_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = archives(dir)
        .into_iter()
        .map(|n| {
            let bytes = std::fs::read(dir.join(&n)).unwrap();
            (n, bytes)
        })
        .collect();
    for name in ["previous", "current"] {
        if let Ok(bytes) = std::fs::read(dir.join(name)) {
            files.push((name.into(), bytes));
        }
    }
    files
}

fn split_lines(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut lines: Vec<Vec<u8>> = bytes.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
    if lines.last().is_some_and(Vec::is_empty) {
        lines.pop();
    }
    lines
}

/// The lines of the whole log, labels removed; panics on a line without a valid label.
fn logged_lines(dir: &Path) -> Vec<Vec<u8>> {
    let mut all = Vec::new();
    for (_, bytes) in log_files(dir) {
        for line in split_lines(&bytes) {
            all.push(strip_label(&line).unwrap_or_else(|| {
                panic!("line without label: {:?}", String::from_utf8_lossy(&line))
            }));
        }
    }
    all
}

/// The lines of the whole log that carry a valid label: a logger killed in the middle of a
/// write leaves a torn fragment, whose content is written again whole by the next logger.
fn logged_lines_lenient(dir: &Path) -> Vec<Vec<u8>> {
    log_files(dir)
        .iter()
        .flat_map(|(_, bytes)| split_lines(bytes))
        .filter_map(|line| strip_label(&line))
        .collect()
}

fn strip_label(line: &[u8]) -> Option<Vec<u8>> {
    let label = line.get(..25)?;
    warden_tests::warden::Tai64N::parse_label(label)?;
    (line.get(25) == Some(&b' ')).then(|| line[26..].to_vec())
}

fn numbered(n: u64) -> Vec<u8> {
    format!("line {n:09} {}\n", "x".repeat((n % 53) as usize)).into_bytes()
}

/// The number of a well-formed numbered line, or None for anything else (a torn fragment).
fn number_of(content: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(content).ok()?;
    let rest = text.strip_prefix("line ")?;
    let (digits, pad) = rest.split_once(' ')?;
    let n: u64 = digits.parse().ok()?;
    (digits.len() == 9 && pad.len() == (n % 53) as usize && pad.bytes().all(|b| b == b'x'))
        .then_some(n)
}

/// Writes numbered lines at full speed, in chunks that cut lines anywhere, until told to
/// stop; returns how many lines were written whole.
fn start_writer(write: &OwnedFd, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    let mut out = File::from(write.try_clone().unwrap());
    std::thread::spawn(move || {
        let mut n = 0u64;
        let mut chunk = Vec::with_capacity(8192);
        while !stop.load(Ordering::Relaxed) {
            chunk.clear();
            while chunk.len() < 7000 {
                chunk.extend_from_slice(&numbered(n));
                n += 1;
            }
            // Two writes per chunk, cut mid-line, so the reader sees partial lines.
            let (a, b) = chunk.split_at(3001);
            out.write_all(a).unwrap();
            out.write_all(b).unwrap();
        }
        n
    })
}

fn kill(spawned: &Spawned, signal: rustix::process::Signal) {
    let pid = rustix::process::Pid::from_raw(spawned.pid()).unwrap();
    rustix::process::kill_process(pid, signal).unwrap();
}

fn total_size(dir: &Path) -> usize {
    log_files(dir).iter().map(|(_, b)| b.len()).sum()
}

#[test]
fn sigkill_then_second_logger_on_the_same_pipe_loses_no_line() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let (read, write) = pipe();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = start_writer(&write, Arc::clone(&stop));
    let args = ["-s", "1M", "-n", "100000"];

    // Several loggers in turn, each killed while the writer goes full speed.
    for round in 0..5 {
        let before = total_size(&dir);
        let mut victim = logger(on_pipe(&read), &dir, &args);
        wait_until(&format!("logger {round} to write 1 MB"), DEADLINE, || {
            total_size(&dir) > before + 1_000_000
        });
        kill(&victim, rustix::process::Signal::KILL);
        victim.wait_exit(DEADLINE);
    }
    let before = total_size(&dir);
    let mut second = logger(on_pipe(&read), &dir, &args);
    wait_until("the second logger to write 2 MB more", DEADLINE, || {
        total_size(&dir) > before + 2_000_000
    });
    stop.store(true, Ordering::Relaxed);
    let sent = writer.join().unwrap();
    drop(write);
    drop(read);
    assert!(second.wait_exit(DEADLINE).success(), "{}", stderr_of(&dir));

    let mut seen = vec![false; sent as usize];
    for content in logged_lines_lenient(&dir) {
        if let Some(n) = number_of(&content) {
            seen[n as usize] = true;
        }
    }
    let missing: Vec<usize> = (0..seen.len()).filter(|&i| !seen[i]).take(10).collect();
    assert!(
        missing.is_empty(),
        "lines missing after SIGKILL: {missing:?} of {sent}"
    );
}

#[test]
fn term_leaves_unread_lines_in_the_pipe_for_the_next_logger_exactly_once() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let (read, write) = pipe();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = start_writer(&write, Arc::clone(&stop));
    let args = ["-s", "1M", "-n", "100000"];

    let mut first = logger(on_pipe(&read), &dir, &args);
    wait_until("the first logger to rotate", DEADLINE, || {
        dir.exists() && !archives(&dir).is_empty()
    });
    kill(&first, rustix::process::Signal::TERM);
    assert!(first.wait_exit(DEADLINE).success(), "{}", stderr_of(&dir));
    let waiting = rustix::io::ioctl_fionread(&read).unwrap();
    assert!(
        waiting > 0,
        "the writer keeps writing, so data must be waiting in the pipe"
    );

    let before = total_size(&dir);
    let mut second = logger(on_pipe(&read), &dir, &args);
    wait_until("the second logger to write 2 MB more", DEADLINE, || {
        total_size(&dir) > before + 2_000_000
    });
    stop.store(true, Ordering::Relaxed);
    let sent = writer.join().unwrap();
    drop(write);
    drop(read);
    assert!(second.wait_exit(DEADLINE).success(), "{}", stderr_of(&dir));

    let numbers: Vec<Option<u64>> = logged_lines(&dir).iter().map(|c| number_of(c)).collect();
    let expected: Vec<Option<u64>> = (0..sent).map(Some).collect();
    assert_eq!(numbers.len(), expected.len(), "every line exactly once");
    assert!(numbers == expected, "lines out of order or torn");
}

/// Lines of varied length, numbered, none longer than 200 bytes.
fn varied_lines(count: usize) -> Vec<Vec<u8>> {
    (0..count)
        .map(|i| format!("{i:06} {}\n", "abcdefghij".repeat(i * 7 % 19)).into_bytes())
        .collect()
}

/// Runs a logger to end of input on a pipe fed with `input`.
fn log_through_pipe(dir: &Path, args: &[&str], input: &[u8]) {
    let (read, write) = pipe();
    let mut child = logger(on_pipe(&read), dir, args);
    drop(read);
    let input = input.to_vec();
    let feeder = std::thread::spawn(move || {
        let mut out = File::from(write);
        out.write_all(&input).unwrap();
    });
    feeder.join().unwrap();
    assert!(child.wait_exit(DEADLINE).success(), "{}", stderr_of(dir));
}

#[test]
fn rotation_keeps_every_file_within_the_limit_and_every_line_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let lines = varied_lines(3000);
    log_through_pipe(&dir, &["-s", "10000", "-n", "1000"], &lines.concat());

    let files = log_files(&dir);
    assert!(
        files.len() > 20,
        "expected many rotations, got {}",
        files.len()
    );
    for pair in files.windows(2) {
        let (name, bytes) = &pair[0];
        assert!(
            bytes.len() <= 10_000,
            "{name} is {} bytes, over the limit",
            bytes.len()
        );
        // Rotated only because the next line would not fit.
        let next_line = split_lines(&pair[1].1)[0].len() + 1;
        assert!(
            bytes.len() + next_line > 10_000,
            "{name} rotated early: {} + {next_line}",
            bytes.len()
        );
        assert!(bytes.ends_with(b"\n"), "{name} ends mid-line");
    }
    let names: Vec<&String> = files.iter().map(|(n, _)| n).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(
        names, sorted,
        "archive names sort in the order they were written"
    );
    let logged: Vec<Vec<u8>> = logged_lines(&dir)
        .into_iter()
        .map(|mut l| {
            l.push(b'\n');
            l
        })
        .collect();
    assert_eq!(
        logged, lines,
        "every line once, in order, across the archives"
    );
}

#[test]
fn rotation_keeps_only_the_newest_archives() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let lines = varied_lines(3000);
    log_through_pipe(&dir, &["-s", "10000", "-n", "4"], &lines.concat());

    assert_eq!(archives(&dir).len(), 4, "the count of archives is kept");
    let logged: Vec<Vec<u8>> = logged_lines(&dir)
        .into_iter()
        .map(|mut l| {
            l.push(b'\n');
            l
        })
        .collect();
    assert!(logged.len() < lines.len());
    assert_eq!(
        logged[..],
        lines[lines.len() - logged.len()..],
        "the newest lines, in order"
    );
}

#[test]
fn alrm_rotates_now() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let (read, write) = pipe();
    let child = logger(on_pipe(&read), &dir, &[]);
    let mut out = File::from(write.try_clone().unwrap());
    out.write_all(b"before\n").unwrap();
    wait_until("the first line", DEADLINE, || {
        std::fs::read(dir.join("current")).is_ok_and(|b| b.ends_with(b"before\n"))
    });
    kill(&child, rustix::process::Signal::ALARM);
    wait_until("an archive", DEADLINE, || archives(&dir).len() == 1);
    out.write_all(b"after\n").unwrap();
    wait_until("the next line in a new current", DEADLINE, || {
        std::fs::read(dir.join("current")).is_ok_and(|b| b.ends_with(b"after\n"))
    });
    let archived = std::fs::read(dir.join(&archives(&dir)[0])).unwrap();
    assert!(archived.ends_with(b" before\n") && split_lines(&archived).len() == 1);
}

/// Civil date to Unix seconds, for reading tai64nlocal's output back with TZ=UTC.
fn unix_of(date: &str) -> f64 {
    let (day, time) = date.split_once(' ').unwrap();
    let d: Vec<i64> = day.split('-').map(|x| x.parse().unwrap()).collect();
    let (y, m) = if d[1] <= 2 {
        (d[0] - 1, d[1] + 9)
    } else {
        (d[0], d[1] - 3)
    };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d[2] - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let t: Vec<f64> = time.split(':').map(|x| x.parse().unwrap()).collect();
    days as f64 * 86400.0 + t[0] * 3600.0 + t[1] * 60.0 + t[2]
}

fn now_unix() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[test]
fn timestamps_read_back_with_tai64nlocal_within_a_second() {
    require("tai64nlocal", "daemontools");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let (read, write) = pipe();
    let _child = logger(on_pipe(&read), &dir, &[]);
    let mut out = File::from(write.try_clone().unwrap());
    let mut sent = Vec::new();
    for i in 0..3 {
        sent.push(now_unix());
        out.write_all(format!("stamp {i}\n").as_bytes()).unwrap();
        wait_until("the line", DEADLINE, || {
            std::fs::read_to_string(dir.join("current"))
                .is_ok_and(|s| s.contains(&format!("stamp {i}\n")))
        });
    }
    let (code, text, err) = run(
        Command::new("sh")
            .arg("-c")
            .arg("tai64nlocal < \"$1\"")
            .arg("sh")
            .arg(dir.join("current"))
            .env("TZ", "UTC"),
        DEADLINE,
    );
    assert_eq!(code, Some(0), "{err}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    for (i, line) in lines.iter().enumerate() {
        let (stamp, rest) = line.split_at(29);
        assert_eq!(rest, format!(" stamp {i}"));
        let diff = (unix_of(stamp) - sent[i]).abs();
        assert!(diff < 1.0, "{line}: {diff:.3} s from the wall clock");
    }
}

#[test]
fn iso_and_no_timestamp_styles() {
    let tmp = tempfile::tempdir().unwrap();
    let iso = tmp.path().join("iso");
    log_through_pipe(&iso, &["-t", "iso"], b"hello\n");
    let text = std::fs::read_to_string(iso.join("current")).unwrap();
    let (stamp, rest) = text.split_at(30);
    assert_eq!(rest, " hello\n");
    assert!(
        stamp.ends_with('Z') && stamp.as_bytes()[10] == b'T',
        "{text}"
    );
    let diff = (unix_of(&stamp[..29].replace('T', " ")) - now_unix()).abs();
    assert!(diff < 5.0, "{text}");

    let raw = tmp.path().join("raw");
    log_through_pipe(&raw, &["-t", "none"], b"hello\nworld");
    assert_eq!(
        std::fs::read(raw.join("current")).unwrap(),
        b"hello\nworld\n"
    );
}

#[test]
fn long_lines_are_split_with_the_marker_and_nothing_is_lost() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let long: Vec<u8> = (0..200_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let mut input = long.clone();
    input.extend_from_slice(b"\nshort\n");
    log_through_pipe(&dir, &[], &input);

    let lines = logged_lines(&dir);
    assert_eq!(
        lines.len(),
        5,
        "200000 bytes make 4 pieces of at most 64 KiB, then `short`"
    );
    let mut joined = Vec::new();
    for piece in &lines[..3] {
        assert_eq!(piece.len(), 65_536 + 5);
        let content = piece.strip_suffix(b"[...]").expect("split marker");
        joined.extend_from_slice(content);
    }
    assert!(!lines[3].ends_with(b"[...]"));
    joined.extend_from_slice(&lines[3]);
    assert_eq!(joined, long);
    assert_eq!(lines[4], b"short");
}

#[test]
fn binary_bytes_and_nuls_are_preserved() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let binary: Vec<u8> = (0..=255u8).filter(|&b| b != b'\n').collect();
    let mut input = binary.clone();
    input.extend_from_slice(b"\n\0\0\0\n\n\xff\xfe\r\n");
    log_through_pipe(&dir, &[], &input);
    let lines = logged_lines(&dir);
    assert_eq!(
        lines,
        vec![
            binary,
            b"\0\0\0".to_vec(),
            Vec::new(),
            b"\xff\xfe\r".to_vec()
        ]
    );
}

#[test]
fn partial_last_line_is_written_at_eof_from_a_pipe_and_from_a_file() {
    let tmp = tempfile::tempdir().unwrap();
    let piped = tmp.path().join("piped");
    log_through_pipe(&piped, &[], b"first\nlast without newline");
    assert_eq!(
        logged_lines(&piped),
        vec![b"first".to_vec(), b"last without newline".to_vec()]
    );

    let input = tmp.path().join("input");
    std::fs::write(&input, b"first\nlast without newline").unwrap();
    let from_file = tmp.path().join("from_file");
    let mut child = logger(Stdio::from(File::open(&input).unwrap()), &from_file, &[]);
    assert!(
        child.wait_exit(DEADLINE).success(),
        "{}",
        stderr_of(&from_file)
    );
    assert_eq!(
        logged_lines(&from_file),
        vec![b"first".to_vec(), b"last without newline".to_vec()]
    );
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat.rsplit_once(") ").unwrap().1.split(' ').collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[test]
fn partial_line_in_the_pipe_neither_spins_nor_gets_cut() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let (read, write) = pipe();
    let child = logger(on_pipe(&read), &dir, &[]);
    let mut out = File::from(write.try_clone().unwrap());
    out.write_all(b"whole\nhalf a li").unwrap();
    wait_until("the whole line", DEADLINE, || {
        std::fs::read(dir.join("current")).is_ok_and(|b| b.ends_with(b"whole\n"))
    });
    // Measuring CPU use needs an interval; the partial line sits in the pipe meanwhile.
    let start = cpu_ticks(child.pid());
    std::thread::sleep(Duration::from_millis(500));
    let used = cpu_ticks(child.pid()) - start;
    assert!(
        used <= 5,
        "logger used {used} ticks in 500 ms while waiting: it spins"
    );
    out.write_all(b"ne\n").unwrap();
    wait_until("the rest of the line", DEADLINE, || {
        std::fs::read(dir.join("current")).is_ok_and(|b| b.ends_with(b"\n"))
            && logged_lines(&dir).len() == 2
    });
    assert_eq!(
        logged_lines(&dir),
        vec![b"whole".to_vec(), b"half a line".to_vec()]
    );
}

#[test]
fn second_logger_on_the_same_directory_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let (read, _write) = pipe();
    let _first = logger(on_pipe(&read), &dir, &[]);
    wait_until("the first logger to lock", DEADLINE, || {
        dir.join("current").exists()
    });
    let (code, _, err) = run(Command::new(bin("logger")).arg(&dir), DEADLINE);
    assert_eq!(code, Some(111), "{err}");
    assert!(
        err.starts_with("logger: fatal: unable to lock") && err.contains("another logger"),
        "{err}"
    );
}

#[test]
fn usage_errors_exit_100_and_help_documents_the_options() {
    let (code, _, err) = run(
        Command::new(bin("logger"))
            .args(["-s", "12"])
            .arg("/nonexistent"),
        DEADLINE,
    );
    assert_eq!(code, Some(100), "{err}");
    let (code, out, _) = run(Command::new(bin("logger")).arg("--help"), DEADLINE);
    assert_eq!(code, Some(0));
    for option in [
        "--size",
        "--count",
        "--timestamp",
        "--show",
        "--lines",
        "--follow",
    ] {
        assert!(out.contains(option), "--help lacks {option}");
    }
}

// Crash recovery: each test builds the state a crash at one step of rotation leaves, then
// starts a logger and checks that no archive is lost and no line is duplicated.

const OLD_ARCHIVE: &str = "@400000006955b90a1dcd6500.s";

fn write_log_file(dir: &Path, name: &str, lines: &[&str]) {
    let text: String = lines
        .iter()
        .map(|l| format!("@400000006955b90a1dcd6500 {l}\n"))
        .collect();
    std::fs::write(dir.join(name), text).unwrap();
}

#[test]
fn crash_after_rename_before_new_current_is_recovered() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    std::fs::create_dir(&dir).unwrap();
    write_log_file(&dir, OLD_ARCHIVE, &["old 1", "old 2"]);
    // No `current`: the logger died right after renaming it.
    log_through_pipe(&dir, &[], b"new 1\n");
    assert_eq!(archives(&dir), vec![OLD_ARCHIVE]);
    assert_eq!(
        logged_lines(&dir),
        vec![b"old 1".to_vec(), b"old 2".to_vec(), b"new 1".to_vec()]
    );
}

#[test]
fn crash_between_link_and_unlink_leaves_no_duplicate_current() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    std::fs::create_dir(&dir).unwrap();
    write_log_file(&dir, OLD_ARCHIVE, &["old 1", "old 2"]);
    // Where rename cannot refuse to replace, rotation links then unlinks; a crash in between
    // leaves `current` as a second name of the archive.
    std::fs::hard_link(dir.join(OLD_ARCHIVE), dir.join("current")).unwrap();
    log_through_pipe(&dir, &[], b"new 1\n");
    assert_eq!(archives(&dir), vec![OLD_ARCHIVE]);
    assert_eq!(
        logged_lines(&dir),
        vec![b"old 1".to_vec(), b"old 2".to_vec(), b"new 1".to_vec()]
    );
    let archived = std::fs::read_to_string(dir.join(OLD_ARCHIVE)).unwrap();
    assert_eq!(archived.lines().count(), 2, "the archive is not written to");
}

#[test]
fn crash_right_after_current_became_previous_is_recovered() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    std::fs::create_dir(&dir).unwrap();
    write_log_file(&dir, OLD_ARCHIVE, &["old 1"]);
    // Rotation renamed `current` to `previous`; the crash came before the new `current`.
    // (`previous` beside a `current` is the multilog test's state.)
    write_log_file(&dir, "previous", &["previous 1", "previous 2"]);
    log_through_pipe(&dir, &[], b"new 1\n");
    assert!(!dir.join("previous").exists());
    assert_eq!(archives(&dir).len(), 2, "{:?}", archives(&dir));
    assert_eq!(
        logged_lines(&dir),
        ["old 1", "previous 1", "previous 2", "new 1"]
            .map(|l| l.as_bytes().to_vec())
            .to_vec()
    );
}

#[test]
fn crash_between_link_and_unlink_of_previous_leaves_no_duplicate() {
    for (first, second) in [("current", "previous"), ("previous", OLD_ARCHIVE)] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("log");
        std::fs::create_dir(&dir).unwrap();
        // Where rename cannot refuse to replace, a move is a link then an unlink: `first` is
        // left as a second name of `second`.
        write_log_file(&dir, second, &["moved 1", "moved 2"]);
        std::fs::hard_link(dir.join(second), dir.join(first)).unwrap();
        log_through_pipe(&dir, &[], b"new 1\n");
        assert!(!dir.join("previous").exists(), "{first} -> {second}");
        assert_eq!(archives(&dir).len(), 1, "{first} -> {second}");
        assert_eq!(
            logged_lines(&dir),
            ["moved 1", "moved 2", "new 1"]
                .map(|l| l.as_bytes().to_vec())
                .to_vec(),
            "{first} -> {second}"
        );
    }
}

#[test]
fn crash_mid_write_leaves_a_torn_line_that_is_ended() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(
        dir.join("current"),
        "@400000006955b90a1dcd6500 whole\n@400000006955b90a1dcd6500 tor",
    )
    .unwrap();
    log_through_pipe(&dir, &[], b"next\n");
    let lines = logged_lines(&dir);
    assert_eq!(
        lines,
        vec![b"whole".to_vec(), b"tor".to_vec(), b"next".to_vec()]
    );
}

#[test]
fn crash_before_pruning_leaves_too_many_archives_which_are_pruned_at_start() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    std::fs::create_dir(&dir).unwrap();
    let names: Vec<String> = (0..8)
        .map(|i| format!("@400000006955b90a1dcd65{i:02x}.s"))
        .collect();
    for (i, name) in names.iter().enumerate() {
        write_log_file(&dir, name, &[&format!("archive {i}")]);
    }
    write_log_file(&dir, "current", &["in current"]);
    log_through_pipe(&dir, &["-n", "3"], b"new\n");
    assert_eq!(
        archives(&dir),
        names[5..].to_vec(),
        "the three newest are kept"
    );
    let lines = logged_lines(&dir);
    assert_eq!(lines.first().unwrap(), b"archive 5");
    assert_eq!(lines.last().unwrap(), b"new");
}

#[test]
fn crash_before_rotating_a_full_current_rotates_at_the_next_line() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    std::fs::create_dir(&dir).unwrap();
    let full: Vec<String> = (0..150).map(|i| format!("filler {i:04}")).collect();
    let full_refs: Vec<&str> = full.iter().map(String::as_str).collect();
    write_log_file(&dir, "current", &full_refs); // 150 * 38 = 5700 bytes
    log_through_pipe(&dir, &["-s", "5710"], b"next\n");
    let names = archives(&dir);
    assert_eq!(names.len(), 1);
    assert_eq!(std::fs::read(dir.join(&names[0])).unwrap().len(), 5700);
    let current = std::fs::read(dir.join("current")).unwrap();
    assert_eq!(split_lines(&current).len(), 1);
}

#[test]
fn archives_keep_their_order_when_the_clock_is_behind_the_newest_name() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    std::fs::create_dir(&dir).unwrap();
    // An archive named far in the future (a clock that went back since).
    let future = "@40000000ffffffff00000000.s";
    write_log_file(&dir, future, &["from the future"]);
    let (read, write) = pipe();
    let child = logger(on_pipe(&read), &dir, &[]);
    let mut out = File::from(write.try_clone().unwrap());
    out.write_all(b"now\n").unwrap();
    wait_until("the line", DEADLINE, || logged_lines(&dir).len() == 2);
    kill(&child, rustix::process::Signal::ALARM);
    wait_until("a second archive", DEADLINE, || archives(&dir).len() == 2);
    assert_eq!(archives(&dir)[0], future);
    assert_eq!(
        logged_lines(&dir),
        vec![b"from the future".to_vec(), b"now".to_vec()]
    );
}

#[test]
fn full_disk_waits_and_retries_then_every_line_arrives() {
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let (read, write) = pipe();
    let err_path = tmp.path().join("logger.err");
    // The tmpfs lives in a mount namespace of its own: it disappears with the logger,
    // whatever happens to the test. The test reaches it through /proc/PID/root.
    let mut child = Spawned::new(
        Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg("mount -t tmpfs -o size=512k tmpfs \"$1\" && exec \"$2\" -s 100k -n 3 \"$1/log\"")
            .arg("sh")
            .arg(&mnt)
            .arg(bin("logger"))
            .stdin(on_pipe(&read))
            .stderr(File::create(&err_path).unwrap()),
    );
    let inside = PathBuf::from(format!("/proc/{}/root{}", child.pid(), mnt.display()));
    let log = inside.join("log");
    wait_until("the logger on the tmpfs", DEADLINE, || {
        log.join("current").exists()
    });

    let mut filler = File::create(inside.join("filler")).unwrap();
    let block = vec![0u8; 4096];
    while filler.write_all(&block).is_ok() {}
    drop(filler);

    let lines: Vec<Vec<u8>> = (0..2000u64).map(numbered).collect();
    let mut out = File::from(write.try_clone().unwrap());
    out.write_all(&lines.concat()).unwrap();
    wait_until("the warning about the full disk", DEADLINE, || {
        std::fs::read_to_string(&err_path).is_ok_and(|e| e.contains("No space left on device"))
    });
    assert!(
        logged_lines_lenient(&log).len() < lines.len(),
        "the disk is full, so lines must wait"
    );

    std::fs::remove_file(inside.join("filler")).unwrap();
    wait_until("every line after space was freed", DEADLINE, || {
        logged_lines_lenient(&log).len() >= lines.len()
    });
    let numbers: Vec<u64> = logged_lines_lenient(&log)
        .iter()
        .filter_map(|c| number_of(c))
        .collect();
    let mut unique = numbers.clone();
    unique.dedup();
    assert_eq!(
        unique,
        (0..2000).collect::<Vec<u64>>(),
        "every line, in order"
    );
    let warnings = std::fs::read_to_string(&err_path).unwrap();
    assert_eq!(
        warnings.matches("warning").count(),
        1,
        "warned once: {warnings}"
    );
    drop(out);
    drop(write);
    drop(read);
    assert!(child.wait_exit(DEADLINE).success(), "{warnings}");
}

#[test]
fn removed_directory_is_recreated_and_no_line_is_dropped() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let (read, write) = pipe();
    let _child = logger(on_pipe(&read), &dir, &[]);
    let mut out = File::from(write.try_clone().unwrap());
    out.write_all(b"before\n").unwrap();
    wait_until("the first line", DEADLINE, || logged_lines(&dir).len() == 1);
    std::fs::remove_dir_all(&dir).unwrap();
    out.write_all(b"after 1\nafter 2\n").unwrap();
    wait_until("the lines in the recreated directory", DEADLINE, || {
        dir.join("current").exists() && logged_lines(&dir).len() == 2
    });
    assert_eq!(
        logged_lines(&dir),
        vec![b"after 1".to_vec(), b"after 2".to_vec()]
    );
    assert!(stderr_of(&dir).contains("removed"), "{}", stderr_of(&dir));
}

fn show(args: &[&str], dir: &Path, tz: &str) -> String {
    let (code, out, err) = run(
        Command::new(bin("logger"))
            .arg("--show")
            .args(args)
            .arg(dir)
            .env("TZ", tz),
        DEADLINE,
    );
    assert_eq!(code, Some(0), "{err}");
    out
}

#[test]
fn show_prints_a_previous_left_by_a_rotation_between_archives_and_current() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    std::fs::create_dir(&dir).unwrap();
    write_log_file(&dir, OLD_ARCHIVE, &["archived"]);
    write_log_file(&dir, "previous", &["previous"]);
    write_log_file(&dir, "current", &["current"]);
    let shown = show(&[], &dir, "UTC");
    let texts: Vec<&str> = shown
        .lines()
        .map(|l| l.rsplit(' ').next().unwrap_or_default())
        .collect();
    assert_eq!(texts, ["archived", "previous", "current"], "{shown}");
}

#[test]
fn show_prints_archives_then_current_in_local_time_like_tai64nlocal() {
    require("tai64nlocal", "daemontools");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let lines = varied_lines(600);
    log_through_pipe(&dir, &["-s", "10000", "-n", "1000"], &lines.concat());
    assert!(archives(&dir).len() > 3);

    let all: Vec<u8> = log_files(&dir).into_iter().flat_map(|(_, b)| b).collect();
    let concatenated = tmp.path().join("all");
    std::fs::write(&concatenated, &all).unwrap();
    for tz in ["UTC", "Asia/Tokyo", "America/New_York"] {
        let (code, expected, err) = run(
            Command::new("sh")
                .arg("-c")
                .arg("tai64nlocal < \"$1\"")
                .arg("sh")
                .arg(&concatenated)
                .env("TZ", tz),
            DEADLINE,
        );
        assert_eq!(code, Some(0), "{err}");
        assert_eq!(show(&[], &dir, tz), expected, "TZ={tz}");
        let last: Vec<&str> = expected.lines().collect();
        let tail = show(&["-n", "250"], &dir, tz);
        assert_eq!(
            tail.lines().collect::<Vec<_>>(),
            last[last.len() - 250..],
            "-n 250, TZ={tz}"
        );
    }
    // `--show -` converts a stream, as tai64nlocal does.
    let (code, out, _) = run(
        Command::new("sh")
            .arg("-c")
            .arg("\"$1\" --show - < \"$2\"")
            .arg("sh")
            .arg(bin("logger"))
            .arg(&concatenated)
            .env("TZ", "Asia/Tokyo"),
        DEADLINE,
    );
    assert_eq!(code, Some(0));
    assert_eq!(out, show(&[], &dir, "Asia/Tokyo"));
}

#[test]
fn show_follow_continues_across_rotations() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let (read, write) = pipe();
    let writer_logger = logger(on_pipe(&read), &dir, &[]);
    let mut out = File::from(write.try_clone().unwrap());
    out.write_all(b"one\n").unwrap();
    wait_until("the first line", DEADLINE, || logged_lines(&dir).len() == 1);

    let shown = tmp.path().join("shown");
    let _follower = Spawned::new(
        Command::new(bin("logger"))
            .args(["--show", "-f"])
            .arg(&dir)
            .env("TZ", "UTC")
            .stdout(File::create(&shown).unwrap()),
    );
    let shown_text = || std::fs::read_to_string(&shown).unwrap_or_default();
    wait_until("the follower to print the first line", DEADLINE, || {
        shown_text().ends_with(" one\n")
    });
    out.write_all(b"two\n").unwrap();
    wait_until("the appended line", DEADLINE, || {
        shown_text().ends_with(" two\n")
    });
    kill(&writer_logger, rustix::process::Signal::ALARM);
    wait_until("a rotation", DEADLINE, || archives(&dir).len() == 1);
    out.write_all(b"three\n").unwrap();
    wait_until("the line in the new current", DEADLINE, || {
        shown_text().ends_with(" three\n")
    });
    let text = shown_text();
    let contents: Vec<&str> = text.lines().map(|l| &l[30..]).collect();
    assert_eq!(contents, vec!["one", "two", "three"], "{text}");
    assert!(text.starts_with("20"), "labels shown as dates: {text}");
}

#[test]
fn line_in_more_tiny_buffers_than_one_copy_takes_is_cut_rather_than_stuck() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    // A packet-mode pipe never merges writes: each byte below is a buffer of its own, more
    // than the logger's copy pipe has slots (256 at 1 MiB).
    let (read, write) =
        rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC | rustix::pipe::PipeFlags::DIRECT)
            .unwrap();
    let mut child = logger(on_pipe(&read), &dir, &[]);
    drop(read);
    let writer = std::thread::spawn(move || {
        for _ in 0..300 {
            rustix::io::write(&write, b"x").unwrap();
        }
        rustix::io::write(&write, b"\n").unwrap();
    });
    let joined = || -> Vec<u8> {
        logged_lines(&dir)
            .iter()
            .flat_map(|l| l.strip_suffix(b"[...]").unwrap_or(l).to_vec())
            .collect()
    };
    // Stuck, the writer would block on the full pipe: wait on the log, with a deadline.
    wait_until("all 300 bytes in the log", DEADLINE, || {
        joined().len() >= 300
    });
    writer.join().unwrap();
    assert!(child.wait_exit(DEADLINE).success(), "{}", stderr_of(&dir));
    let lines = logged_lines(&dir);
    assert_eq!(joined(), vec![b'x'; 300], "{lines:?}");
    assert!(lines.len() >= 2 && lines[0].ends_with(b"[...]"));
}

/// Also the state a crash leaves between our own rotation's new `current` and the archiving
/// of `previous`.
#[test]
fn multilog_previous_left_by_a_crash_becomes_an_archive() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    std::fs::create_dir(&dir).unwrap();
    write_log_file(&dir, OLD_ARCHIVE, &["old"]);
    write_log_file(&dir, "previous", &["previous 1", "previous 2"]);
    write_log_file(&dir, "current", &["in current"]);
    log_through_pipe(&dir, &[], b"new\n");
    assert!(!dir.join("previous").exists());
    assert_eq!(archives(&dir).len(), 2);
    assert_eq!(
        archives(&dir)[0],
        OLD_ARCHIVE,
        "named after the existing archives"
    );
    let lines = logged_lines(&dir);
    let expected: Vec<&[u8]> = vec![b"old", b"previous 1", b"previous 2", b"in current", b"new"];
    assert_eq!(lines, expected);
}

#[test]
fn full_disk_at_start_delays_the_repair_instead_of_exiting() {
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let (read, write) = pipe();
    let err_path = tmp.path().join("logger.err");
    // A torn last line that fills its page exactly, so the newline that ends it needs a new
    // page, on a tmpfs filled up before the logger starts.
    let setup = "mount -t tmpfs -o size=256k tmpfs \"$1\" && mkdir \"$1/log\" \
        && { printf '@400000006955b90a1dcd6500 '; head -c 4070 /dev/zero | tr '\\0' x; } > \"$1/log/current\" \
        && { dd if=/dev/zero of=\"$1/filler\" bs=4096 2>/dev/null; true; } \
        && exec \"$2\" \"$1/log\"";
    let mut child = Spawned::new(
        Command::new("unshare")
            .args([
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                setup,
                "sh",
            ])
            .arg(&mnt)
            .arg(bin("logger"))
            .stdin(on_pipe(&read))
            .stderr(File::create(&err_path).unwrap()),
    );
    let pid = child.pid();
    let is_logger =
        || std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|exe| exe == bin("logger"));
    wait_until(
        "the logger to start (or the setup to fail)",
        DEADLINE,
        || is_logger() || !warden_tests::alive(pid),
    );
    assert!(
        is_logger(),
        "the logger exited at start: {}",
        std::fs::read_to_string(&err_path).unwrap_or_default()
    );
    let inside = PathBuf::from(format!("/proc/{pid}/root{}", mnt.display()));
    let log = inside.join("log");
    let lines: Vec<Vec<u8>> = (0..100u64).map(numbered).collect();
    let mut out = File::from(write.try_clone().unwrap());
    out.write_all(&lines.concat()).unwrap();
    wait_until("the warning about the full disk", DEADLINE, || {
        std::fs::read_to_string(&err_path).is_ok_and(|e| e.contains("No space left on device"))
    });
    assert!(warden_tests::alive(pid), "the logger must wait, not exit");

    std::fs::remove_file(inside.join("filler")).unwrap();
    wait_until("every line after space was freed", DEADLINE, || {
        logged_lines_lenient(&log).len() > lines.len()
    });
    let logged = logged_lines(&log);
    assert_eq!(
        logged[0],
        vec![b'x'; 4070],
        "the torn line, ended by a newline"
    );
    let numbers: Vec<u64> = logged[1..].iter().filter_map(|c| number_of(c)).collect();
    assert_eq!(numbers, (0..100).collect::<Vec<u64>>());
    drop(out);
    drop(write);
    drop(read);
    assert!(child.wait_exit(DEADLINE).success());
}

/// A numbered line of exactly `FIXED_LINE` bytes, so that the duplicate bound is in lines.
const FIXED_LINE: usize = 100;

fn fixed_numbered(n: u64) -> Vec<u8> {
    let mut line = format!("line {n:09} ").into_bytes();
    line.resize(FIXED_LINE - 1, b'x');
    line.push(b'\n');
    line
}

/// The number of a line written by `fixed_numbered`, or None for anything else (a torn
/// fragment).
fn fixed_number_of(content: &[u8]) -> Option<usize> {
    if content.len() != FIXED_LINE - 1 {
        return None;
    }
    let text = std::str::from_utf8(content).ok()?;
    text.strip_prefix("line ")?.get(..9)?.parse().ok()
}

/// Every line of the log in order, labels and torn fragments included (a fragment left by a
/// kill counts as the line it is, and is ended by the next logger).
fn raw_lines(dir: &Path) -> Vec<Vec<u8>> {
    log_files(dir)
        .iter()
        .flat_map(|(_, bytes)| split_lines(bytes))
        .collect()
}

/// Item 15's bound, per kill: a logger SIGKILLed between writing and consuming makes the next
/// one write again at most one pipe buffer (64 KiB) of input. Each logger's output is told
/// apart by the number of log lines there were when it started, so every kill's duplicates
/// (lines of the next logger's output already written by an earlier one) are counted in
/// bytes on their own.
#[test]
fn issue_11_item_15_sigkilled_loggers_write_at_most_one_pipe_buffer_twice_per_kill() {
    const LINES: u64 = 300_000;
    const KILLS: usize = 40;
    const PIPE_BUFFER: usize = 64 * 1024;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let (read, write) = pipe();
    let mut out = File::from(write.try_clone().unwrap());
    let done = Arc::new(AtomicBool::new(false));
    let writer_done = Arc::clone(&done);
    // Numbered lines at full speed, cut mid-line, until all are written.
    let writer = std::thread::spawn(move || {
        let mut chunk = Vec::with_capacity(8192);
        let mut n = 0;
        while n < LINES {
            chunk.clear();
            while chunk.len() < 7000 && n < LINES {
                chunk.extend_from_slice(&fixed_numbered(n));
                n += 1;
            }
            let (a, b) = chunk.split_at(chunk.len() / 2 + 1);
            out.write_all(a).unwrap();
            out.write_all(b).unwrap();
        }
        writer_done.store(true, Ordering::Relaxed);
    });
    let args = ["-s", "1M", "-n", "100000"];
    // Where each logger's output begins, in lines of the log, and how many loggers were
    // killed while there was input to write.
    let mut busy_kills = 0;
    let mut starts = Vec::with_capacity(KILLS + 1);
    for round in 0..KILLS {
        // Each logger starts on a full pipe (raised to 1 MiB by the first), so its first
        // batch is as large as a batch gets (written lines do not fill every page of a pipe,
        // hence 70 %), and is killed as soon as it has written a line.
        wait_until(
            &format!("the pipe to fill before logger {round}"),
            DEADLINE,
            || {
                let size = rustix::pipe::fcntl_getpipe_size(&read).unwrap();
                let queued = rustix::io::ioctl_fionread(&read).unwrap() as usize;
                queued * 10 >= size * 7 || done.load(Ordering::Relaxed)
            },
        );
        let before = total_size(&dir);
        starts.push(raw_lines(&dir).len());
        let mut victim = logger(on_pipe(&read), &dir, &args);
        wait_until(&format!("logger {round} to write"), DEADLINE, || {
            total_size(&dir) > before || done.load(Ordering::Relaxed)
        });
        if !done.load(Ordering::Relaxed) {
            busy_kills += 1;
        }
        kill(&victim, rustix::process::Signal::KILL);
        victim.wait_exit(DEADLINE);
    }
    starts.push(raw_lines(&dir).len());
    let mut last = logger(on_pipe(&read), &dir, &args);
    writer.join().unwrap();
    drop(write);
    drop(read);
    assert!(last.wait_exit(DEADLINE).success(), "{}", stderr_of(&dir));

    let lines = raw_lines(&dir);
    starts.push(lines.len());
    // The log only grows: a count that went down missed a file, and would blame lines on
    // the wrong logger.
    assert!(
        starts.windows(2).all(|w| w[0] <= w[1]),
        "the log's line count went down between kills: {starts:?}"
    );
    let mut seen = vec![0u32; LINES as usize];
    // Bytes of input each logger wrote that an earlier one had written: per kill, those of
    // the logger started after it.
    let mut duplicated = Vec::with_capacity(KILLS + 1);
    for bounds in starts.windows(2) {
        let mut bytes = 0;
        for line in lines.get(bounds[0]..bounds[1]).unwrap_or_default() {
            let number = strip_label(line).and_then(|content| fixed_number_of(&content));
            if let Some(count) = number.and_then(|n| seen.get_mut(n)) {
                if *count > 0 {
                    bytes += FIXED_LINE;
                }
                *count += 1;
            }
        }
        duplicated.push(bytes);
    }
    let missing: Vec<usize> = (0..seen.len()).filter(|&i| seen[i] == 0).take(10).collect();
    assert!(
        missing.is_empty(),
        "lines missing after SIGKILLs: {missing:?}"
    );
    assert_eq!(duplicated[0], 0, "the first logger repeats nothing");
    let per_kill = &duplicated[1..];
    let total: usize = per_kill.iter().sum();
    let worst = per_kill.iter().copied().max().unwrap_or(0);
    eprintln!(
        "{total} bytes written twice after {KILLS} SIGKILLs, at most {worst} for one \
         (bound {PIPE_BUFFER} each), {busy_kills} of them with input left: {per_kill:?}"
    );
    assert!(
        worst <= PIPE_BUFFER,
        "a kill made the next logger write more than one pipe buffer again; all kills: {per_kill:?}"
    );
    assert!(
        total <= KILLS * PIPE_BUFFER,
        "{total} bytes written twice, more than {KILLS} pipe buffers; all kills: {per_kill:?}"
    );
}
