//! Helpers for process tests: find the built binaries, make service directories in temp dirs,
//! wait for conditions with a deadline, and leave nothing running.

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

pub use warden;

/// Path of a workspace binary, built by `cargo build --workspace` next to the test executable
/// (`target/<profile>/`). `cargo xtask test` builds them before it runs the tests.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile> directory");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace` first (cargo xtask test does)",
        path.display()
    );
    path
}

/// Waits until `cond` holds, re-checking every few milliseconds; panics naming `what` when
/// `timeout` passes first.
pub fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Writes an executable shell script.
pub fn script(path: &Path, body: &str) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("script dir");
    }
    std::fs::write(path, format!("#!/bin/sh\n{body}\n")).expect("write script");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// A service directory in a temp dir, with `run` holding `body`.
pub fn service(root: &Path, name: &str, run_body: &str) -> PathBuf {
    let dir = root.join(name);
    script(&dir.join("run"), run_body);
    dir
}

/// A child process that is killed and reaped when the test ends, pass or fail.
pub struct Spawned {
    pub child: Child,
}

impl Spawned {
    pub fn new(cmd: &mut Command) -> Spawned {
        Spawned {
            child: cmd.spawn().expect("spawn"),
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Waits for the process to exit by itself, with a deadline.
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "process {} did not exit within {timeout:?}",
                self.pid()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Live processes whose working directory is `root` or inside it: a service's processes work
/// in its directory, so these are what a test's tree left running.
pub fn processes_under(root: &Path) -> Vec<i32> {
    let root = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            let cwd = std::fs::read_link(entry.path().join("cwd")).ok()?;
            (cwd.starts_with(&root) && alive(pid)).then_some(pid)
        })
        .collect()
}

/// Ends what a test started under `root`, pass or fail: KILL to every process working there
/// (by pid), then the cgroups of its service dirs removed, which a supervisor killed hard
/// cannot do itself.
pub fn kill_under(root: &Path) {
    for pid in processes_under(root) {
        if let Some(pid) = rustix::process::Pid::from_raw(pid).filter(|_| pid > 1) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
    }
    remove_cgroups_under(root, Duration::from_secs(5));
}

/// Whether a pid names a live process (a zombie counts as dead).
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .map(|(_, rest)| !rest.starts_with('Z'))
            .unwrap_or(false),
        Err(_) => false,
    }
}

/// How many fds above 2 a child of this test process inherits: those the test runner (or a
/// CI harness) left open without close-on-exec. A test that sets a child's fd limit adds them.
pub fn inherited_fds() -> u64 {
    const O_CLOEXEC: u32 = 0o2000000;
    let Ok(entries) = std::fs::read_dir("/proc/self/fdinfo") else {
        return 0;
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&fd| fd > 2)
        .filter(|fd| {
            // `flags:` is octal; an fd closed since the listing (the listing's own) is skipped.
            let Ok(info) = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")) else {
                return false;
            };
            info.lines()
                .find_map(|l| l.strip_prefix("flags:"))
                .and_then(|f| u32::from_str_radix(f.trim(), 8).ok())
                .is_some_and(|flags| flags & O_CLOEXEC == 0)
        })
        .count() as u64
}

/// Kills a whole process group that a test started (by its pgid), ignoring errors.
pub fn kill_group(pgid: i32) {
    if pgid > 1 {
        if let Some(pid) = rustix::process::Pid::from_raw(pgid) {
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
    }
}

/// Runs a command to completion with a deadline, returning (exit code, stdout, stderr).
/// Output is read while the command runs, so a chatty command cannot block on a full pipe.
pub fn run(cmd: &mut Command, timeout: Duration) -> (Option<i32>, String, String) {
    use std::process::Stdio;
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let pid = child.id() as i32;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(timeout) {
        Ok(Ok(out)) => (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ),
        Ok(Err(e)) => panic!("{cmd:?}: {e}"),
        Err(_) => {
            if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
            panic!("{cmd:?} did not finish within {timeout:?}")
        }
    }
}

/// Panics with the install command when a peer tool the suite compares against is missing;
/// `.ci/run` installs them.
pub fn require(tool: &str, package: &str) {
    assert!(
        have(tool),
        "{tool} is not installed: apt-get install {package} (.ci/run does)"
    );
}

/// Whether an external tool (`sv`, `svstat`, `qemu-system-x86_64`...) is on PATH.
pub fn have(tool: impl AsRef<OsStr>) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|p| p.join(tool.as_ref()).is_file()))
        .unwrap_or(false)
}

/// Removes the cgroups `supervise` made (`warden:<path with / as :>@<dev>:<ino>`, see
/// `warden::svdir::cgroup_leaf`; children of this test's
/// own cgroup v2) for service dirs under `root`, once they are empty: a supervisor killed with
/// SIGKILL cannot remove its own. Waits up to `timeout` for killed processes to leave them.
/// Returns the ones that could not be removed.
pub fn remove_cgroups_under(root: &Path, timeout: Duration) -> Vec<PathBuf> {
    let Some(parent) = own_cgroup_dir() else {
        return Vec::new();
    };
    let mut needles = vec![cgroup_leaf_text(root)];
    if let Ok(real) = root.canonicalize() {
        needles.push(cgroup_leaf_text(&real));
    }
    let deadline = Instant::now() + timeout;
    loop {
        let mut left = Vec::new();
        for entry in std::fs::read_dir(&parent).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("warden:") && needles.iter().any(|n| name.contains(n.as_str())) {
                let path = entry.path();
                if std::fs::remove_dir(&path).is_err() && path.exists() {
                    left.push(path);
                }
            }
        }
        if left.is_empty() || Instant::now() >= deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `/tmp/x` as it appears in a supervise cgroup's name (`warden:tmp:x...`): `:tmp:x`.
fn cgroup_leaf_text(path: &Path) -> String {
    path.to_string_lossy().replace('/', ":")
}

/// This process's cgroup v2 directory (where the supervisors it starts make theirs).
pub fn own_cgroup_dir() -> Option<PathBuf> {
    let mount = warden::cgroupfs::mount()?;
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let own = own.lines().find_map(|l| l.strip_prefix("0::"))?.to_owned();
    Some(mount.join(own.trim_start_matches('/')))
}

/// (pid, state letter) of every child of `parent`, from /proc.
pub fn children_of(parent: i32) -> Vec<(i32, char)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(") ") else {
            continue;
        };
        let mut fields = rest.split(' ');
        let state = fields.next().and_then(|s| s.chars().next()).unwrap_or('?');
        if fields.next().and_then(|p| p.parse::<i32>().ok()) == Some(parent) {
            out.push((pid, state));
        }
    }
    out
}

/// `unshare --pid --fork --mount --propagation private --mount-proc` (and a user namespace
/// when not root), ready for the program that becomes process 1 of the fresh namespace: the
/// only place tests may exercise kill(-1), unmounting and reboot(2). unshare is named by its
/// full path, as some tests give the namespace a PATH without it.
pub fn unshare_pid_and_mount() -> Command {
    require("unshare", "util-linux");
    let unshare = std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join("unshare"))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| PathBuf::from("unshare"));
    let mut cmd = Command::new(unshare);
    if !rustix::process::geteuid().is_root() {
        cmd.args(["--user", "--map-root-user"]);
    }
    cmd.args([
        "--pid",
        "--fork",
        "--mount",
        "--propagation",
        "private",
        "--mount-proc",
    ]);
    cmd
}

/// `svscan SCANDIR` in a user namespace of its own whose inotify limits are set to
/// `instances` and `watches` (per-namespace limits: this machine's are untouched).
pub fn svscan_with_inotify_limits(scandir: &Path, instances: u32, watches: u32) -> Command {
    require("unshare", "util-linux");
    let mut cmd = Command::new("unshare");
    cmd.args(["--user", "--map-root-user", "sh", "-c"])
        .arg(format!(
            "echo {instances} > /proc/sys/user/max_inotify_instances && \
             echo {watches} > /proc/sys/user/max_inotify_watches && exec \"$@\""
        ))
        .arg("sh")
        .arg(bin("svscan"))
        .arg(scandir);
    cmd
}

/// A pseudo-terminal for a test. A program attached to it leads the terminal's session, in
/// its foreground (as a shell's foreground job, or the entry point of `docker run -it`), and
/// everything written on the terminal is kept, by a thread that reads the master, so that the
/// terminal never fills and failure messages can show it.
pub struct Pty {
    /// The master side, for a test that types on the terminal.
    pub master: std::fs::File,
    slave: std::fs::File,
    output: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

impl Pty {
    pub fn open() -> Pty {
        use std::io::Read;
        use std::os::fd::FromRawFd;
        use std::os::unix::fs::OpenOptionsExt;
        // SAFETY: posix_openpt returns a new fd that the File then owns; ptsname_r fills a
        // local buffer.
        let (master, path) = unsafe {
            let fd = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
            assert!(fd >= 0, "posix_openpt");
            let master = std::fs::File::from_raw_fd(fd);
            assert_eq!(libc::grantpt(fd), 0);
            assert_eq!(libc::unlockpt(fd), 0);
            let mut name = [0 as libc::c_char; 128];
            assert_eq!(libc::ptsname_r(fd, name.as_mut_ptr(), name.len()), 0);
            let path = std::ffi::CStr::from_ptr(name.as_ptr())
                .to_str()
                .unwrap()
                .to_owned();
            (master, PathBuf::from(path))
        };
        let slave = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY)
            .open(path)
            .unwrap();
        let output = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = std::sync::Arc::clone(&output);
        let mut reader = master.try_clone().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Pty {
            master,
            slave,
            output,
        }
    }

    /// `stty tostop`: a background job that writes to the terminal is stopped (SIGTTOU).
    pub fn set_tostop(&self) {
        use std::os::fd::AsRawFd;
        // SAFETY: tcgetattr fills the zeroed termios; tcsetattr reads it.
        unsafe {
            let mut tio: libc::termios = std::mem::zeroed();
            assert_eq!(libc::tcgetattr(self.slave.as_raw_fd(), &mut tio), 0);
            tio.c_lflag |= libc::TOSTOP;
            assert_eq!(
                libc::tcsetattr(self.slave.as_raw_fd(), libc::TCSANOW, &tio),
                0
            );
        }
    }

    /// Makes `cmd` start on the terminal: stdout and stderr on it (stdin too, if `stdin`), the
    /// leader of a new session whose controlling terminal it is.
    pub fn attach(&self, cmd: &mut Command, stdin: bool) {
        use std::os::unix::process::CommandExt;
        if stdin {
            cmd.stdin(self.slave.try_clone().unwrap());
        }
        cmd.stdout(self.slave.try_clone().unwrap())
            .stderr(self.slave.try_clone().unwrap());
        // SAFETY: setsid and TIOCSCTTY on fd 2 (the terminal) in the child before its exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(2, libc::TIOCSCTTY, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }

    /// What has been written on the terminal so far.
    pub fn shown(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap()).into_owned()
    }
}
