//! svscan: supervises every service directory in a scan directory, one `supervise` each (and
//! one for its `log/`, joined by a pipe svscan holds), picks up new ones as inotify reports
//! them, and tears the tree down in order. Runs as PID 1 (stage 2) or as an ordinary process.

mod catchall;
mod controldir;
mod gates;
mod graph;
mod launch;
mod life;
mod options;
mod scandir;
mod scanner;
mod system;
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
    if pid1 {
        // Process 1 must never just die (the kernel panics, or the container ends with
        // every service orphaned): a panic goes to the last resort, never to an abort.
        std::panic::set_hook(Box::new(|info| {
            warden::say!("svscan: fatal: internal error: {info}");
            last_resort(&format!("svscan panicked: {info}"));
        }));
    }
    let options = match options::parse(std::env::args_os().skip(1)) {
        Ok(Parsed::Run(options)) => options,
        Ok(Parsed::Help) => {
            warden::diag::out(&format!("{USAGE}\n"));
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            warden::say!("svscan: fatal: {e}\n{USAGE}");
            if pid1 {
                last_resort(&e);
            }
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let mut scanner = match set_up(&options, pid1) {
        Ok(scanner) => scanner,
        Err(e) => {
            warden::say!("svscan: fatal: {e}");
            if pid1 {
                last_resort(&e);
            }
            return ExitCode::from(EXIT_FATAL);
        }
    };
    scanner.start();
    #[cfg(debug_assertions)]
    if pid1 && std::env::var_os("WARDEN_TEST_PANIC").is_some_and(|v| v == "svscan") {
        // Fault injection for the test of the last resort; debug builds only.
        panic!("WARDEN_TEST_PANIC=svscan");
    }
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
    if let Ok(dir) = std::env::current_dir() {
        let _ = CRASH_PROGRAM.set(dir.join(warden::svdir::SVSCAN_DIR).join(CRASH));
    }
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

/// `SCANDIR/.svscan/crash`, s6-svscan's `.s6-svscan/crash`: what process 1 execs when svscan
/// cannot go on. Known once svscan is in the scan directory.
static CRASH_PROGRAM: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
const CRASH: &str = "crash";
/// The crash program's environment: why svscan gave up.
const CRASH_REASON_VAR: &str = "WARDEN_CRASH_REASON";

/// What process 1 does when svscan cannot go on (a fatal error at start, a panic): never exit
/// on a machine, never abort. In order: exec `SCANDIR/.svscan/crash` (with
/// `WARDEN_CRASH_REASON`), if it is there; in a container, exit 111 (the runtime sees it);
/// on a machine an emergency shell (`/bin/sh`) on the console, again each time it exits,
/// reaping every child meanwhile; with no shell, only reaping.
fn last_resort(reason: &str) -> ! {
    if let Some(crash) = CRASH_PROGRAM.get().filter(|p| p.is_file()) {
        let error = Command::new(crash).env(CRASH_REASON_VAR, reason).exec();
        warden::say!(
            "svscan: warning: unable to exec {}: {error}",
            crash.display()
        );
    }
    if in_container() {
        warden::say!("svscan: fatal: {reason}: exiting (process 1 of a container)");
        std::process::exit(i32::from(EXIT_FATAL));
    }
    warden::say!(
        "svscan: fatal: {reason}: starting an emergency shell (/bin/sh); leave with \
         `reboot -f` or `poweroff -f`"
    );
    loop {
        let started = std::time::Instant::now();
        let shell = Command::new("/bin/sh").env("PS1", "(emergency) # ").spawn();
        let pid = match shell {
            Ok(child) => child.id(),
            Err(e) => {
                warden::say!("svscan: warning: unable to start /bin/sh: {e}; only reaping now");
                reap_forever();
            }
        };
        // Every child is reaped, the shell's exit among them.
        loop {
            match rustix::process::wait(rustix::process::WaitOptions::empty()) {
                Ok(Some((reaped, _))) if reaped.as_raw_nonzero().get() as u32 == pid => break,
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(_) => break,
            }
        }
        // A shell that dies at once (no terminal) must not spin: a 1 s pause, as runsv's.
        let left = std::time::Duration::from_secs(1).saturating_sub(started.elapsed());
        std::thread::sleep(left);
    }
}

fn reap_forever() -> ! {
    loop {
        if rustix::process::wait(rustix::process::WaitOptions::empty()).is_err() {
            // No child left: block until a signal (SIGCHLD of a new orphan) interrupts.
            let _ = rustix::event::poll(&mut [], None);
        }
    }
}

/// Process 1 of a container (init's test: `reboot(CAD_OFF)` fails in any PID namespace but
/// the first, and without CAP_SYS_BOOT; as on a machine init has set it already, it changes
/// nothing there), or the `container` variable of systemd's convention.
fn in_container() -> bool {
    if !rustix::process::getpid().is_init() {
        return true;
    }
    std::env::var_os("container").is_some()
        || rustix::system::reboot(rustix::system::RebootCommand::CadOff).is_err()
}
