//! The writing loop: one poll over the signal pipe and the input, with a deadline only while
//! a failed write waits to be retried.

use crate::input::{Fill, Input, BATCH};
use crate::lines::{self, Record};
use crate::logdir::{Failure, LogDir, Progress};
use rustix::event::{PollFd, PollFlags};
use rustix::process::Signal;
use std::time::{Duration, Instant};
use warden::signal::SignalPipe;
use warden::Tai64N;

/// What goes before each line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StampStyle {
    /// `@` + 24 hex digits of TAI64N, as multilog `t` and svlogd `-t`.
    Tai64n,
    /// `2026-11-22T03:00:00.123456789Z`.
    Iso,
    None,
}

impl StampStyle {
    /// The stamp and its separating space, for a batch read now.
    fn now(self) -> Vec<u8> {
        match self {
            StampStyle::Tai64n => {
                let mut stamp = Tai64N::now().label().to_vec();
                stamp.push(b' ');
                stamp
            }
            StampStyle::Iso => {
                let now = Tai64N::now();
                let mut stamp =
                    crate::clock::format_iso_utc(now.unix_secs(), now.nanos).into_bytes();
                stamp.push(b' ');
                stamp
            }
            StampStyle::None => Vec::new(),
        }
    }

    pub fn len(self) -> usize {
        match self {
            StampStyle::Tai64n => warden::tai::LABEL_LEN + 1,
            StampStyle::Iso => 31,
            StampStyle::None => 0,
        }
    }
}

/// The end (exclusive) of the next piece of `records` to write from record `from` on: as many
/// records as end within `PIECE` bytes past `done` (what is consumed), at least one.
fn piece_end(records: &[Record], from: usize, done: usize) -> usize {
    let limit = done.saturating_add(PIECE);
    records
        .partition_point(|r| r.end <= limit)
        .max(from.saturating_add(1))
        .min(records.len())
}

/// Why the loop ended.
pub enum Ending {
    /// End of input, everything written.
    Eof,
    /// TERM or INT: everything read is written, the rest stays in the pipe.
    Signal,
    /// TERM while writing was failing: what could not be written stays in the pipe
    /// (tee mode) or is lost (read mode: this many bytes).
    SignalWhileFailing(usize),
}

const FIRST_RETRY: Duration = Duration::from_millis(20);
const LAST_RETRY: Duration = Duration::from_secs(1);

/// The most input written before it is consumed (tee mode): a logger killed between a write
/// and its consume makes the next one write those bytes again, so this bounds the duplicates
/// per kill to one default pipe buffer, whatever the batch size.
pub const PIECE: usize = 64 * 1024;

/// A batch read and planned, not yet all written.
struct Pending {
    stamp: Vec<u8>,
    consumed: usize,
    /// Bytes of the batch already consumed from the pipe (tee mode), piece by piece.
    done: usize,
    progress: Progress,
}

/// Writing keeps failing (full disk, removed directory): retry at `deadline`.
struct Stall {
    deadline: Instant,
    delay: Duration,
}

pub struct Logger {
    dir: LogDir,
    input: Input,
    stamp: StampStyle,
    max_line: usize,
    batch: Vec<u8>,
    records: Vec<Record>,
    pending: Option<Pending>,
    stall: Option<Stall>,
    input_ready: bool,
    eof: bool,
}

impl Logger {
    pub fn new(dir: LogDir, input: Input, stamp: StampStyle, max_line: usize) -> Logger {
        // Read mode waits for poll first: a read on an idle terminal would block the loop.
        let input_ready = !input.level_triggered();
        Logger {
            dir,
            input,
            stamp,
            max_line,
            batch: Vec::with_capacity(BATCH),
            records: Vec::new(),
            pending: None,
            stall: None,
            input_ready,
            eof: false,
        }
    }

    pub fn run(&mut self, signals: &SignalPipe) -> std::io::Result<Ending> {
        let mut rotate_wanted = false;
        loop {
            let input_readable = self.wait(signals)?;
            for signal in signals.take() {
                match signal {
                    Signal::TERM | Signal::INT => return Ok(self.finish_on_signal()),
                    Signal::ALARM => rotate_wanted = true,
                    _ => {}
                }
            }
            if input_readable {
                self.input.acknowledge();
                self.input_ready = true;
            }
            if let Some(stall) = &self.stall {
                if Instant::now() < stall.deadline {
                    continue;
                }
                if let Err(e) = self.dir.reestablish() {
                    self.stalled(e);
                    continue;
                }
            }
            if self.pending.is_some() && !self.write_pending()? {
                continue;
            }
            if rotate_wanted {
                rotate_wanted = false;
                if let Err(e) = self.dir.rotate() {
                    warden::say!("logger: warning: {e}");
                }
            }
            if self.input_ready {
                if let Some(ending) = self.read_batch()? {
                    return Ok(ending);
                }
            }
        }
    }

    /// Blocks until a signal, new input, or the retry deadline; returns whether input is
    /// readable.
    fn wait(&self, signals: &SignalPipe) -> std::io::Result<bool> {
        let now = Instant::now();
        let timeout = match &self.stall {
            Some(stall) => Some(stall.deadline.saturating_duration_since(now)),
            None if self.input_ready => Some(Duration::ZERO),
            None => None,
        };
        let timespec = timeout.map(warden::poll::timeout);
        let watch_input = self.stall.is_none() && !self.input_ready;
        let input = self.input.wait_fd();
        let mut fds = [
            PollFd::new(signals, PollFlags::IN),
            PollFd::new(&input, PollFlags::IN),
        ];
        let count = if watch_input { 2 } else { 1 };
        match rustix::event::poll(fds.get_mut(..count).unwrap_or_default(), timespec.as_ref()) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
        Ok(watch_input && !fds[1].revents().is_empty())
    }

    /// Reads and plans one batch and writes it; `Some` when the input has ended.
    fn read_batch(&mut self) -> std::io::Result<Option<Ending>> {
        match self.input.fill(&mut self.batch)? {
            Fill::Empty => {
                self.input_ready = false;
                return Ok(None);
            }
            Fill::Eof => self.eof = true,
            Fill::Data => {
                if self.input.level_triggered() {
                    self.input_ready = false;
                }
            }
        }
        self.records.clear();
        let mut consumed = lines::plan(&self.batch, self.max_line, self.eof, &mut self.records);
        if self.records.is_empty() && !self.eof && !self.batch.is_empty() {
            // Only an unfinished line: wait for its end, unless nobody can write it any more.
            // A copy that filled our pipe comes first: stdin holds more of the line even when
            // its writers are gone (HUP is reported while data is still queued).
            if self.input.copy_was_cut_short() {
                // The copy ran out of pipe buffers before the line's end (many tiny buffers,
                // or a pipe that could not be enlarged): cut the line here, marked, or its end
                // could stay out of reach forever.
                self.records.push(Record {
                    start: 0,
                    end: self.batch.len(),
                    ending: lines::End::Split,
                });
                consumed = self.batch.len();
            } else if self.input.writers_gone() {
                if self.input.holds_more_than(self.batch.len()) {
                    // Written after our copy, before the last writer left: copy again now, as
                    // no new write will wake us. Only a copy of everything is the last line.
                    return Ok(None);
                }
                self.eof = true;
                consumed = lines::plan(&self.batch, self.max_line, true, &mut self.records);
            } else {
                self.input_ready = false;
            }
        }
        if self.records.is_empty() {
            return Ok(if self.eof && self.batch.len() == consumed {
                Some(Ending::Eof)
            } else {
                None
            });
        }
        self.pending = Some(Pending {
            stamp: self.stamp.now(),
            consumed,
            done: 0,
            progress: Progress::default(),
        });
        self.write_pending()?;
        Ok(None)
    }

    /// Writes the pending batch and then consumes its input; false if writing failed (the
    /// batch stays pending and a retry is scheduled). In tee mode the batch goes out in pieces
    /// of at most `PIECE` bytes of input, each consumed as soon as it is written.
    fn write_pending(&mut self) -> std::io::Result<bool> {
        let tee = matches!(self.input, Input::Tee(_));
        loop {
            let Some(pending) = self.pending.as_mut() else {
                return Ok(true);
            };
            let end = if tee {
                piece_end(&self.records, pending.progress.record, pending.done)
            } else {
                self.records.len()
            };
            let written = self.dir.write_records(
                &self.batch,
                &pending.stamp,
                self.records.get(..end).unwrap_or(&self.records),
                &mut pending.progress,
            );
            if let Err(e) = written {
                self.stalled(e);
                return Ok(false);
            }
            if end < self.records.len() {
                let upto = self
                    .records
                    .get(end.wrapping_sub(1))
                    .map_or(pending.done, |r| r.end);
                let n = upto.saturating_sub(pending.done);
                pending.done = pending.done.max(upto);
                self.input.consume(&mut self.batch, n)?;
                continue;
            }
            let consumed = pending.consumed.saturating_sub(pending.done);
            self.pending = None;
            self.stall = None;
            self.input.consume(&mut self.batch, consumed)?;
            return Ok(true);
        }
    }

    /// Schedules a retry, warning at the first failure of a series.
    fn stalled(&mut self, failure: Failure) {
        let delay = match &self.stall {
            None => {
                warden::say!("logger: warning: {failure}; retrying until it works");
                FIRST_RETRY
            }
            Some(stall) => (stall.delay * 2).min(LAST_RETRY),
        };
        self.stall = Some(Stall {
            deadline: warden::service::deadline(Instant::now(), delay),
            delay,
        });
    }

    /// TERM: nothing read is left unwritten unless writing is failing.
    fn finish_on_signal(&mut self) -> Ending {
        if self.pending.is_none() {
            if let Input::Read = self.input {
                // Read mode holds a partial line in memory: write it rather than lose it.
                self.records.clear();
                let consumed = lines::plan(&self.batch, self.max_line, true, &mut self.records);
                if !self.records.is_empty() {
                    self.pending = Some(Pending {
                        stamp: self.stamp.now(),
                        consumed,
                        done: 0,
                        progress: Progress::default(),
                    });
                    let _ = self.write_pending();
                }
            }
        }
        match &self.pending {
            None => Ending::Signal,
            Some(_) if matches!(self.input, Input::Tee(_)) => Ending::SignalWhileFailing(0),
            Some(_) => Ending::SignalWhileFailing(self.batch.len()),
        }
    }
}
