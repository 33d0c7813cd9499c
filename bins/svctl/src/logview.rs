//! `svctl log SERVICE`: the default `log/run` is `exec logger ./main`, so the lines live in
//! `SERVICE/log/main`; reading them is `logger --show`'s job, svctl only finds the directory
//! and execs it.

use crate::outcome::Outcome;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;
use warden::svdir::ServiceDir;

#[derive(Debug)]
pub struct LogView {
    pub lines: Option<u64>,
    pub follow: bool,
}

/// The name `svctl log` takes for the catch-all log: what services without a `log/` write,
/// kept by the logger svscan runs for them (as PID 1, or with `svscan -u DIR`).
pub const UNCAUGHT: &str = ".uncaught";

/// Replaces svctl by `logger --show [-n N] [-f] DIR`; returns only on failure.
pub fn exec_logger(dir: &ServiceDir, view: &LogView) -> Outcome {
    let main = dir.path.join(warden::service::LOG).join("main");
    if !main.is_dir() {
        let cause = if dir.path.is_dir() {
            "no log/main directory (is there a log/ that runs `logger ./main`?)"
        } else {
            "no such service"
        };
        warden::say!(
            "svctl: fatal: unable to show the log of {}: {cause}",
            dir.path.display()
        );
        return Outcome::NoSuchService;
    }
    show(main, view)
}

/// `svctl log .uncaught`: the catch-all logger's `main`, found through the symlink svscan
/// keeps at `SCANDIR/.svscan/uncaught`.
pub fn exec_uncaught(scandir: &std::path::Path, view: &LogView) -> Outcome {
    let main = scandir
        .join(warden::svdir::SVSCAN_DIR)
        .join("uncaught")
        .join("main");
    if !main.is_dir() {
        warden::say!(
            "svctl: fatal: unable to show the catch-all log: no {} (svscan runs the catch-all \
             logger as PID 1, or with -u DIR)",
            main.display()
        );
        return Outcome::NoSuchService;
    }
    show(main, view)
}

fn show(main: PathBuf, view: &LogView) -> Outcome {
    let logger = logger_program();
    let mut cmd = Command::new(&logger);
    cmd.arg("--show");
    if let Some(n) = view.lines {
        cmd.arg("-n").arg(n.to_string());
    }
    if view.follow {
        cmd.arg("-f");
    }
    cmd.arg(&main);
    let error = cmd.exec();
    warden::say!("svctl: fatal: unable to run {}: {error}", logger.display());
    Outcome::System
}

/// warden's `logger` next to svctl's own executable, else whatever `logger` is on PATH.
pub fn logger_program() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("logger")))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("logger"))
}
