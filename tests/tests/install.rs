//! `cargo xtask install` (docs/install.md) into a temp destdir, and the man pages against each
//! program's `--help`. The .deb is installed and purged for real by tests/deb.sh (root, apt).

use std::path::{Path, PathBuf};
use std::process::Command;
use warden_tests::{bin, run};

const WAIT: std::time::Duration = std::time::Duration::from_secs(300);

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// `cargo xtask install` with the debug binaries (no build) and `args`, into a temp destdir.
fn install(args: &[&str]) -> (tempfile::TempDir, PathBuf) {
    let dest = tempfile::tempdir().unwrap();
    let bins = bin("svctl").parent().unwrap().to_owned();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let (code, out, err) = run(
        Command::new(cargo)
            .current_dir(workspace())
            .args([
                "run", "-q", "-p", "xtask", "--", "install", "--prefix", "/usr",
            ])
            .arg("--destdir")
            .arg(dest.path())
            .arg("--bins")
            .arg(&bins)
            .args(args),
        WAIT,
    );
    assert_eq!(code, Some(0), "xtask install: {out} {err}");
    let top = dest.path().join("usr");
    (dest, top)
}

fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn install_puts_svctl_on_path_and_the_daemons_in_lib_warden() {
    let (_dest, top) = install(&[]);
    let files = files_under(&top);
    let want = [
        "bin/svctl",
        "lib/warden/init",
        "lib/warden/logger",
        "lib/warden/supervise",
        "lib/warden/svscan",
        "share/bash-completion/completions/svctl",
        "share/doc/warden/README.md",
        "share/doc/warden/install.md",
        "share/man/man8/svctl.8",
        "share/man/man8/warden-init.8",
        "share/man/man8/warden-logger.8",
        "share/man/man8/warden-supervise.8",
        "share/man/man8/warden-svscan.8",
    ];
    assert_eq!(files, want);
    // Nothing shadows util-linux's logger, daemontools' programs or the system's power commands.
    assert!(!files
        .iter()
        .any(|f| f.starts_with("sbin/") || f.starts_with("bin/") && f != "bin/svctl"));
    let (code, out, _) = run(Command::new(top.join("bin/svctl")).arg("--version"), WAIT);
    assert_eq!(code, Some(0));
    assert!(out.starts_with("svctl"), "{out}");
}

#[test]
fn install_makes_power_and_svlogd_links_only_when_asked() {
    let (_dest, top) = install(&["--power", "--svlogd"]);
    for name in ["poweroff", "reboot", "halt"] {
        let link = top.join("sbin").join(name);
        assert_eq!(
            std::fs::read_link(&link).unwrap(),
            Path::new("../bin/svctl")
        );
        assert!(link.is_file(), "{name} resolves");
    }
    let svlogd = top.join("bin/svlogd");
    assert_eq!(
        std::fs::read_link(&svlogd).unwrap(),
        Path::new("../lib/warden/logger")
    );
    assert!(svlogd.is_file());
    assert!(!top.join("bin/logger").exists());
}

/// Every option and command a program's usage text names appears in its man page.
fn man_is_true_to_help(page: &str, program: &str, args: &[&str]) {
    let source = std::fs::read_to_string(workspace().join("man").join(page)).unwrap();
    // The text as it reads: roff's `\-` is `-`, font escapes dropped.
    let man = source
        .replace("\\-", "-")
        .replace("\\fB", "")
        .replace("\\fI", "")
        .replace("\\fR", "");
    let (_, out, err) = run(Command::new(bin(program)).args(args), WAIT);
    let help = format!("{out}{err}");
    assert!(help.contains("usage"), "{program} {args:?}: {help}");
    let mut checked = 0;
    for word in help.split(|c: char| c.is_whitespace() || "[]|,()=".contains(c)) {
        let word = word.trim_matches(['.', ':', '`', '\'', '"']);
        let is_option = word.starts_with('-')
            && word.len() > 1
            && word != "--"
            && word
                .chars()
                .nth(1)
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '-');
        if is_option {
            checked += 1;
            assert!(
                man.contains(word),
                "{page} lacks {word} of `{program} --help`"
            );
        }
    }
    assert!(checked > 0, "no option found in {program}'s help");
}

#[test]
fn man_pages_are_true_to_help() {
    man_is_true_to_help("svctl.8", "svctl", &["--help"]);
    man_is_true_to_help("warden-logger.8", "logger", &["--help"]);
    man_is_true_to_help("warden-svscan.8", "svscan", &["--help"]);
    man_is_true_to_help("warden-init.8", "init", &["--help"]);
    // supervise has no --help: its usage comes with a bad command line.
    man_is_true_to_help("warden-supervise.8", "supervise", &[]);
    // Every command svctl's help lists is in the page.
    let (_, help, _) = run(Command::new(bin("svctl")).arg("--help"), WAIT);
    let man = std::fs::read_to_string(workspace().join("man/svctl.8")).unwrap();
    for command in [
        "up",
        "start",
        "down",
        "stop",
        "once",
        "restart",
        "pause",
        "cont",
        "hup",
        "alarm",
        "interrupt",
        "quit",
        "usr1",
        "usr2",
        "term",
        "kill",
        "exit",
        "check",
        "status",
        "log",
        "rescan",
        "shutdown",
        "poweroff",
        "reboot",
        "halt",
    ] {
        assert!(help.contains(command), "svctl --help lacks {command}");
        assert!(man.contains(command), "svctl.8 lacks {command}");
    }
    // Each exit code of the help is in the page.
    for line in help.lines() {
        let mut words = line.split_whitespace();
        if let (Some(code), Some(_)) = (words.next(), words.next()) {
            if code.parse::<u32>().is_ok() && line.starts_with("  ") {
                assert!(
                    man.contains(&format!(".B {code}\n")),
                    "svctl.8 lacks exit {code}"
                );
            }
        }
    }
}

#[test]
fn man_pages_render_without_warnings() {
    warden_tests::require("man", "man-db");
    for page in [
        "svctl.8",
        "warden-svscan.8",
        "warden-supervise.8",
        "warden-logger.8",
        "warden-init.8",
    ] {
        let path = workspace().join("man").join(page);
        let (code, out, err) = run(
            Command::new("man")
                .args(["--warnings", "-l"])
                .arg(&path)
                .env("MANWIDTH", "80")
                .env("MAN_KEEP_FORMATTING", "0"),
            WAIT,
        );
        assert_eq!(code, Some(0), "{page}: {err}");
        assert!(err.trim().is_empty(), "{page} warns: {err}");
        // Bold and underline come as overstrikes: keep the last of each `x BS y`.
        let mut text = String::new();
        for c in out.chars() {
            if c == '\u{8}' {
                text.pop();
            } else {
                text.push(c);
            }
        }
        let out = text;
        assert!(
            out.contains("NAME") && out.contains("SYNOPSIS"),
            "{page}: {out}"
        );
    }
}
