//! `supervise DIR`: runs DIR/run, restarts it when it exits, and serves runit's
//! `supervise/` protocol (plus warden's extended status) so that `sv`, `svstat`, `svok`, `svc`
//! and `svctl` can watch and control it.
#![cfg_attr(not(test), no_main)]

/// A line on stderr that a closed, full or broken stderr cannot turn into a panic: see
/// warden::diag.
macro_rules! say {
    ($($arg:tt)*) => {
        warden::say!($($arg)*)
    };
}

mod files;
mod machine;
mod spawn;
mod supervisor;
mod tree;

use std::fmt;
use std::path::{Path, PathBuf};

/// Exit codes: 0 after `x`/`e` once the service is down, 100 usage, 111 a fatal setup error
/// (as runsv and daemontools' supervise).
const EXIT_USAGE: u8 = 100;
const EXIT_FATAL: u8 = 111;

// A thousand of us start at once: see warden::entry.
warden::lean_main!(supervise);
// svscan and supervise run only a companion with this mark (warden::companion).
warden::companion_mark!();

fn supervise() -> u8 {
    let Some(args) = arguments() else {
        say!("usage: supervise [--default-log] [--held] DIR");
        return EXIT_USAGE;
    };
    let default_run = args.default_log.then(spawn::find_logger);
    match supervisor::Supervisor::start(&args.dir, default_run, args.held)
        .and_then(supervisor::Supervisor::run)
    {
        Ok(()) => 0,
        Err(fatal) => {
            say!("supervise: fatal: {fatal}");
            EXIT_FATAL
        }
    }
}

struct Arguments {
    dir: PathBuf,
    /// The directory is a `log/`: while it has no `run`, run the built-in default
    /// `logger ./main`.
    default_log: bool,
    /// Start held: the service waits for `G` (svscan's word that its dependencies are ready).
    held: bool,
}

/// `[--default-log] [--held] DIR`, the options in any order before the directory.
fn arguments() -> Option<Arguments> {
    let mut args = std::env::args_os().skip(1);
    let (mut default_log, mut held) = (false, false);
    let dir = loop {
        let arg = args.next()?;
        match arg.to_str() {
            Some("--default-log") if !default_log => default_log = true,
            Some("--held") if !held => held = true,
            _ => break arg,
        }
    };
    if args.next().is_some() || dir.is_empty() {
        return None;
    }
    Some(Arguments {
        dir: PathBuf::from(dir),
        default_log,
        held,
    })
}

/// A setup error that stops the supervisor: `unable to <verb> <object>: <cause>`.
#[derive(Debug)]
pub struct Fatal(String);

impl Fatal {
    pub fn new(verb: &str, object: &Path, cause: String) -> Fatal {
        Fatal(format!("unable to {verb} {}: {cause}", object.display()))
    }

    pub fn io(verb: &str, object: &Path, e: &std::io::Error) -> Fatal {
        Fatal::new(verb, object, cause(e))
    }

    pub fn errno(verb: &str, object: &Path, e: rustix::io::Errno) -> Fatal {
        Fatal::new(verb, object, cause_errno(e))
    }
}

impl fmt::Display for Fatal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An I/O error's cause as people read it: "No such file or directory", without "(os error 2)".
pub fn cause(e: &std::io::Error) -> String {
    let text = e.to_string();
    match text.rfind(" (os error ") {
        Some(at) => text.get(..at).unwrap_or(&text).to_owned(),
        None => text,
    }
}

pub fn cause_errno(e: rustix::io::Errno) -> String {
    cause(&std::io::Error::from(e))
}
