//! `init`: warden's PID 1.
//!
//! - `init` (as process 1): stage 1. Mount the early filesystems, put the console on fds 0–2,
//!   run the boot hook, then exec `svscan SCANDIR`, which becomes process 1 (stage 2).
//! - `init --stage3 poweroff|reboot|halt` (exec'd by svscan as process 1 after its teardown):
//!   stop what is left, sync, unmount, reboot(2). In a container: exit with a status instead.
//! - `init -- CMD [ARG...]`: a container entry point in the manner of tini: run CMD, forward
//!   signals to it, reap every orphan, exit with CMD's status.
//!
//! Exit codes: 0 done; 100 usage or not process 1; 111 a system call failed; 126/127 CMD could
//! not be run; otherwise CMD's own status (128 + signal when it was killed).

mod command;
mod config;
mod emergency;
mod hook;
mod mounts;
mod reap;
mod stage1;
mod stage3;

use std::process::ExitCode;

const USAGE: &str = "usage: init                            (stage 1, as process 1)
       init --stage3 poweroff|reboot|halt (stage 3, as process 1)
       init -- CMD [ARG...]               (container entry point)";

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
enum Mode {
    Stage1 { ignored: Vec<String> },
    Stage3(stage3::Action),
    Command(Vec<String>),
    Help,
}

fn parse_args(args: &[String]) -> Result<Mode, String> {
    match args.first().map(String::as_str) {
        Some("--stage3") => match args.get(1).map(String::as_str) {
            Some(word) => stage3::Action::parse(word)
                .map(Mode::Stage3)
                .ok_or_else(|| format!("unknown stage 3 action '{word}'")),
            None => Err("--stage3 needs poweroff, reboot or halt".into()),
        },
        Some("--") => match args.get(1..) {
            Some(cmd) if !cmd.is_empty() => Ok(Mode::Command(cmd.to_vec())),
            _ => Err("-- needs a command".into()),
        },
        Some("-h") | Some("--help") => Ok(Mode::Help),
        // The kernel hands words of its command line it does not know to init as arguments
        // (`single`, `emergency`, ...): stage 1 must not refuse to boot because of them.
        _ => Ok(Mode::Stage1 {
            ignored: args.to_vec(),
        }),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = match parse_args(&args) {
        Ok(mode) => mode,
        Err(e) => {
            warden::say!("init: fatal: {e}\n{USAGE}");
            return ExitCode::from(100);
        }
    };
    match mode {
        Mode::Help => {
            warden::diag::out(&format!("{USAGE}\n"));
            ExitCode::SUCCESS
        }
        Mode::Stage1 { ignored } => stage1::run(&ignored),
        Mode::Stage3(action) => stage3::run(action),
        Mode::Command(cmd) => command::run(&cmd),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn kernel_leftover_words_still_boot_stage1() {
        assert_eq!(
            parse_args(&strings(&["single"])),
            Ok(Mode::Stage1 {
                ignored: strings(&["single"])
            })
        );
        assert_eq!(parse_args(&[]), Ok(Mode::Stage1 { ignored: vec![] }));
    }

    #[test]
    fn stage3_needs_a_known_action() {
        assert_eq!(
            parse_args(&strings(&["--stage3", "poweroff"])),
            Ok(Mode::Stage3(stage3::Action::Poweroff))
        );
        assert!(parse_args(&strings(&["--stage3", "explode"])).is_err());
        assert!(parse_args(&strings(&["--stage3"])).is_err());
    }

    #[test]
    fn command_mode_takes_everything_after_the_dashes() {
        assert_eq!(
            parse_args(&strings(&["--", "sh", "-c", "true"])),
            Ok(Mode::Command(strings(&["sh", "-c", "true"])))
        );
        assert!(parse_args(&strings(&["--"])).is_err());
    }
}
