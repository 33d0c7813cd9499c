//! Reading stdin without losing a byte if the logger dies.
//!
//! On a pipe the logger never consumes what it has not written: tee(2) copies the pipe's
//! contents into a pipe of our own (stdin keeps them), we read that copy, write the lines, and
//! only then splice exactly the written bytes from stdin to /dev/null. A logger killed at any
//! point leaves every unwritten byte in the pipe for the next one (svscan holds both ends).
//!
//! A line still being written stays in the pipe, so stdin stays readable while we have nothing
//! to do with it. To wait without spinning, stdin is watched through an edge-triggered epoll
//! instance (which itself sits in the main loop's poll set): it reports each new write to the
//! pipe, not the data already there.
//!
//! Anything else (a file, a terminal, a socket) is read with read(2).

use rustix::event::epoll;
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use rustix::pipe::SpliceFlags;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

/// Bytes per batch: pipes are raised to this size where the system allows.
pub const BATCH: usize = 1 << 20;

pub enum Fill {
    /// The batch holds new bytes.
    Data,
    /// Nothing to read now.
    Empty,
    /// End of input.
    Eof,
}

pub enum Input {
    Tee(TeeInput),
    Read,
}

pub struct TeeInput {
    copy_read: OwnedFd,
    copy_write: OwnedFd,
    epoll: OwnedFd,
    null: OwnedFd,
    chunk: usize,
    /// The last copy took `chunk` bytes or left no free slot in our pipe: stdin may hold more.
    copy_filled: bool,
}

fn stdin() -> BorrowedFd<'static> {
    rustix::stdio::stdin()
}

impl Input {
    /// Tee mode when stdin is a pipe and the plumbing can be set up, else read mode (with a
    /// warning if a pipe had to fall back).
    pub fn from_stdin() -> Input {
        let is_pipe = rustix::fs::fstat(stdin())
            .is_ok_and(|st| rustix::fs::FileType::from_raw_mode(st.st_mode).is_fifo());
        if !is_pipe {
            return Input::Read;
        }
        match TeeInput::new() {
            Ok(tee) => Input::Tee(tee),
            Err(e) => {
                warden::say!("logger: warning: unable to set up lossless reading of stdin: {e}; reading it instead");
                Input::Read
            }
        }
    }

    /// The longest line kept whole: a partial line must never fill the pipe (the writer could
    /// then not add its end, and we would wait for it forever).
    pub fn line_room(&self) -> usize {
        match self {
            Input::Tee(tee) => tee.chunk / 2,
            Input::Read => BATCH / 2,
        }
    }

    /// The fd whose readability means new input.
    pub fn wait_fd(&self) -> BorrowedFd<'_> {
        match self {
            Input::Tee(tee) => tee.epoll.as_fd(),
            Input::Read => stdin(),
        }
    }

    /// Whether readiness persists until the data is consumed (read mode), so the loop must go
    /// back to poll after each read rather than read until empty.
    pub fn level_triggered(&self) -> bool {
        matches!(self, Input::Read)
    }

    /// Takes the pending edge notifications; called before reading, so that any write after
    /// this wakes the loop again.
    pub fn acknowledge(&self) {
        if let Input::Tee(tee) = self {
            let mut events = Vec::with_capacity(4);
            let zero = rustix::time::Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            let _ = epoll::wait(
                &tee.epoll,
                rustix::buffer::spare_capacity(&mut events),
                Some(&zero),
            );
        }
    }

    /// Brings input into `batch`: in tee mode a fresh copy of the whole pipe (what we did
    /// not consume is still in it); in read mode appended after the unconsumed bytes.
    pub fn fill(&mut self, batch: &mut Vec<u8>) -> io::Result<Fill> {
        match self {
            Input::Tee(tee) => tee.fill(batch),
            Input::Read => {
                batch.reserve(BATCH);
                match rustix::io::read(stdin(), rustix::buffer::spare_capacity(batch)) {
                    Ok(0) => Ok(Fill::Eof),
                    Ok(_) => Ok(Fill::Data),
                    Err(Errno::AGAIN) | Err(Errno::INTR) => Ok(Fill::Empty),
                    Err(e) => Err(e.into()),
                }
            }
        }
    }

    /// Discards the first `n` bytes of input: they are written.
    pub fn consume(&mut self, batch: &mut Vec<u8>, n: usize) -> io::Result<()> {
        match self {
            Input::Tee(tee) => {
                let mut left = n;
                while left > 0 {
                    match rustix::pipe::splice(
                        stdin(),
                        None,
                        &tee.null,
                        None,
                        left,
                        SpliceFlags::empty(),
                    ) {
                        Ok(0) => {
                            return Err(io::Error::new(
                                io::ErrorKind::UnexpectedEof,
                                "the pipe lost data we copied",
                            ))
                        }
                        Ok(k) => left -= k,
                        Err(Errno::INTR) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                Ok(())
            }
            Input::Read => {
                batch.drain(..n.min(batch.len()));
                Ok(())
            }
        }
    }

    /// Whether the last copy filled every buffer slot of our pipe, so stdin may hold more
    /// than the copy took. With pipes of equal size this happens only when a batch of
    /// tiny buffers has no newline.
    pub fn copy_was_cut_short(&self) -> bool {
        match self {
            Input::Tee(tee) => tee.copy_filled,
            Input::Read => false,
        }
    }

    /// Whether stdin holds more than `copied` bytes: more was written after the last copy.
    pub fn holds_more_than(&self, copied: usize) -> bool {
        match self {
            Input::Tee(_) => rustix::io::ioctl_fionread(stdin()).is_ok_and(|n| n as usize > copied),
            Input::Read => false,
        }
    }

    /// Whether no writer is left, so a partial line in the pipe is the last one, once a copy
    /// holds all of it.
    pub fn writers_gone(&self) -> bool {
        match self {
            Input::Tee(_) => {
                let fd = stdin();
                let mut fds = [rustix::event::PollFd::new(
                    &fd,
                    rustix::event::PollFlags::IN,
                )];
                let zero = rustix::time::Timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                };
                matches!(rustix::event::poll(&mut fds, Some(&zero)), Ok(n) if n > 0)
                    && fds[0].revents().contains(rustix::event::PollFlags::HUP)
            }
            Input::Read => false,
        }
    }
}

impl TeeInput {
    fn new() -> io::Result<TeeInput> {
        use rustix::pipe::{fcntl_getpipe_size, fcntl_setpipe_size, pipe_with, PipeFlags};
        let (copy_read, copy_write) = pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)?;
        // Bigger pipes mean bigger batches and fewer wake-ups; where the system refuses
        // (pipe-max-size, per-user limits) the default size still works.
        let _ = fcntl_setpipe_size(stdin(), BATCH);
        let _ = fcntl_setpipe_size(&copy_write, BATCH);
        let chunk = fcntl_getpipe_size(stdin())?.min(fcntl_getpipe_size(&copy_write)?);
        let null = rustix::fs::open("/dev/null", OFlags::WRONLY | OFlags::CLOEXEC, Mode::empty())?;
        let epoll = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        epoll::add(
            &epoll,
            stdin(),
            epoll::EventData::new_u64(0),
            epoll::EventFlags::IN | epoll::EventFlags::ET,
        )?;
        Ok(TeeInput {
            copy_read,
            copy_write,
            epoll,
            null,
            chunk,
            copy_filled: false,
        })
    }

    fn fill(&mut self, batch: &mut Vec<u8>) -> io::Result<Fill> {
        batch.clear();
        let copied = loop {
            match rustix::pipe::tee(stdin(), &self.copy_write, self.chunk, SpliceFlags::NONBLOCK) {
                Ok(0) => return Ok(Fill::Eof),
                Ok(n) => break n,
                Err(Errno::AGAIN) => return Ok(Fill::Empty),
                Err(Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        };
        let mut fds = [rustix::event::PollFd::new(
            &self.copy_write,
            rustix::event::PollFlags::OUT,
        )];
        let zero = rustix::time::Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // Cut short: the copy took all it may (stdin can hold more, e.g. when only one of the
        // two pipes could be enlarged), or it used up every slot of our pipe.
        self.copy_filled =
            copied >= self.chunk || matches!(rustix::event::poll(&mut fds, Some(&zero)), Ok(0));
        batch.reserve(copied);
        while batch.len() < copied {
            match rustix::io::read(&self.copy_read, rustix::buffer::spare_capacity(batch)) {
                Ok(0) => break,
                Ok(_) | Err(Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(Fill::Data)
    }
}
