//! svscan: supervises every service directory in a scan directory, one `supervise` each (and
//! one for its `log/`, joined by a pipe svscan holds), picks up new ones as inotify reports
//! them, and tears the tree down in order. Runs as PID 1 (stage 2) or as an ordinary process.

mod controldir;
mod launch;
mod options;
mod scandir;
mod scanner;
mod tree;

use options::{Options, Parsed, Uncaught, DEFAULT_UNCAUGHT, USAGE};
use scanner::Scanner;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use tree::{Programs, Tree};

/// Exit statuses: 0 after a teardown (`t`, TERM, INT), 10/11/12 after a poweroff/reboot/halt
/// request outside PID 1, 100 for a usage error, 111 when svscan cannot start.
const EXIT_USAGE: u8 = 100;
const EXIT_FATAL: u8 = 111;
/// Stage 3's environment: the status a container is to exit with (`container-exit`).
const EXIT_STATUS_VAR: &str = "WARDEN_EXIT_STATUS";

fn main() -> ExitCode {
    let pid1 = rustix::process::getpid().is_init();
    let options = match options::parse(std::env::args_os().skip(1)) {
        Ok(Parsed::Run(options)) => options,
        Ok(Parsed::Help) => {
            warden::diag::out(&format!("{USAGE}\n"));
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            warden::say!("svscan: fatal: {e}\n{USAGE}");
            if pid1 {
                last_resort();
            }
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let mut scanner = match set_up(&options, pid1) {
        Ok(scanner) => scanner,
        Err(e) => {
            warden::say!("svscan: fatal: {e}");
            if pid1 {
                last_resort();
            }
            return ExitCode::from(EXIT_FATAL);
        }
    };
    scanner.start();
    loop {
        let ending = scanner.run();
        if !pid1 {
            return ExitCode::from(ending.exit_code());
        }
        let init = next_stage();
        let mut stage3 = Command::new(&init);
        stage3.arg("--stage3").arg(ending.stage3_action());
        if let scanner::Ending::ContainerExit(status) = ending {
            // In a container init's stage 3 exits: with the main service's status.
            stage3.env(EXIT_STATUS_VAR, status.to_string());
        } else {
            stage3.env_remove(EXIT_STATUS_VAR);
        }
        let error = stage3.exec();
        // PID 1 must not exit: report, and go back to supervising.
        warden::say!(
            "svscan: warning: unable to exec {} --stage3 {}: {error}; supervising again",
            init.display(),
            ending.stage3_action()
        );
        scanner.resume();
    }
}

fn set_up(options: &Options, pid1: bool) -> Result<Scanner, String> {
    // Before anything can start a child, so no SIGCHLD is missed.
    let signals = warden::signal::SignalPipe::new(Scanner::signals())
        .map_err(|e| format!("unable to set up signal handling: {e}"))?;
    let uncaught = uncaught_dir(options, pid1);
    // Found before the chdir, while a relative PATH entry still means what it meant.
    let programs = Programs {
        supervise: find_program("supervise"),
    };
    std::env::set_current_dir(&options.scandir).map_err(|e| {
        format!(
            "unable to change directory to {}: {e}",
            options.scandir.display()
        )
    })?;
    let control = match controldir::ControlDir::open() {
        Ok(control) => Some(control),
        Err(controldir::ControlDirError::Locked) if !pid1 => {
            return Err(controldir::ControlDirError::Locked.to_string())
        }
        Err(e) if pid1 => {
            warden::say!("svscan: warning: {e}: svctl rescan and shutdown commands will not work");
            None
        }
        Err(e) => return Err(e.to_string()),
    };
    let mut tree = Tree::new(programs);
    if let Some(dir) = uncaught {
        set_up_uncaught(&mut tree, dir, control.is_some());
    }
    Ok(Scanner::new(options.grace, pid1, signals, control, tree))
}

/// The catch-all logger's directory, absolute (it is resolved before svscan's chdir).
fn uncaught_dir(options: &Options, pid1: bool) -> Option<PathBuf> {
    let dir = match &options.uncaught {
        Uncaught::Dir(dir) => dir.clone(),
        Uncaught::Default if pid1 => PathBuf::from(DEFAULT_UNCAUGHT),
        Uncaught::Default | Uncaught::Off => return None,
    };
    match std::path::absolute(&dir) {
        Ok(dir) => Some(dir),
        Err(e) => {
            warden::say!(
                "svscan: warning: unable to use {} for the catch-all logger: {e}; services \
                 without a log/ write where svscan does",
                dir.display()
            );
            None
        }
    }
}

/// Makes the catch-all logger's directory and names it `.svscan/uncaught` for `svctl log
/// .uncaught`. Failing, services without a `log/` write where svscan does, as without it:
/// svscan, maybe PID 1, goes on.
fn set_up_uncaught(tree: &mut Tree, dir: PathBuf, have_control_dir: bool) {
    use std::os::unix::fs::DirBuilderExt;
    let made = std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(&dir)
        .and_then(|()| tree.set_uncaught(dir.clone(), std::time::Instant::now()));
    if let Err(e) = made {
        warden::say!(
            "svscan: warning: unable to set up the catch-all logger in {}: {e}; services \
             without a log/ write where svscan does",
            dir.display()
        );
        return;
    }
    if !have_control_dir {
        return;
    }
    // A new symlink under a temporary name, renamed over the old one: never a moment
    // without a link, and nothing followed on the way.
    let link = format!("{}/{}", warden::svdir::SVSCAN_DIR, UNCAUGHT_LINK);
    let temporary = format!("{link}.new");
    let _ = rustix::fs::unlinkat(rustix::fs::CWD, &temporary, rustix::fs::AtFlags::empty());
    let linked = rustix::fs::symlinkat(&dir, rustix::fs::CWD, &temporary)
        .and_then(|()| rustix::fs::renameat(rustix::fs::CWD, &temporary, rustix::fs::CWD, &link));
    if let Err(e) = linked {
        warden::say!("svscan: warning: unable to make {link}: {e}: svctl log .uncaught will not find the catch-all log");
    }
}

/// The name, in `.svscan/`, of the symlink to the catch-all logger's directory.
const UNCAUGHT_LINK: &str = "uncaught";

fn own_dir() -> Option<PathBuf> {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
}

/// Warden's companion `name` beside svscan's own executable (never one from PATH, where
/// `supervise` is daemontools'); said once here when there is none.
fn find_program(name: &str) -> Result<PathBuf, String> {
    let found = warden::companion::find(name);
    if let Err(why) = &found {
        warden::say!("svscan: warning: {why}");
    }
    found
}

/// `init` next to svscan (the boot image keeps them together), else /sbin/init.
fn next_stage() -> PathBuf {
    own_dir()
        .map(|dir| dir.join("init"))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("/sbin/init"))
}

/// PID 1 that cannot supervise anything still must not exit: an emergency shell, else reap
/// forever.
fn last_resort() -> ! {
    let error = Command::new("/bin/sh").exec();
    warden::say!("svscan: warning: unable to exec /bin/sh: {error}; only reaping children now");
    loop {
        if rustix::process::wait(rustix::process::WaitOptions::empty()).is_err() {
            // No child left: block until a signal (SIGCHLD of a new orphan) interrupts.
            let _ = rustix::event::poll(&mut [], None);
        }
    }
}
