//! Diagnostics and text shown to people.
//!
//! A daemon's diagnostic is best effort: `eprintln!` panics when stderr fails (EPIPE on a
//! pipe whose reader has gone, ENOSPC on a full disk), and with `panic = "abort"` that panic
//! kills svscan and orphans every supervisor. [`say!`](crate::say) writes a line and drops it
//! when it cannot be written.
//!
//! Names of services, `last_error` and log lines come from whoever made the service or runs
//! it; written raw to a terminal, an escape sequence in them can retitle the window, rewrite
//! the screen or (on some terminals) answer back as if typed. [`for_terminal`] shows control
//! characters as `\xNN` when the output is a terminal, and leaves the bytes alone otherwise,
//! so pipes and files get exactly what was logged.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::Write as _;
use std::os::fd::AsFd;

/// Writes one line on stderr, made safe for a terminal when stderr is one; errors are
/// ignored. Used through [`say!`](crate::say).
pub fn line(args: std::fmt::Arguments<'_>) {
    let mut text = args.to_string();
    text.push('\n');
    let stderr = std::io::stderr();
    let shown = for_terminal(&text, is_terminal(&stderr), Newlines::Keep);
    // One write of the whole line (stderr is unbuffered), so that lines of several
    // processes sharing the same stderr do not interleave mid-line.
    let _ = stderr.lock().write_all(shown.as_bytes());
}

/// Writes `text` on stdout as is, made safe when stdout is a terminal; errors are ignored.
pub fn out(text: &str) {
    let stdout = std::io::stdout();
    let shown = for_terminal(text, is_terminal(&stdout), Newlines::Keep);
    let mut lock = stdout.lock();
    let _ = lock.write_all(shown.as_bytes());
    let _ = lock.flush();
}

/// Whether `fd` is a terminal (isatty).
pub fn is_terminal(fd: impl AsFd) -> bool {
    rustix::termios::isatty(fd)
}

/// What [`escape`] does with `\n`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Newlines {
    /// Kept: the text is several lines of ours (a message, a log's lines).
    Keep,
    /// Escaped too: the text is one field (a name, `last_error`) that must stay on its line.
    Escape,
}

/// `text` with control characters escaped if `terminal`, else `text` itself.
pub fn for_terminal(text: &str, terminal: bool, newlines: Newlines) -> Cow<'_, str> {
    if terminal {
        escape(text, newlines)
    } else {
        Cow::Borrowed(text)
    }
}

/// `text` with every control character (C0, DEL and C1, ESC among them) but `\t` (and `\n`
/// when kept) shown as `\xNN` (`\u{NNNN}` above 0xff, which `char::is_control` does not
/// reach today).
pub fn escape(text: &str, newlines: Newlines) -> Cow<'_, str> {
    let escaped =
        |c: char| c.is_control() && c != '\t' && (c != '\n' || newlines == Newlines::Escape);
    if !text.chars().any(escaped) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if !escaped(c) {
            out.push(c);
        } else if u32::from(c) <= 0xff {
            let _ = write!(out, "\\x{:02x}", u32::from(c));
        } else {
            let _ = write!(out, "\\u{{{:04x}}}", u32::from(c));
        }
    }
    Cow::Owned(out)
}

/// [`escape`] for bytes that need not be UTF-8 (log lines): the UTF-8 parts as [`escape`]
/// does, and each byte that is not part of a character as `\xNN` too, since a terminal not in
/// UTF-8 mode reads 0x9b alone as an escape sequence.
pub fn escape_bytes(bytes: &[u8], newlines: Newlines) -> Cow<'_, [u8]> {
    let plain = |b: &u8| (0x20..0x7f).contains(b) || *b == b'\t' || *b == b'\n';
    if bytes.iter().all(plain) {
        return Cow::Borrowed(bytes);
    }
    let mut out = String::with_capacity(bytes.len() + 8);
    for chunk in bytes.utf8_chunks() {
        out.push_str(&escape(chunk.valid(), newlines));
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    Cow::Owned(out.into_bytes())
}

/// [`escape_bytes`] if `terminal`, else `bytes` themselves.
pub fn bytes_for_terminal(bytes: &[u8], terminal: bool, newlines: Newlines) -> Cow<'_, [u8]> {
    if terminal {
        escape_bytes(bytes, newlines)
    } else {
        Cow::Borrowed(bytes)
    }
}

/// A line on stderr, like `eprintln!`, but a closed, full or broken stderr is no reason to die
/// (the line is dropped), and control characters are escaped when stderr is a terminal.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::diag::line(::core::format_args!($($arg)*))
    };
}

/// An I/O error's cause as people read it: "No such file or directory", without
/// "(os error 2)".
pub fn cause(e: &std::io::Error) -> String {
    let text = e.to_string();
    match text.rfind(" (os error ") {
        Some(at) => text.get(..at).unwrap_or(&text).to_owned(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_control_characters_but_tab_and_kept_newlines() {
        assert_eq!(
            escape("a\x1b]0;owned\x07b\tc\n", Newlines::Keep),
            "a\\x1b]0;owned\\x07b\tc\n"
        );
        assert_eq!(escape("a\nb\r", Newlines::Escape), "a\\x0ab\\x0d");
        assert_eq!(
            escape("del\x7f c1\u{9b}", Newlines::Keep),
            "del\\x7f c1\\x9b"
        );
        assert!(matches!(
            escape("plain é\n", Newlines::Keep),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn escapes_bytes_that_are_not_characters() {
        assert_eq!(
            &*escape_bytes(b"ok \xc3\xa9 \x9b2J \x1b[1m\xff\n", Newlines::Keep),
            "ok é \\x9b2J \\x1b[1m\\xff\n".as_bytes()
        );
        assert!(matches!(
            escape_bytes(b"plain\tline\n", Newlines::Keep),
            Cow::Borrowed(_)
        ));
        assert_eq!(
            &*bytes_for_terminal(b"\x1b", false, Newlines::Keep),
            b"\x1b"
        );
    }

    #[test]
    fn leaves_text_alone_off_a_terminal() {
        assert_eq!(for_terminal("\x1b[2J", false, Newlines::Keep), "\x1b[2J");
        assert_eq!(for_terminal("\x1b[2J", true, Newlines::Keep), "\\x1b[2J");
    }
}
