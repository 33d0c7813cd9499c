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

const USAGE: &str = "usage: supervise [--default-log] [--held] DIR";

fn supervise() -> u8 {
    let args = match arguments() {
        Ok(Parsed::Run(args)) => args,
        Ok(Parsed::Help) => {
            warden::diag::out(&format!("{USAGE}\n"));
            return 0;
        }
        Err(problem) => {
            say!("{problem}{USAGE}");
            return EXIT_USAGE;
        }
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

enum Parsed {
    Run(Arguments),
    Help,
}

/// `[--default-log] [--held] DIR`, the options in any order before the directory; `--` ends
/// them (svscan passes a name that begins with `-` as `./NAME`). The error is what to say
/// before the usage line.
fn arguments() -> Result<Parsed, String> {
    let mut args = warden::entry::args_os().into_iter().skip(1);
    let (mut default_log, mut held) = (false, false);
    let dir = loop {
        let Some(arg) = args.next() else {
            return Err(String::new());
        };
        match arg.to_str() {
            Some("--default-log") if !default_log => default_log = true,
            Some("--held") if !held => held = true,
            Some("-h" | "--help") => return Ok(Parsed::Help),
            Some("--") => break args.next().unwrap_or_default(),
            Some(option) if option.starts_with('-') && option.len() > 1 => {
                return Err(format!("supervise: unknown or repeated option {option}\n"));
            }
            _ => break arg,
        }
    };
    if args.next().is_some() || dir.is_empty() {
        return Err(String::new());
    }
    Ok(Parsed::Run(Arguments {
        dir: PathBuf::from(dir),
        default_log,
        held,
    }))
}
