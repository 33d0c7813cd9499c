//! svctl: the client of warden's supervise and svscan (and of runit's runsv, whose
//! `supervise/` it reads and writes the same way).

mod cli;
mod commands;
mod goal;
mod logview;
mod outcome;
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
            eprintln!("svctl: fatal: {message}\n{}", cli::USAGE);
            Outcome::Usage
        }
    };
    ExitCode::from(outcome.code())
}

fn run(inv: &cli::Invocation) -> Outcome {
    match &inv.action {
        Action::Help => {
            print!("{}", cli::help());
            Outcome::Success
        }
        Action::Version => {
            println!("svctl {}", env!("CARGO_PKG_VERSION"));
            Outcome::Success
        }
        Action::Control(verb) => commands::control(inv, *verb),
        Action::Check => commands::check(inv),
        Action::Status { json } => commands::status(inv, *json),
        Action::Log(view) => match inv.services.first() {
            Some(name) => logview::exec_logger(&warden::svdir::resolve(&inv.scandir, name), view),
            None => Outcome::Usage,
        },
        Action::Svscan(byte) => system::tell_svscan(&inv.scandir, *byte),
        Action::Init(power) => system::tell_init(*power),
    }
}
