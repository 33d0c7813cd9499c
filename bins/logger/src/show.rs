//! `logger --show`: the archives in order, then `current`, with TAI64N labels turned into
//! local time as daemontools' tai64nlocal prints it; `-n` keeps the last lines, `-f` follows
//! `current` across rotations (inotify on the directory), `-` converts stdin.

use crate::logdir::archives;
use inotify::{Inotify, WatchMask};
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use warden::Tai64N;

pub enum Source {
    Dir(PathBuf),
    Stdin,
}

pub struct ShowOptions {
    pub source: Source,
    pub last: Option<usize>,
    pub follow: bool,
}

/// Converts labels line by line; a line's start may arrive in one read and its end in the next.
#[derive(Default)]
pub struct Converter {
    partial: Vec<u8>,
    text: String,
    /// Output to a terminal: control characters in lines are shown escaped (warden::diag),
    /// so that a logged escape sequence cannot drive the terminal.
    pub terminal: bool,
}

impl Converter {
    pub fn feed(&mut self, mut bytes: &[u8], out: &mut impl Write) -> io::Result<()> {
        while let Some(i) = crate::lines::find_newline(bytes) {
            let (line, rest) = bytes.split_at(i + 1);
            if self.partial.is_empty() {
                self.line(line, out)?;
            } else {
                let mut whole = std::mem::take(&mut self.partial);
                whole.extend_from_slice(line);
                self.line(&whole, out)?;
            }
            bytes = rest;
        }
        self.partial.extend_from_slice(bytes);
        Ok(())
    }

    /// Writes an unfinished last line as it is.
    pub fn finish(&mut self, out: &mut impl Write) -> io::Result<()> {
        let rest = std::mem::take(&mut self.partial);
        if !rest.is_empty() {
            self.line(&rest, out)?;
        }
        Ok(())
    }

    fn shown<'a>(&self, line: &'a [u8]) -> std::borrow::Cow<'a, [u8]> {
        warden::diag::bytes_for_terminal(line, self.terminal, warden::diag::Newlines::Keep)
    }

    fn line(&mut self, line: &[u8], out: &mut impl Write) -> io::Result<()> {
        let label = line.get(..warden::tai::LABEL_LEN);
        match label.and_then(Tai64N::parse_label) {
            Some(t) => {
                self.text.clear();
                crate::clock::format_local(&mut self.text, t.unix_secs(), t.nanos);
                out.write_all(self.text.as_bytes())?;
                let rest = line.get(warden::tai::LABEL_LEN..).unwrap_or_default();
                out.write_all(&self.shown(rest))
            }
            None => out.write_all(&self.shown(line)),
        }
    }
}

/// An error that says what failed: `<verb> <object>: <cause>`.
fn context(verb: &str, object: impl std::fmt::Display) -> impl FnOnce(io::Error) -> io::Error {
    let what = format!("{verb} {object}");
    move |e| io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// Standard output, its errors named as such.
struct Stdout(io::StdoutLock<'static>);

impl Write for Stdout {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.write(bytes).map_err(context("write", "stdout"))
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush().map_err(context("write", "stdout"))
    }
}

/// Errors read `<verb> <object>: <cause>`, for `unable to ...`.
pub fn show(options: &ShowOptions) -> io::Result<()> {
    let mut out = io::BufWriter::with_capacity(1 << 16, Stdout(io::stdout().lock()));
    let result = match &options.source {
        Source::Stdin => show_stdin(options.last, &mut out),
        Source::Dir(dir) => show_dir(dir, options.last, options.follow, &mut out),
    };
    match result.and_then(|()| out.flush()) {
        // A reader that stops early (`| head`) is not an error.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

fn show_stdin(last: Option<usize>, out: &mut impl Write) -> io::Result<()> {
    let mut converter = Converter {
        terminal: warden::diag::is_terminal(io::stdout()),
        ..Converter::default()
    };
    let mut stdin = io::stdin().lock();
    match last {
        Some(n) => {
            let mut all = Vec::new();
            stdin
                .read_to_end(&mut all)
                .map_err(context("read", "stdin"))?;
            converter.feed(tail(&all, n), out)?;
        }
        None => {
            let mut buf = vec![0u8; 1 << 16];
            loop {
                let n = match stdin.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(context("read", "stdin")(e)),
                };
                converter.feed(buf.get(..n).unwrap_or_default(), out)?;
            }
        }
    }
    converter.finish(out)
}

/// The last `n` lines of `bytes` (a final line without newline counts).
fn tail(bytes: &[u8], n: usize) -> &[u8] {
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    let mut seen = 0;
    for (i, &b) in body.iter().enumerate().rev() {
        if b == b'\n' {
            seen += 1;
            if seen == n {
                return bytes.get(i + 1..).unwrap_or_default();
            }
        }
    }
    if n == 0 {
        return &[];
    }
    bytes
}

fn lines_in(bytes: &[u8]) -> usize {
    let newlines = bytes.iter().filter(|&&b| b == b'\n').count();
    newlines + usize::from(!bytes.is_empty() && !bytes.ends_with(b"\n"))
}

fn show_dir(dir: &Path, last: Option<usize>, follow: bool, out: &mut impl Write) -> io::Result<()> {
    // Watch before reading, so a rotation while we read is not missed.
    let watcher = if follow {
        let inotify = Inotify::init().map_err(context("set up", "inotify"))?;
        inotify
            .watches()
            .add(
                dir,
                WatchMask::MODIFY
                    | WatchMask::CREATE
                    | WatchMask::MOVED_TO
                    | WatchMask::DELETE_SELF
                    | WatchMask::MOVE_SELF,
            )
            .map_err(context("watch", dir.display()))?;
        Some(inotify)
    } else {
        None
    };
    let mut files: Vec<PathBuf> = archives(dir)
        .map_err(context("read", dir.display()))?
        .into_iter()
        .map(|name| dir.join(name))
        .collect();
    // A rotation in progress: `previous` is older than `current`, newer than the archives.
    let previous = dir.join("previous");
    if previous.is_file() {
        files.push(previous);
    }
    let current_path = dir.join("current");
    files.push(current_path.clone());
    let mut converter = Converter {
        terminal: warden::diag::is_terminal(io::stdout()),
        ..Converter::default()
    };

    // With -n, find the newest files that hold enough lines, reading from the end.
    let mut first = 0;
    let mut skip_lines = 0;
    if let Some(n) = last {
        let mut needed = n;
        first = files.len();
        while first > 0 && needed > 0 {
            first -= 1;
            let count = std::fs::read(&files[first])
                .map(|b| lines_in(&b))
                .unwrap_or(0);
            if count >= needed {
                skip_lines = count - needed;
                needed = 0;
            } else {
                needed -= count;
            }
        }
        if n == 0 {
            first = files.len();
        }
    }
    let archives_shown = files
        .get(first..files.len().saturating_sub(1))
        .unwrap_or_default();
    for (i, path) in archives_shown.iter().enumerate() {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            // Pruned since we listed it.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(context("read", path.display())(e)),
        };
        let skip = if i == 0 { skip_lines } else { 0 };
        converter.feed(skip_first_lines(&bytes, skip), out)?;
    }
    let mut current = match File::open(&current_path) {
        Ok(f) => Some(f),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(context("open", current_path.display())(e)),
    };
    if let Some(file) = current.as_mut() {
        if first < files.len() {
            let mut bytes = Vec::new();
            file.read_to_end(&mut bytes)
                .map_err(context("read", current_path.display()))?;
            let skip = if first == files.len() - 1 {
                skip_lines
            } else {
                0
            };
            converter.feed(skip_first_lines(&bytes, skip), out)?;
        } else {
            // -n 0: start following at the end.
            let mut sink = Vec::new();
            file.read_to_end(&mut sink)
                .map_err(context("read", current_path.display()))?;
        }
    }
    let Some(mut inotify) = watcher else {
        return converter.finish(out);
    };
    out.flush()?;
    follow_current(&mut inotify, &current_path, current, &mut converter, out)
}

fn skip_first_lines(bytes: &[u8], n: usize) -> &[u8] {
    let mut rest = bytes;
    for _ in 0..n {
        match crate::lines::find_newline(rest) {
            Some(i) => rest = rest.get(i + 1..).unwrap_or_default(),
            None => return &[],
        }
    }
    rest
}

/// Prints what is appended to `current`; when a new `current` appears, finishes the old file
/// (now an archive, the same open file) and switches to the new one.
fn follow_current(
    inotify: &mut Inotify,
    current_path: &Path,
    mut current: Option<File>,
    converter: &mut Converter,
    out: &mut impl Write,
) -> io::Result<()> {
    let mut events = vec![0u8; 4096];
    loop {
        let mut new_current = false;
        let read = inotify.read_events_blocking(&mut events);
        for event in read.map_err(context("watch", current_path.display()))? {
            if event
                .mask
                .intersects(inotify::EventMask::DELETE_SELF | inotify::EventMask::MOVE_SELF)
            {
                return converter.finish(out);
            }
            if event.name.is_some_and(|n| n == "current")
                && event
                    .mask
                    .intersects(inotify::EventMask::CREATE | inotify::EventMask::MOVED_TO)
            {
                new_current = true;
            }
        }
        if let Some(file) = current.as_mut() {
            copy_new(file, converter, out)?;
        }
        if new_current {
            if let Ok(mut file) = File::open(current_path) {
                copy_new(&mut file, converter, out)?;
                current = Some(file);
            }
        }
        out.flush()?;
    }
}

fn copy_new(file: &mut File, converter: &mut Converter, out: &mut impl Write) -> io::Result<()> {
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match file.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => converter.feed(buf.get(..n).unwrap_or_default(), out)?,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(context("read", "current")(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_labels_and_leaves_other_lines() {
        std::env::set_var("TZ", "UTC");
        let mut out = Vec::new();
        let mut c = Converter::default();
        c.feed(
            b"@400000006955b90a1dcd6500 x\nplain\n@4000 short\n@4000000069",
            &mut out,
        )
        .unwrap();
        c.feed(b"55b90a1dcd6500\n@400000006955b90a1dcd6500tail", &mut out)
            .unwrap();
        c.finish(&mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "2026-01-01 00:00:00.500000000 x\nplain\n@4000 short\n2026-01-01 00:00:00.500000000\n2026-01-01 00:00:00.500000000tail"
        );
    }

    #[test]
    fn tail_counts_lines_from_the_end() {
        assert_eq!(tail(b"a\nb\nc\n", 2), b"b\nc\n");
        assert_eq!(tail(b"a\nb\nc", 2), b"b\nc");
        assert_eq!(tail(b"a\nb\n", 5), b"a\nb\n");
        assert_eq!(tail(b"a\nb\n", 0), b"");
        assert_eq!(lines_in(b"a\nb"), 2);
        assert_eq!(lines_in(b""), 0);
        assert_eq!(skip_first_lines(b"a\nb\nc\n", 2), b"c\n");
    }
}
