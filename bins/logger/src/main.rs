//! logger: writes stdin to a rotated log directory without losing a line, even when killed.
//! See docs/logger.md.
#![cfg_attr(not(test), no_main)]

mod args;
mod clock;
#[cfg(test)]
mod fuzz;
mod input;
mod lines;
mod logdir;
mod ready;
mod run;
mod show;
mod svlogd;

use args::{Command, WriteOptions};
use input::Input;
use logdir::LogDir;
use run::{Ending, Logger};
use rustix::process::Signal;
use warden::signal::SignalPipe;

/// Longest line kept whole when nothing else limits it.
const MAX_LINE: usize = 64 * 1024;

// One beside every service, started at once with them: see warden::entry.
warden::lean_main!(logger);
// svscan and supervise run only a companion with this mark (warden::companion).
warden::companion_mark!();

fn logger() -> u8 {
    let mut argv = warden::entry::args_os().into_iter();
    // Run as `svlogd` (a link made by `cargo xtask install --svlogd`): runit's command line.
    let name = argv.next().map(std::path::PathBuf::from);
    if name.as_deref().and_then(std::path::Path::file_name) == Some("svlogd".as_ref()) {
        return svlogd::main(argv);
    }
    match args::parse(argv) {
        Ok(Command::Help) => {
            warden::diag::out(args::USAGE);
            0
        }
        Ok(Command::Show(options)) => match show::show(&options) {
            Ok(()) => 0,
            Err(e) => {
                warden::say!("logger: fatal: unable to {e}");
                111
            }
        },
        Ok(Command::Write(options)) => write(&options),
        Err(e) => {
            warden::say!("logger: usage: {e}\n{}", args::USAGE);
            100
        }
    }
}

fn write(options: &WriteOptions) -> u8 {
    // Before anything is opened: see ready.rs.
    let mut ready = ready::Notifier::claim(options.ready_fd, "logger");
    let signals = match SignalPipe::new(&[Signal::TERM, Signal::INT, Signal::ALARM, Signal::HUP]) {
        Ok(s) => s,
        Err(e) => return fatal(&format!("unable to set up signal handling: {e}")),
    };
    let dir = match LogDir::open(&options.dir, options.limit, options.keep) {
        Ok(dir) => dir,
        Err(e) => return fatal(&e.to_string()),
    };
    ready.ready();
    let input = Input::from_stdin();
    let stamp_room = options.stamp.len() + lines::End::Split.suffix().len();
    let max_line = MAX_LINE.min(input.line_room()).min(
        usize::try_from(options.limit)
            .unwrap_or(usize::MAX)
            .saturating_sub(stamp_room),
    );
    let mut logger = Logger::new(dir, input, options.stamp, max_line);
    match logger.run(&signals) {
        Ok(Ending::Eof) | Ok(Ending::Signal) | Ok(Ending::SignalWhileFailing(0)) => 0,
        Ok(Ending::SignalWhileFailing(lost)) => {
            warden::say!("logger: warning: exiting with {lost} bytes read but not written");
            111
        }
        Err(e) => fatal(&format!("unable to read stdin: {e}")),
    }
}

fn fatal(message: &str) -> u8 {
    warden::say!("logger: fatal: {message}");
    111
}
