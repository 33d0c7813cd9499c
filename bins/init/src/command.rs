//! `init -- CMD`: a container's entry point, as tini and dumb-init are. Runs CMD in a session
//! of its own, forwards every signal a process can be sent to CMD's process group, reaps
//! every orphan, and when CMD exits stops what is left and exits with CMD's status. Not
//! process 1: it becomes a child subreaper, so the orphans of CMD come to it instead.
//!
//! Signals: init blocks every signal and takes them one by one with sigtimedwait, as s6 and
//! catatonit do with a signalfd. No handler is installed, so no signal can kill init (a
//! blocked signal is never acted on) and what CMD inherits is what init inherited: the mask
//! and the ignored signals are put back in the child before its exec.

use crate::config::Config;
use crate::reap::{describe, exit_code};
use rustix::process::{getpid, Pid};
use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Whether SIGPIPE was ignored when the process started. std's runtime sets SIGPIPE to
/// ignored before `main`, so the disposition init inherited can only be read earlier: from
/// an `.init_array` constructor, which the C runtime runs before std's start-up.
static PIPE_IGNORED_AT_START: AtomicBool = AtomicBool::new(false);

extern "C" fn record_sigpipe() {
    // SAFETY: sigaction with a null new action only reads the current one into `old`.
    let ignored = unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(libc::SIGPIPE, std::ptr::null(), &mut old) == 0
            && old.sa_sigaction == libc::SIG_IGN
    };
    PIPE_IGNORED_AT_START.store(ignored, Ordering::Relaxed);
}

#[used]
#[link_section = ".init_array"]
static RECORD_SIGPIPE: extern "C" fn() = record_sigpipe;

/// The synchronous faults: when the kernel raised one (si_code > 0), it was init's own fault
/// and is not CMD's business; sent with kill() (si_code <= 0) it is forwarded like any other.
const FAULTS: &[i32] = &[
    libc::SIGSEGV,
    libc::SIGBUS,
    libc::SIGILL,
    libc::SIGFPE,
    libc::SIGTRAP,
];

/// The job-control stops: forwarded to CMD's group (as STOP when it leads a session), then
/// init stops itself, as dumb-init does.
const STOPS: &[i32] = &[libc::SIGTSTP, libc::SIGTTIN, libc::SIGTTOU];

/// What init inherited and gives CMD back.
#[derive(Clone, Copy)]
struct Inherited {
    mask: libc::sigset_t,
    pipe_ignored: bool,
    chld_ignored: bool,
}

/// How CMD gets the terminal init has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Terminal {
    /// No terminal to hand on: CMD gets a session of its own, and the terminal on fd 0, if it
    /// has no session, becomes CMD's (as dumb-init does).
    None,
    /// init led the session of its controlling terminal and gave it up: CMD, leading a session
    /// of its own, takes it (TIOCSCTTY).
    Session,
    /// init is in the foreground of a terminal whose session someone else leads: CMD cannot
    /// lead a session with it, so it gets a process group of its own in init's session and
    /// the foreground of the terminal (tcsetpgrp), as tini does.
    Foreground,
}

pub fn run(cmd: &[OsString]) -> u8 {
    let Some((program_word, args)) = cmd.split_first() else {
        return 100;
    };
    let program = crate::shown(program_word);
    let inherited = inherit_and_block();
    let is_init = getpid() == Pid::INIT;
    if !is_init {
        if let Err(e) = rustix::process::set_child_subreaper(Some(getpid())) {
            warden::say!("init: warning: unable to become a child subreaper: {e}; orphans will not be reaped");
        }
    }
    let config = Config::load(None);
    let terminal = release_terminal();
    let mut command = Command::new(program_word);
    command.args(args);
    // SAFETY: the closure runs in the forked child before its exec and makes only
    // async-signal-safe system calls on copied plain data: no allocation, no lock.
    unsafe {
        command.pre_exec(move || {
            child_setup(&inherited, terminal);
            Ok(())
        });
    }
    let child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            warden::say!("init: fatal: unable to run {program}: {e}");
            let code = if e.kind() == std::io::ErrorKind::NotFound {
                127
            } else {
                126
            };
            return code;
        }
    };
    let main = child.id() as i32;
    drop(child);
    // CMD started where init was started; init itself pins no mount from now on.
    if let Err(e) = rustix::process::chdir("/") {
        warden::say!("init: warning: unable to change directory to /: {e}");
    }
    let status = loop {
        let reaped = reap();
        if let Some((_, status)) = reaped.exited.iter().find(|(p, _)| *p == main) {
            break Some(*status);
        }
        if reaped.none_left {
            break None;
        }
        let Some((sig, code)) = next_signal(None) else {
            continue;
        };
        if !forwardable(sig, code) {
            continue;
        }
        if STOPS.contains(&sig) && terminal != Terminal::Foreground {
            // A group leading its own session is orphaned (its parent, init, is outside the
            // session): the kernel discards TSTP, TTIN and TTOU sent to it. STOP instead, as
            // dumb-init does.
            forward(main, libc::SIGSTOP, &program);
        } else {
            forward(main, sig, &program);
        }
        if STOPS.contains(&sig) && !is_init {
            // Stopped with the group, continued with it: the CONT that resumes init is
            // forwarded like any other signal. Process 1 cannot be stopped by itself.
            // SAFETY: kill on this very process; STOP cannot be caught.
            unsafe { libc::kill(libc::getpid(), libc::SIGSTOP) };
        }
    };
    let code = match status {
        Some(status) => {
            if status.exit_status() != Some(0) {
                warden::say!("init: {program} {}", describe(status));
            }
            exit_code(status)
        }
        None => 111,
    };
    stop_the_rest(is_init, main, config.grace);
    code
}

/// Reads the mask and the ignored signals init was given, then blocks every signal.
fn inherit_and_block() -> Inherited {
    // SAFETY: plain system calls on local, initialised sigsets.
    unsafe {
        let mut mask: libc::sigset_t = std::mem::zeroed();
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut mask);
        libc::sigfillset(&mut all);
        if libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut mask) != 0 {
            warden::say!("init: warning: unable to block signals: signals may kill init");
        }
        let mut old: libc::sigaction = std::mem::zeroed();
        let chld_ignored = libc::sigaction(libc::SIGCHLD, std::ptr::null(), &mut old) == 0
            && old.sa_sigaction == libc::SIG_IGN;
        if chld_ignored {
            // An ignored SIGCHLD would have the kernel reap CMD before init sees its status.
            libc::signal(libc::SIGCHLD, libc::SIG_DFL);
        }
        Inherited {
            mask,
            pipe_ignored: PIPE_IGNORED_AT_START.load(Ordering::Relaxed),
            chld_ignored,
        }
    }
}

/// Decides how CMD gets init's terminal; when init leads the session of its controlling
/// terminal, gives it up (TIOCNOTTY) so that CMD's new session can take it.
fn release_terminal() -> Terminal {
    let stdin = rustix::stdio::stdin();
    if !rustix::termios::isatty(stdin) {
        return Terminal::None;
    }
    let mine = warden::ids::session();
    let ours = warden::ids::terminal_session(stdin);
    if mine.is_none() || ours != mine {
        return Terminal::None;
    }
    if mine == Some(getpid().as_raw_nonzero().get()) {
        // SAFETY: TIOCNOTTY on fd 0 takes no argument.
        if unsafe { libc::ioctl(0, libc::TIOCNOTTY) } == 0 {
            // The session leader giving up its terminal sends HUP and CONT to the terminal's
            // foreground group, init's own: they are not for CMD.
            drop_pending(&[libc::SIGHUP, libc::SIGCONT]);
            return Terminal::Session;
        }
        return Terminal::None;
    }
    let foreground = warden::ids::terminal_foreground(stdin);
    if foreground.is_some() && foreground == Some(warden::ids::process_group()) {
        Terminal::Foreground
    } else {
        Terminal::None
    }
}

/// In the child, before the exec: a session (or group) of its own, the terminal, and the
/// signal state init inherited. std has emptied the mask by now; every signal is blocked
/// again first, so a TTOU from tcsetpgrp cannot stop the child.
fn child_setup(inherited: &Inherited, terminal: Terminal) {
    // SAFETY: async-signal-safe system calls on plain copied data, in the child only.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, std::ptr::null_mut());
        match terminal {
            Terminal::None | Terminal::Session => {
                libc::setsid();
                // Fails harmlessly when fd 0 is no terminal or belongs to another session.
                libc::ioctl(0, libc::TIOCSCTTY, 0);
            }
            Terminal::Foreground => {
                libc::setpgid(0, 0);
                libc::tcsetpgrp(0, libc::getpid());
            }
        }
        let pipe = if inherited.pipe_ignored {
            libc::SIG_IGN
        } else {
            libc::SIG_DFL
        };
        libc::signal(libc::SIGPIPE, pipe);
        if inherited.chld_ignored {
            libc::signal(libc::SIGCHLD, libc::SIG_IGN);
        }
        libc::pthread_sigmask(libc::SIG_SETMASK, &inherited.mask, std::ptr::null_mut());
    }
}

/// Takes pending signals of `sigs` without acting on them.
fn drop_pending(sigs: &[i32]) {
    // SAFETY: sigtimedwait with a zero timeout on a local sigset: it only dequeues.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for &sig in sigs {
            libc::sigaddset(&mut set, sig);
        }
        let zero = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        while libc::sigtimedwait(&set, std::ptr::null_mut(), &zero) > 0 {}
    }
}

/// The next signal (number, si_code), waiting until `deadline` (None: no deadline); None when
/// the deadline passed or the wait was interrupted.
fn next_signal(deadline: Option<Instant>) -> Option<(i32, i32)> {
    // SAFETY: sigtimedwait/sigwaitinfo on a local sigset, filling a local siginfo.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        let mut info: libc::siginfo_t = std::mem::zeroed();
        let sig = match deadline {
            None => libc::sigwaitinfo(&set, &mut info),
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                // At most 68 years: that fits a time_t of any width.
                let secs = left.as_secs().min(u64::from(i32::MAX.unsigned_abs()));
                let timeout = libc::timespec {
                    tv_sec: secs.try_into().unwrap_or_default(),
                    tv_nsec: left.subsec_nanos() as libc::c_long,
                };
                libc::sigtimedwait(&set, &mut info, &timeout)
            }
        };
        (sig > 0).then_some((sig, info.si_code))
    }
}

/// Every signal but CHLD (init's own) and a fault the kernel raised in init itself.
fn forwardable(sig: i32, code: i32) -> bool {
    sig != libc::SIGCHLD && !(FAULTS.contains(&sig) && code > 0)
}

/// Sends `sig` to CMD's process group (it leads one: see [`child_setup`]).
fn forward(main: i32, sig: i32, program: &str) {
    // SAFETY: kill with a negative pid signals a process group.
    if unsafe { libc::kill(-main, sig) } != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ESRCH) {
            warden::say!(
                "init: warning: unable to forward {} to {program}: {e}",
                warden::signal::name_or_number(sig)
            );
        }
    }
}

/// What one reaping pass found.
#[derive(Default)]
struct Reaped {
    exited: Vec<(i32, rustix::process::WaitStatus)>,
    /// No child is left at all (ECHILD).
    none_left: bool,
}

/// Reaps every exited child, without blocking.
fn reap() -> Reaped {
    use rustix::process::{wait, WaitOptions};
    let mut found = Reaped::default();
    loop {
        match wait(WaitOptions::NOHANG) {
            Ok(Some((pid, status))) => found.exited.push((pid.as_raw_nonzero().get(), status)),
            Ok(None) => break,
            Err(rustix::io::Errno::CHILD) => {
                found.none_left = true;
                break;
            }
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => {
                warden::say!("init: warning: unable to reap children: {e}");
                break;
            }
        }
    }
    found
}

/// Reaps until no child is left or `deadline` passes; true if none is left.
fn wait_all_gone(deadline: Instant) -> bool {
    loop {
        if reap().none_left {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        next_signal(Some(deadline));
    }
}

/// What CMD left behind gets TERM at once (then CONT, for the stopped), KILL after the grace.
/// As process 1 that is every process of the namespace. As a subreaper it is every process
/// still in CMD's session and every child of init (orphans); one orphaned later, while the
/// others stop (the child of a shell that was TERMed), gets its TERM when it comes to init.
/// kill(-1) would reach every process of the user, so it is only for process 1.
fn stop_the_rest(is_init: bool, session: i32, grace: Duration) {
    if reap().none_left {
        return;
    }
    // A grace too long for an Instant is as good as forever (issue 11 item 6), not none.
    let deadline = warden::service::deadline(Instant::now(), grace);
    if is_init {
        for sig in [libc::SIGTERM, libc::SIGCONT] {
            signal_pid(-1, sig);
        }
        if wait_all_gone(deadline) {
            return;
        }
    } else {
        let mut termed: Vec<i32> = Vec::new();
        loop {
            for pid in left_behind(session) {
                if !termed.contains(&pid) {
                    signal_pid(pid, libc::SIGTERM);
                    signal_pid(pid, libc::SIGCONT);
                    termed.push(pid);
                }
            }
            if reap().none_left {
                return;
            }
            if Instant::now() >= deadline {
                break;
            }
            next_signal(Some(deadline));
        }
    }
    warden::say!(
        "init: warning: processes left after {} ms: sending KILL",
        grace.as_millis()
    );
    let Some(deadline) = Instant::now().checked_add(Duration::from_secs(2)) else {
        return;
    };
    loop {
        if is_init {
            signal_pid(-1, libc::SIGKILL);
        } else {
            // Each KILL may orphan more: again after every wake-up.
            for pid in left_behind(session) {
                signal_pid(pid, libc::SIGKILL);
            }
        }
        if reap().none_left {
            return;
        }
        if Instant::now() >= deadline {
            warden::say!(
                "init: warning: processes survived KILL (stuck in the kernel?): exiting anyway"
            );
            return;
        }
        next_signal(Some(deadline));
    }
}

fn signal_pid(pid: i32, sig: i32) {
    // SAFETY: kill on a pid (or -1, only as process 1) read from /proc or our own child.
    if unsafe { libc::kill(pid, sig) } != 0 {
        let e = std::io::Error::last_os_error();
        // ESRCH: it is gone already, which is the point.
        if e.raw_os_error() != Some(libc::ESRCH) {
            warden::say!(
                "init: warning: unable to send {} to what is left: {e}",
                warden::signal::name_or_number(sig)
            );
        }
    }
}

/// The children of this process (a subreaper's orphans included) and every process in
/// `session`, from /proc.
fn left_behind(session: i32) -> Vec<i32> {
    let me = getpid().as_raw_nonzero().get();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|entry| {
        let entry = entry.ok()?;
        let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
        let (_, rest) = stat.rsplit_once(") ")?;
        // state ppid pgrp session
        let mut fields = rest.split(' ').skip(1);
        let ppid: i32 = fields.next()?.parse().ok()?;
        let sid: i32 = fields.nth(1)?.parse().ok()?;
        (pid != me && (ppid == me || sid == session)).then_some(pid)
    })
    .collect()
}
