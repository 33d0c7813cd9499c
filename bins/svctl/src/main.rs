//! svctl: the client of warden's supervise and svscan (and of runit's runsv, whose
//! `supervise/` it reads and writes the same way).

mod cli;
mod commands;
mod detail;
#[cfg(test)]
mod fuzz;
mod goal;
mod graph;
mod interrupts;
mod locks;
mod logview;
mod metrics;
mod outcome;
mod procs;
mod report;
mod system;
mod wait;

use cli::Action;
use outcome::Outcome;
use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args_os();
    let program = args
        .next()
        .and_then(|arg0| {
            Path::new(&arg0)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "svctl".into());
    let outcome = match cli::parse(&program, args.collect()) {
        Ok(invocation) => run(&invocation),
        Err(message) => {
            warden::say!("svctl: fatal: {message}\n{}", cli::USAGE);
            Outcome::Usage
        }
    };
    ExitCode::from(outcome.code())
}

fn run(inv: &cli::Invocation) -> Outcome {
    match &inv.action {
        Action::Help => say(&cli::help()),
        Action::Version => say(&format!("svctl {}\n", env!("CARGO_PKG_VERSION"))),
        Action::Control(verb) => commands::control(inv, *verb),
        Action::Check => commands::check(inv),
        Action::Deps => commands::deps(inv),
        Action::Metrics => commands::metrics(inv),
        Action::Status { json, form } => commands::status(inv, *json, *form),
        Action::Log(view) => match inv.services.first() {
            Some(name) if name == logview::UNCAUGHT => logview::exec_uncaught(&inv.scandir, view),
            Some(name) => logview::exec_logger(&warden::svdir::resolve(&inv.scandir, name), view),
            None => Outcome::Usage,
        },
        Action::Svscan(byte) => system::tell_svscan(&inv.scandir, *byte, inv.wait),
        Action::Init(power) => system::tell_init(*power),
    }
}

/// Prints to stdout; a closed pipe (`svctl --help | head -1`) is not a crash.
fn say(text: &str) -> Outcome {
    use std::io::Write;
    match std::io::stdout().write_all(text.as_bytes()) {
        Ok(()) => Outcome::Success,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Outcome::Success,
        Err(_) => Outcome::System,
    }
}
