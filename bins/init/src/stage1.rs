//! Stage 1: from the kernel's hand-off to `exec svscan`.

use crate::config::{Config, DEFAULT_PATH};
use crate::{emergency, hook, mounts, reap};
use rustix::fs::{open, Mode, OFlags};
use rustix::io::Errno;
use rustix::process::{getpid, Pid};
use rustix::system::{reboot, RebootCommand};
use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Whether this process 1 runs a container rather than a machine. Disabling ctrl-alt-del is
/// refused in a PID namespace other than the first (EINVAL) or without CAP_SYS_BOOT (EPERM),
/// which is exactly where reboot(2) cannot reboot: so the probe also does the job. The
/// `container` variable (systemd's convention, set by podman, LXC, nspawn) forces it.
pub fn probe_container() -> bool {
    if std::env::var_os("container").is_some() {
        return true;
    }
    reboot(RebootCommand::CadOff).is_err()
}

pub fn run(ignored: &[OsString]) -> u8 {
    if getpid() != Pid::INIT {
        warden::say!(
            "init: fatal: stage 1 must run as process 1 (to run a command under init: \
             init -- CMD; to supervise without booting: svscan DIR)"
        );
        return 100;
    }
    // Point of no return: process 1 may not exit, so from here on every error is a warning,
    // and one that leaves nothing to do starts an emergency shell.
    let container = probe_container();
    emergency::install_panic_hook(container);
    if container {
        warden::say!("init: container mode: leaving the console, hostname and reboot to the host");
    } else {
        warden::say!("init: stage 1");
    }
    mounts::mount_early();
    if !container {
        console_on_stdio();
    }
    let cmdline = if container {
        None
    } else {
        std::fs::read_to_string("/proc/cmdline").ok()
    };
    let config = Config::load(cmdline.as_deref());
    for problem in &config.problems {
        warden::say!("init: warning: {problem}");
    }
    if !ignored.is_empty() {
        warden::say!(
            "init: warning: ignoring arguments: {}",
            ignored
                .iter()
                .map(|w| crate::shown(w))
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    if !container {
        set_hostname(&config.hostname_file);
    }
    let path = std::env::var("PATH").unwrap_or_else(|_| DEFAULT_PATH.into());
    // However long it takes (fsck): the boot waits for it.
    hook::run(
        &config.boot_hook,
        &[],
        Some(&path),
        &reap::Reaper::new(&[]),
        None,
    );
    exec_svscan(&config.scandir, &path, container)
}

/// The kernel opens /dev/console for process 1 as fds 0–2 when the root (the initramfs) has
/// the node. Those fds are kept: they refer to the node on the root, so they do not pin the
/// devtmpfs /dev, which stage 3 can then unmount. Only when the kernel found no console are
/// they opened here, from devtmpfs (over the placeholders of [`crate::stdio::hold`]).
fn console_on_stdio() {
    use crate::stdio::is_placeholder;
    use std::os::fd::AsFd;
    let stdio_open = !is_placeholder(std::io::stdin().as_fd())
        && !is_placeholder(std::io::stdout().as_fd())
        && !is_placeholder(std::io::stderr().as_fd());
    if stdio_open {
        return;
    }
    let console = match open(
        "/dev/console",
        OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(e) => {
            warden::say!("init: warning: unable to open /dev/console: {e}");
            return;
        }
    };
    let results = [
        rustix::stdio::dup2_stdin(&console),
        rustix::stdio::dup2_stdout(&console),
        rustix::stdio::dup2_stderr(&console),
    ];
    if let Some(Err(e)) = results.iter().find(|r| r.is_err()) {
        warden::say!("init: warning: unable to put /dev/console on fds 0-2: {e}");
    }
}

fn set_hostname(file: &Path) {
    let name = match std::fs::read_to_string(file) {
        Ok(text) => text.trim().to_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(e) => {
            warden::say!("init: warning: unable to read {}: {e}", file.display());
            return;
        }
    };
    if name.is_empty() {
        return;
    }
    if let Err(e) = rustix::system::sethostname(name.as_bytes()) {
        warden::say!("init: warning: unable to set the hostname to {name}: {e}");
    }
}

/// svscan next to this executable (the contract svscan keeps for finding init), else /sbin,
/// else PATH.
fn find_svscan(path: &str) -> Option<PathBuf> {
    let beside = std::fs::read_link("/proc/self/exe")
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("svscan")));
    let candidates = beside
        .into_iter()
        .chain(std::iter::once(PathBuf::from("/sbin/svscan")))
        .chain(std::env::split_paths(path).map(|dir| dir.join("svscan")));
    candidates.into_iter().find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

fn exec_svscan(scandir: &Path, path: &str, container: bool) -> ! {
    if !scandir.is_dir() {
        emergency::shell(
            container,
            &format!(
                "unable to use scan directory {}: {}",
                scandir.display(),
                describe_missing(scandir)
            ),
        );
    }
    let Some(svscan) = find_svscan(path) else {
        emergency::shell(
            container,
            "unable to find svscan next to init, in /sbin or in PATH",
        );
    };
    warden::say!("init: exec {} {}", svscan.display(), scandir.display());
    let err = Command::new(&svscan)
        .arg(scandir)
        .env("PATH", path)
        .current_dir("/")
        .exec();
    emergency::shell(
        container,
        &format!("unable to exec {}: {err}", svscan.display()),
    )
}

fn describe_missing(path: &Path) -> String {
    match std::fs::metadata(path) {
        Ok(_) => "not a directory".into(),
        Err(e) => match e.raw_os_error().map(Errno::from_raw_os_error) {
            Some(Errno::NOENT) => "does not exist".into(),
            _ => e.to_string(),
        },
    }
}
