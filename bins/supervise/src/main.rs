//! `supervise DIR`: runs DIR/run, restarts it when it exits, and serves runit's
//! `supervise/` protocol (plus warden's extended status) so that `sv`, `svstat`, `svok`, `svc`
//! and `svctl` can watch and control it.
#![cfg_attr(not(test), no_main)]

#[macro_use]
mod diag;
mod files;
mod machine;
mod spawn;
mod supervisor;
mod tree;

pub use diag::{cause, cause_errno, Fatal};

use std::path::PathBuf;

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
