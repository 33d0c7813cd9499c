//! supervise's diagnostics: the `say!` line on stderr, the fatal setup error, and causes as
//! people read them.

use std::fmt;
use std::path::Path;

/// A line on stderr that a closed, full or broken stderr cannot turn into a panic: see
/// warden::diag.
macro_rules! say {
    ($($arg:tt)*) => {
        warden::say!($($arg)*)
    };
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
