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
//!
//! init has a C `main` (see [`main`]): Rust's own start would abort before any of this runs
//! when fds 0-2 are closed and there is no /dev/null, and would fill them from /dev/null
//! otherwise, hiding from stage 1 that the kernel found no console.
#![cfg_attr(not(test), no_main)]

mod command;
mod config;
mod emergency;
mod hook;
mod mounts;
mod reap;
mod stage1;
mod stage3;
mod stdio;

use std::ffi::{OsStr, OsString};

const USAGE: &str = "usage: init                            (stage 1, as process 1)
       init --stage3 poweroff|reboot|halt (stage 3, as process 1)
       init -- CMD [ARG...]               (container entry point)";

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
enum Mode {
    Stage1 { ignored: Vec<OsString> },
    Stage3(stage3::Action),
    Command(Vec<OsString>),
    Help,
}

/// Words are taken as the OS gives them: a word of the kernel's command line need not be
/// UTF-8, and CMD's arguments are passed on byte for byte.
fn parse_args(args: &[OsString]) -> Result<Mode, String> {
    match args.first().and_then(|a| a.to_str()) {
        Some("--stage3") => match args.get(1) {
            Some(word) => word
                .to_str()
                .and_then(stage3::Action::parse)
                .map(Mode::Stage3)
                .ok_or_else(|| format!("unknown stage 3 action '{}'", word.to_string_lossy())),
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

/// The C entry point. Rust's start is skipped: see the top of this file. What init needs of
/// it is done here: the arguments kept (without its start std has none on musl), fds 0-2
/// held (see [`stdio::hold`]) before anything else is opened, and SIGPIPE made harmless
/// (Rust's start ignores it).
#[cfg(not(test))]
#[no_mangle]
extern "C" fn main(
    argc: core::ffi::c_int,
    argv: *const *const core::ffi::c_char,
) -> core::ffi::c_int {
    // SAFETY: these are the C runtime's own argc and argv.
    unsafe { warden::entry::keep_arguments(argc, argv) };
    core::ffi::c_int::from(init())
}

// The unit tests keep the harness's entry; this keeps init's code in use there.
#[cfg(test)]
fn main() {
    let _ = init;
}

fn init() -> u8 {
    let args: Vec<OsString> = warden::entry::args_os().into_iter().skip(1).collect();
    let parsed = parse_args(&args);
    // Stage 1 puts the console there itself once /dev is mounted; the others take /dev/null.
    let stage1 = matches!(parsed, Ok(Mode::Stage1 { .. }));
    stdio::hold(!stage1);
    warden::entry::sigpipe_harmless();
    let mode = match parsed {
        Ok(mode) => mode,
        Err(e) => {
            warden::say!("init: fatal: {e}\n{USAGE}");
            return 100;
        }
    };
    match mode {
        Mode::Help => {
            warden::diag::out(&format!("{USAGE}\n"));
            0
        }
        Mode::Stage1 { ignored } => stage1::run(&ignored),
        Mode::Stage3(action) => stage3::run(action),
        Mode::Command(cmd) => command::run(&cmd),
    }
}

/// A word for a message: lossy where it is not UTF-8.
fn shown(word: &OsStr) -> std::borrow::Cow<'_, str> {
    word.to_string_lossy()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(words: &[&str]) -> Vec<OsString> {
        words.iter().map(OsString::from).collect()
    }

    #[test]
    fn issue_11_5_words_need_not_be_utf8() {
        use std::os::unix::ffi::OsStringExt;
        let odd = OsString::from_vec(b"\xff\xfe".to_vec());
        assert_eq!(
            parse_args(std::slice::from_ref(&odd)),
            Ok(Mode::Stage1 {
                ignored: vec![odd.clone()]
            })
        );
        let cmd = vec![OsString::from("--"), OsString::from("echo"), odd.clone()];
        assert_eq!(
            parse_args(&cmd),
            Ok(Mode::Command(vec![OsString::from("echo"), odd.clone()]))
        );
        assert!(parse_args(&[OsString::from("--stage3"), odd]).is_err());
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
