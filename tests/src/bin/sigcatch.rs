//! `sigcatch OUT [--fork]`: a test program that records every signal it is sent. It blocks
//! them all and takes them with sigwaitinfo, appending `PID SIGNO` to OUT for each; `PID
//! ready` once it waits. With `--fork` a child in the same process group does the same. It
//! exits 0 after recording a TERM.
#![allow(unsafe_code)]

use std::io::Write;

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(out) = args.next() else {
        eprintln!("usage: sigcatch OUT [--fork]");
        std::process::exit(100);
    };
    // SAFETY: plain system calls on local sigsets; the program is single-threaded, so the
    // forked child may go on as the parent does.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, std::ptr::null_mut());
        if args.next().as_deref() == Some("--fork") && libc::fork() < 0 {
            eprintln!("sigcatch: unable to fork");
            std::process::exit(111);
        }
        let me = libc::getpid();
        let record = |line: String| {
            let mut file = std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(&out)
                .expect("open OUT");
            file.write_all(line.as_bytes()).expect("write OUT");
        };
        record(format!("{me} ready\n"));
        loop {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            let sig = libc::sigwaitinfo(&all, &mut info);
            if sig <= 0 {
                continue;
            }
            record(format!("{me} {sig}\n"));
            if sig == libc::SIGTERM {
                std::process::exit(0);
            }
        }
    }
}
