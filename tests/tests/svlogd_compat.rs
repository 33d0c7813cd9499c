//! warden's logger run as `svlogd` against Debian's /usr/bin/svlogd (issue 15, Must-show 2):
//! the same input and the same configs through both, then the same files with the same modes
//! and contents once timestamps are masked; and no line lost when warden's is killed.

use std::io::Write;
use std::net::UdpSocket;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use warden_tests::{bin, require, Spawned};

const DEADLINE: Duration = Duration::from_secs(30);
const DEBIAN: &str = "/usr/bin/svlogd";

/// warden's logger under the name svlogd, as `cargo xtask install --svlogd` links it.
fn warden_svlogd(tmp: &Path) -> PathBuf {
    let link = tmp.join("bin").join("svlogd");
    if !link.exists() {
        std::fs::create_dir_all(link.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(bin("logger"), &link).unwrap();
    }
    link
}

fn debian() -> PathBuf {
    require("svlogd", "runit");
    PathBuf::from(DEBIAN)
}

/// Runs `program args dirs` on `input` (through a pipe), to its end; its stderr.
fn feed(program: &Path, args: &[&str], dirs: &[PathBuf], input: &[u8]) -> Vec<u8> {
    let err_path = dirs[0].with_extension("stderr");
    let err = std::fs::File::create(&err_path).unwrap();
    let mut child = Spawned::new(
        Command::new(program)
            .args(args)
            .args(dirs)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(err),
    );
    let mut stdin = child.child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let status = child.wait_exit(DEADLINE);
    writer.join().unwrap().unwrap();
    assert!(status.success(), "{} {args:?}: {status}", program.display());
    std::fs::read(err_path).unwrap()
}

/// A line's leading svlogd label (`@` + 24 hex, or `YYYY-MM-DD_HH:MM:SS.xxxxx` with `_` or
/// `T`) and its space, replaced by `STAMP `.
fn mask_line(line: &[u8]) -> Vec<u8> {
    let is_hex = |b: &u8| b.is_ascii_hexdigit();
    let tai =
        line.len() >= 26 && line[0] == b'@' && line[1..25].iter().all(is_hex) && line[25] == b' ';
    let date = line.len() >= 26 && {
        let s = &line[..26];
        let digits = [
            0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18, 20, 21, 22, 23, 24,
        ];
        digits.iter().all(|&i| s[i].is_ascii_digit())
            && s[4] == b'-'
            && s[7] == b'-'
            && (s[10] == b'_' || s[10] == b'T')
            && s[13] == b':'
            && s[16] == b':'
            && s[19] == b'.'
            && s[25] == b' '
    };
    if tai || date {
        let kind: &[u8] = if tai {
            b"TAI "
        } else if line[10] == b'_' {
            b"DATE_ "
        } else {
            b"DATET "
        };
        [kind, &line[26..]].concat()
    } else {
        line.to_vec()
    }
}

fn mask(bytes: &[u8]) -> Vec<u8> {
    bytes
        .split_inclusive(|&b| b == b'\n')
        .flat_map(mask_line)
        .collect()
}

/// The directory's files (but `config`, which the test wrote): names with archive labels
/// masked, in name order, each with its mode and masked contents.
fn snapshot(dir: &Path) -> Vec<(String, u32, Vec<u8>)> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n != "config")
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let path = dir.join(&name);
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777;
            let shown = if name.len() == 27 && name.starts_with('@') {
                format!("@<label>{}", &name[25..])
            } else {
                name
            };
            (shown, mode, mask(&std::fs::read(&path).unwrap()))
        })
        .collect()
}

/// Makes `count` directories under `root/side` with the given configs.
fn dirs(root: &Path, side: &str, configs: &[&str]) -> Vec<PathBuf> {
    configs
        .iter()
        .enumerate()
        .map(|(i, config)| {
            let dir = root.join(side).join(format!("log{i}"));
            std::fs::create_dir_all(&dir).unwrap();
            if !config.is_empty() {
                std::fs::write(dir.join("config"), config).unwrap();
            }
            dir
        })
        .collect()
}

/// Lines of several kinds: facility prefixes for patterns, control bytes for -r, lengths
/// around -l and the size limits.
fn input() -> Vec<u8> {
    let mut out = Vec::new();
    for i in 1..=60 {
        let facility = ["auth.info", "kern.err", "daemon.notice", "user.warn"][i % 4];
        writeln!(out, "{facility}: message {i} with\ta tab and \x01 and xyz").unwrap();
        if i % 7 == 0 {
            writeln!(out, "{facility}: long {i} {}", "a".repeat(i * 23)).unwrap();
        }
        if i % 11 == 0 {
            out.push(b'\n');
        }
    }
    out
}

/// Both programs on the same input with the same configs: same files, same stderr.
fn compare(args: &[&str], configs: &[&str]) {
    let tmp = tempfile::tempdir().unwrap();
    let ours = dirs(tmp.path(), "warden", configs);
    let theirs = dirs(tmp.path(), "debian", configs);
    let input = input();
    let our_err = feed(&warden_svlogd(tmp.path()), args, &ours, &input);
    let their_err = feed(&debian(), args, &theirs, &input);
    for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
        let (a, b) = (snapshot(a), snapshot(b));
        if a != b {
            let show = |s: &[(String, u32, Vec<u8>)]| {
                s.iter()
                    .map(|(n, m, c)| format!("{n} {m:o}\n{}", String::from_utf8_lossy(c)))
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            panic!(
                "{args:?} dir {i} config {:?}:\n--- warden\n{}\n--- debian\n{}",
                configs[i],
                show(&a),
                show(&b)
            );
        }
    }
    assert_eq!(
        String::from_utf8_lossy(&mask(&our_err)),
        String::from_utf8_lossy(&mask(&their_err)),
        "stderr of {args:?}"
    );
}

#[test]
fn labels_tt_ttt_and_t_match_svlogd() {
    for args in [&["-tt"][..], &["-ttt"], &["-t"], &[]] {
        compare(args, &[""]);
    }
    // Debian's shared svlogd service: -tt -b 2048.
    compare(&["-tt", "-b", "2048"], &[""]);
}

#[test]
fn size_and_count_configs_rotate_as_svlogd() {
    compare(
        &["-tt"],
        &["s3000\nn3\n", "s0\n", "s2k\nn0\n", "s1500\nn4\nN2\n"],
    );
    // Below the line length a limit cuts lines (and their labels) between files: unlabelled,
    // so that the masking cannot hide a difference.
    compare(&[], &["s100\nn2\n", "s333\nn3\n"]);
}

#[test]
fn patterns_select_lines_across_several_dirs_as_svlogd() {
    compare(
        &["-ttt"],
        &[
            "-*\n+auth.*\n",
            "-*\n+kern.*\ne*err*\npKERN: \n",
            "-auth.*\n-kern.*\n",
            "-*\n+*message+ 1*\nE*\n",
            "s2000\n-*long*\n",
        ],
    );
}

#[test]
fn replacement_and_line_length_options_match_svlogd() {
    compare(
        &["-ttt", "-r", "#", "-R", "xyz", "-l", "100", "-b", "200"],
        &["s5000\nn2\n", "-*\n+*err*\n"],
    );
    compare(&["-t", "-l", "50"], &["s0\n", "pP \n-*\n+kern*\n"]);
    compare(&["-R", "a"], &[""]);
}

#[test]
fn processor_runs_on_rotated_files_as_svlogd() {
    compare(
        &["-tt"],
        &[
            "s2000\nn3\n!tr a-z A-Z; (cat <&4; echo seen) >&5\n",
            "s1500\n!wc -l\n",
        ],
    );
}

/// Every datagram that arrives on `socket` within a short quiet spell, masked.
fn datagrams(socket: &UdpSocket) -> Vec<Vec<u8>> {
    socket
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut got = Vec::new();
    let mut buf = vec![0u8; 65536];
    while let Ok(n) = socket.recv(&mut buf) {
        got.push(mask(&buf[..n]));
    }
    got
}

#[test]
fn udp_copies_to_a_loopback_socket_as_svlogd() {
    let tmp = tempfile::tempdir().unwrap();
    let input = input();
    let mut results = Vec::new();
    for (side, program) in [("warden", warden_svlogd(tmp.path())), ("debian", debian())] {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = socket.local_addr().unwrap().port();
        let configs = [
            format!("u127.0.0.1:{port}\npUDP: \n-*\n+*1*\n"),
            format!("U127.0.0.1:{port}\n-*\n+kern.*\n"),
        ];
        let configs: Vec<&str> = configs.iter().map(String::as_str).collect();
        let dirs = dirs(tmp.path(), side, &configs);
        feed(&program, &["-tt", "-l", "60"], &dirs, &input);
        let packets = datagrams(&socket);
        assert!(packets.len() > 10, "{side}: {} datagrams", packets.len());
        let files: Vec<_> = dirs.iter().map(|d| snapshot(d)).collect();
        results.push((packets, files));
    }
    assert_eq!(results[0].0.len(), results[1].0.len(), "datagram count");
    for (a, b) in results[0].0.iter().zip(&results[1].0) {
        assert_eq!(String::from_utf8_lossy(a), String::from_utf8_lossy(b));
    }
    assert_eq!(results[0].1, results[1].1, "files beside the UDP copy");
}

/// All `name` lines in `dir`'s archives and `current`, labels cut off. A rotation between
/// the listing and the reads (`current` renamed away) makes it read the directory again.
fn logged_lines(dir: &Path) -> Vec<String> {
    for _ in 0..50 {
        if let Some(lines) = try_logged_lines(dir) {
            return lines;
        }
    }
    panic!("{} kept rotating under the reads", dir.display());
}

fn try_logged_lines(dir: &Path) -> Option<Vec<String>> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with('@') || n == "current")
        .collect();
    names.sort();
    let mut lines = Vec::new();
    for name in names {
        let text = match std::fs::read(dir.join(name)) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => panic!("{}: {e}", dir.display()),
        };
        for line in text.split(|&b| b == b'\n') {
            if line.len() > 26 {
                lines.push(String::from_utf8_lossy(&line[26..]).into_owned());
            }
        }
    }
    Some(lines)
}

#[test]
fn killing_warden_svlogd_mid_stream_loses_no_line() {
    let tmp = tempfile::tempdir().unwrap();
    let program = warden_svlogd(tmp.path());
    let dir = tmp.path().join("log");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config"), "s20000\nn0\n").unwrap();
    // The test holds both ends of the pipe, as svscan does: the writer hands its end back, so
    // no killed logger ever sees the end of the input and exits cleanly by chance.
    let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
    let total = 20_000;
    let writer = std::thread::spawn(move || {
        let mut w = std::fs::File::from(write);
        for i in 0..total {
            writeln!(w, "line {i:06} {}", "x".repeat(i % 90)).unwrap();
        }
        w
    });
    let start = || {
        Spawned::new(
            Command::new(&program)
                .arg("-tt")
                .arg(&dir)
                .stdin(Stdio::from(read.try_clone().unwrap()))
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )
    };
    let deadline = Instant::now() + DEADLINE;
    let mut kills = 0;
    while !writer.is_finished() && Instant::now() < deadline {
        let mut logger = start();
        std::thread::sleep(Duration::from_millis(40));
        let _ = logger.child.kill();
        let _ = logger.child.wait();
        kills += 1;
    }
    let mut write = writer.join().unwrap();
    // One more logger is killed once it has written a last marker line to `current`: that
    // `current`, never closed cleanly, is what the next logger must keep as an `.u` archive.
    let mut logger = start();
    writeln!(write, "marker").unwrap();
    warden_tests::wait_until("the marker in current", DEADLINE, || {
        std::fs::read(dir.join("current")).is_ok_and(|c| c.ends_with(b" marker\n"))
    });
    let _ = logger.child.kill();
    let _ = logger.child.wait();
    kills += 1;
    drop(write);
    // The last one reads to the end: no writer is left once the test lets go of its end.
    let mut last = Spawned::new(
        Command::new(&program)
            .arg("-tt")
            .arg(&dir)
            .stdin(Stdio::from(read))
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    assert!(last.wait_exit(DEADLINE).success());
    let lines = logged_lines(&dir);
    let mut seen = vec![false; total];
    for line in &lines {
        if let Some(n) = line
            .strip_prefix("line ")
            .and_then(|l| l.get(..6))
            .and_then(|n| n.parse::<usize>().ok())
        {
            if let Some(s) = seen.get_mut(n) {
                *s = true;
            }
        }
    }
    let missing: Vec<usize> = (0..total).filter(|&i| !seen[i]).collect();
    assert!(kills > 2, "the logger was killed {kills} times");
    assert!(
        missing.is_empty(),
        "{} lines lost after {kills} kills, first {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    // A killed svlogd's current is kept as an unfinished archive, as svlogd does.
    assert!(std::fs::read_dir(&dir).unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .ends_with(".u")));
}

#[test]
fn alrm_rotates_and_hup_rereads_the_config() {
    let tmp = tempfile::tempdir().unwrap();
    let program = warden_svlogd(tmp.path());
    let dir = tmp.path().join("log");
    std::fs::create_dir_all(&dir).unwrap();
    let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
    let err = tmp.path().join("stderr");
    let mut logger = Spawned::new(
        Command::new(&program)
            .args(["-tt", "-v"])
            .arg(&dir)
            .stdin(Stdio::from(read))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&err).unwrap()),
    );
    let mut w = std::fs::File::from(write);
    let current = dir.join("current");
    let wait_for = |what: &str, cond: &dyn Fn() -> bool| {
        warden_tests::wait_until(what, DEADLINE, cond);
    };
    writeln!(w, "auth.info: one").unwrap();
    wait_for("the first line", &|| {
        std::fs::read(&current).is_ok_and(|c| c.ends_with(b"one\n"))
    });
    let pid = rustix::process::Pid::from_raw(logger.pid()).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::ALARM).unwrap();
    let archived = || {
        std::fs::read_dir(&dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".s")
            })
            .count()
    };
    wait_for("ALRM to rotate", &|| archived() == 1);
    std::fs::write(dir.join("config"), "-*\n+kern.*\n").unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::HUP).unwrap();
    // -v reports the config read again; the lines written after it meet the new config.
    wait_for("HUP to re-read the config", &|| {
        std::fs::read_to_string(&err).is_ok_and(|e| e.contains("/config"))
    });
    writeln!(w, "auth.info: two").unwrap();
    writeln!(w, "kern.err: three").unwrap();
    drop(w);
    assert!(logger.wait_exit(DEADLINE).success());
    let text = std::fs::read_to_string(&current).unwrap();
    assert!(text.ends_with("kern.err: three\n"), "{text}");
    assert!(!text.contains("two"), "{text}");
}

/// Stdin that is not a pipe (here a socket, as from a socket server; a file or a terminal
/// alike) is read, not tee'd. A batch that rotates partway must still be written out whole
/// while the input stays open and silent: warden's svlogd once held the lines after the first
/// rotation back until more input came (and, with a file, read on and on into memory).
#[test]
fn svlogd_mode_on_a_socket_writes_lines_past_a_rotation_without_more_input() {
    let tmp = tempfile::tempdir().unwrap();
    let program = warden_svlogd(tmp.path());
    let dir = tmp.path().join("log");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config"), "s2000\nn100\n").unwrap();
    let (mut ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    let mut logger = Spawned::new(
        Command::new(&program)
            .arg("-tt")
            .arg(&dir)
            .stdin(Stdio::from(std::os::fd::OwnedFd::from(theirs)))
            .stdout(Stdio::null()),
    );
    let expected: Vec<String> = (0..200)
        .map(|i| format!("{i:05} {}", "y".repeat(50)))
        .collect();
    let mut input = expected.join("\n").into_bytes();
    input.push(b'\n');
    // One write: the logger reads it as one batch, which rotates many times over.
    ours.write_all(&input).unwrap();
    warden_tests::wait_until("every line, the input still open", DEADLINE, || {
        logged_lines(&dir).len() == expected.len()
    });
    assert_eq!(logged_lines(&dir), expected);
    drop(ours);
    assert!(logger.wait_exit(DEADLINE).success());
    assert_eq!(logged_lines(&dir), expected);
}
