//! The log directory: `lock`, `current` and the archives `@<tai64n>.s`.
//!
//! Rotation is four steps, each leaving a state the next start recovers from:
//! 1. rename `current` to `previous` (as multilog does) without replacing anything (renameat2
//!    NOREPLACE; where the filesystem lacks it, link then unlink, and recovery drops a
//!    `current` that is still a second name of `previous` or of an archive); a crash after it
//!    leaves no `current`, which recovery creates;
//! 2. create the new `current` and go on writing there, while a thread of the logger's own
//!    does the rest, so that waiting for the disk no longer holds up the lines behind it;
//! 3. fdatasync `previous`, then rename it to `@<label>.s` the same way (a crash before it:
//!    recovery syncs `previous` and archives it, labelled by its mtime, before `current`);
//! 4. delete the oldest archives beyond the count (a crash before or during the deletion
//!    leaves too many, which recovery deletes).
//!
//! An archive is thus always synced before it has its name. A rotation waits for the one
//! before it to be archived, so there is at most one `previous`.

use crate::lines::Record;
use rustix::fs::{AtFlags, FlockOperation, Mode, OFlags, RenameFlags};
use rustix::io::Errno;
use std::fmt;
use std::io::IoSlice;
use std::os::fd::OwnedFd;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use warden::Tai64N;

/// At most this many buffers per writev (the kernel's IOV_MAX).
const IOV_MAX: usize = 1024;
/// Pieces up to this long are copied into the staging buffer rather than given to writev
/// on their own.
const COPY_MAX: usize = 1024;
/// Bytes staged per writev.
const STAGING: usize = 256 * 1024;

/// A writev buffer: a range of the staging buffer, or input referenced in place.
enum Segment<'a> {
    Staged(usize, usize),
    Direct(&'a [u8]),
}

/// An operation on the log directory that failed: `unable to <verb> <object>: <cause>`.
#[derive(Debug)]
pub struct Failure {
    pub verb: &'static str,
    pub object: PathBuf,
    pub cause: String,
    pub errno: Option<Errno>,
}

impl Failure {
    fn io(verb: &'static str, object: PathBuf, err: impl Cause) -> Failure {
        Failure {
            verb,
            object,
            cause: err.to_string(),
            errno: err.errno(),
        }
    }

    /// A full disk or an I/O error: worth retrying, where a permission or type error is not.
    pub fn transient(&self) -> bool {
        matches!(self.errno, Some(Errno::NOSPC | Errno::DQUOT | Errno::IO))
    }
}

/// What a failure's cause says, and its errno when it has one.
pub trait Cause: fmt::Display {
    fn errno(&self) -> Option<Errno>;
}

impl Cause for Errno {
    fn errno(&self) -> Option<Errno> {
        Some(*self)
    }
}

impl Cause for std::io::Error {
    fn errno(&self) -> Option<Errno> {
        self.raw_os_error().map(Errno::from_raw_os_error)
    }
}

impl Cause for &str {
    fn errno(&self) -> Option<Errno> {
        None
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unable to {} {}: {}",
            self.verb,
            self.object.display(),
            self.cause
        )
    }
}

/// Whether `name` is an archive: `@`, 24 hex digits, `.s` (finished) or `.u` (svlogd's
/// unfinished file, shown but never written by us).
pub fn is_archive_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    bytes.len() == 27
        && bytes.first() == Some(&b'@')
        && bytes
            .get(1..25)
            .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))
        && matches!(bytes.get(25..), Some(b".s") | Some(b".u"))
}

/// The archive names in `dir`, oldest first (labels are fixed-width hex, so names sort by time).
pub fn archives(dir: &Path) -> std::io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        if let Ok(name) = entry?.file_name().into_string() {
            if is_archive_name(&name) {
                names.push(name);
            }
        }
    }
    names.sort_unstable();
    Ok(names)
}

/// Where a batch's writing stands, so a write stopped by a full disk resumes where it stopped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// The next record to write.
    pub record: usize,
    /// Bytes of that record already written.
    pub offset: usize,
    /// The first record that went into the open `current`: if that file turns out to be
    /// removed, writing starts again from there.
    pub file_start: usize,
}

struct Current {
    fd: OwnedFd,
    size: u64,
}

pub struct LogDir {
    path: PathBuf,
    /// Shared with the thread that archives `previous`.
    dir: Arc<OwnedFd>,
    _lock: OwnedFd,
    current: Option<Current>,
    limit: u64,
    keep: usize,
    newest_archive: Option<Tai64N>,
    staging: Vec<u8>,
    /// Recovery ran to its end; until then nothing is written.
    recovered: bool,
    /// The thread that syncs, archives and prunes; started at the first rotation.
    archiver: Option<Archiver>,
    /// A `previous` handed to the archiver whose outcome has not been collected.
    archiving: bool,
}

impl LogDir {
    /// Creates the directory if missing, locks it and recovers from an interrupted rotation.
    pub fn open(path: &Path, limit: u64, keep: usize) -> Result<LogDir, Failure> {
        let (dir, lock) = establish(path)?;
        let mut log = LogDir {
            path: path.to_owned(),
            dir: Arc::new(dir),
            _lock: lock,
            current: None,
            limit,
            keep,
            newest_archive: None,
            staging: Vec::with_capacity(STAGING + COPY_MAX * 3),
            recovered: false,
            archiver: None,
            archiving: false,
        };
        match log.recover() {
            // A full disk must not stop the logger: the repair is retried, with a warning,
            // once there is something to write.
            Err(e) if e.transient() => Ok(log),
            Err(e) => Err(e),
            Ok(()) => Ok(log),
        }
    }

    fn name(&self, file: &str) -> PathBuf {
        self.path.join(file)
    }

    /// Repairs what a crash may have left (see the module comment) and opens `current`; on
    /// failure `current` stays closed, so that writing retries the whole repair.
    fn recover(&mut self) -> Result<(), Failure> {
        let result = self.repair();
        self.recovered = result.is_ok();
        if result.is_err() {
            self.current = None;
        }
        result
    }

    fn repair(&mut self) -> Result<(), Failure> {
        let names = archives(&self.path).map_err(|e| Failure::io("read", self.path.clone(), e))?;
        self.newest_archive = names
            .last()
            .and_then(|n| n.get(..25))
            .and_then(|label| Tai64N::parse_label(label.as_bytes()));
        let previous = [String::from("previous")];
        self.drop_second_name("previous", &names)?;
        self.drop_second_name("current", &previous)?;
        self.drop_second_name("current", &names)?;
        self.archive_previous()?;
        self.open_current()?;
        self.end_torn_line()?;
        self.prune();
        Ok(())
    }

    /// A move by link and unlink that stopped in between leaves `file` as a second name of
    /// one of `names`, which holds the lines: the second name goes.
    fn drop_second_name(&self, file: &str, names: &[String]) -> Result<(), Failure> {
        let Ok(st) = rustix::fs::statat(&*self.dir, file, AtFlags::SYMLINK_NOFOLLOW) else {
            return Ok(());
        };
        let same_inode = |name: &String| {
            rustix::fs::statat(&*self.dir, name.as_str(), AtFlags::SYMLINK_NOFOLLOW)
                .is_ok_and(|a| a.st_ino == st.st_ino && a.st_dev == st.st_dev)
        };
        if st.st_nlink > 1 && names.iter().rev().any(same_inode) {
            rustix::fs::unlinkat(&*self.dir, file, AtFlags::empty())
                .map_err(|e| Failure::io("remove", self.name(file), e))?;
        }
        Ok(())
    }

    /// Archives a `previous` that is left: by a crash, by a failed archiving thread, or by a
    /// multilog that died while its processor ran. It is synced first, like every archive.
    fn archive_previous(&mut self) -> Result<(), Failure> {
        let Ok(previous) = rustix::fs::statat(&*self.dir, "previous", AtFlags::SYMLINK_NOFOLLOW)
        else {
            return Ok(());
        };
        if !rustix::fs::FileType::from_raw_mode(previous.st_mode).is_file() {
            return Ok(());
        }
        let fd = rustix::fs::openat(
            &*self.dir,
            "previous",
            OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Failure::io("open", self.name("previous"), e))?;
        rustix::fs::fdatasync(&fd).map_err(|e| Failure::io("sync", self.name("previous"), e))?;
        let mtime = std::time::UNIX_EPOCH
            + std::time::Duration::new(
                u64::try_from(previous.st_mtime).unwrap_or(0),
                u32::try_from(previous.st_mtime_nsec).unwrap_or(0),
            );
        let label = match self.newest_archive {
            Some(newest) if newest >= Tai64N::from_system_time(mtime) => later(newest),
            _ => Tai64N::from_system_time(mtime),
        };
        self.newest_archive = Some(archive(&self.dir, &self.path, "previous", label)?);
        Ok(())
    }

    /// A logger killed in the middle of a write leaves a line without its newline; end it, so
    /// the lines written from now on start on a line of their own.
    fn end_torn_line(&mut self) -> Result<(), Failure> {
        let path = self.name("current");
        let Some(current) = self.current.as_mut() else {
            return Ok(());
        };
        if current.size == 0 {
            return Ok(());
        }
        let mut last = [0u8; 1];
        rustix::io::pread(&current.fd, &mut last, current.size - 1)
            .map_err(|e| Failure::io("read", path.clone(), e))?;
        if last != *b"\n" {
            rustix::io::write(&current.fd, b"\n").map_err(|e| Failure::io("write", path, e))?;
            current.size += 1;
        }
        Ok(())
    }

    fn open_current(&mut self) -> Result<(), Failure> {
        let fd = rustix::fs::openat(
            &*self.dir,
            "current",
            OFlags::RDWR | OFlags::CREATE | OFlags::APPEND | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        )
        .map_err(|e| Failure::io("open", self.name("current"), e))?;
        let size = rustix::fs::fstat(&fd)
            .map_err(|e| Failure::io("stat", self.name("current"), e))?
            .st_size as u64;
        self.current = Some(Current { fd, size });
        Ok(())
    }

    /// Brings the directory back after a failure: if it was removed, creates and locks it
    /// again; then reopens `current` if it is not open.
    pub fn reestablish(&mut self) -> Result<(), Failure> {
        let removed = rustix::fs::fstat(&*self.dir).map_or(true, |st| st.st_nlink == 0);
        if removed {
            self.current = None;
            let (dir, lock) = establish(&self.path)?;
            self.dir = Arc::new(dir);
            self._lock = lock;
            return self.recover();
        }
        if !self.recovered {
            return self.recover();
        }
        if self.current.is_none() {
            self.open_current()?;
        }
        Ok(())
    }

    /// Writes `records` of `batch`, each preceded by `stamp`, from `progress` on, rotating
    /// before a record that would take `current` over the limit. On failure `progress` says
    /// what is written; calling again resumes there.
    pub fn write_records(
        &mut self,
        batch: &[u8],
        stamp: &[u8],
        records: &[Record],
        progress: &mut Progress,
    ) -> Result<(), Failure> {
        while let Some(&first) = records.get(progress.record) {
            if self.current.is_none() {
                self.reestablish()?;
                progress.file_start = progress.record;
            }
            let size = self.current.as_ref().map_or(0, |c| c.size);
            if progress.offset == 0 && size > 0 && size + record_len(stamp, &first) > self.limit {
                self.rotate()?;
                progress.file_start = progress.record;
                continue;
            }
            let Some(current) = self.current.as_ref() else {
                continue;
            };
            // Short pieces are copied into one staging buffer and long ones referenced where
            // they lie: the kernel copies a few large buffers much faster than two small
            // ones per line, and a 64 KiB line is still not copied twice.
            self.staging.clear();
            let mut segments: Vec<Segment<'_>> = Vec::with_capacity(64);
            let mut staged_from = 0;
            // The first record may be partly written already: count it whole from its start.
            let mut planned = current.size.saturating_sub(progress.offset as u64);
            let mut skip = progress.offset;
            for (i, record) in records.iter().enumerate().skip(progress.record) {
                let len = record_len(stamp, record);
                let fits = i == progress.record || planned + len <= self.limit;
                let room = segments.len() + 4 <= IOV_MAX && self.staging.len() < STAGING;
                if !fits || !room {
                    break;
                }
                let content = batch.get(record.start..record.end).unwrap_or_default();
                for part in [stamp, content, record.ending.suffix()] {
                    if skip >= part.len() {
                        skip -= part.len();
                        continue;
                    }
                    let part = part.get(skip..).unwrap_or_default();
                    skip = 0;
                    if part.len() <= COPY_MAX {
                        self.staging.extend_from_slice(part);
                    } else {
                        if self.staging.len() > staged_from {
                            segments.push(Segment::Staged(staged_from, self.staging.len()));
                            staged_from = self.staging.len();
                        }
                        segments.push(Segment::Direct(part));
                    }
                }
                planned += len;
            }
            if self.staging.len() > staged_from {
                segments.push(Segment::Staged(staged_from, self.staging.len()));
            }
            let iov: Vec<IoSlice<'_>> = segments
                .iter()
                .map(|segment| match *segment {
                    Segment::Staged(from, to) => {
                        IoSlice::new(self.staging.get(from..to).unwrap_or_default())
                    }
                    Segment::Direct(part) => IoSlice::new(part),
                })
                .collect();
            let written = match rustix::io::writev(&current.fd, &iov) {
                Ok(0) => {
                    return Err(Failure::io(
                        "write",
                        self.name("current"),
                        "nothing was written",
                    ))
                }
                Ok(n) => n,
                Err(Errno::INTR) => continue,
                Err(e) => return Err(Failure::io("write", self.name("current"), e)),
            };
            if let Some(current) = self.current.as_mut() {
                current.size += written as u64;
            }
            advance(progress, written, |i| {
                records.get(i).map_or(0, |r| record_len(stamp, r) as usize)
            });
        }
        self.check_linked(progress)
    }

    /// Writes to a removed file succeed silently; catch it once per batch, before the input
    /// is consumed, and write again what went into the removed file.
    fn check_linked(&mut self, progress: &mut Progress) -> Result<(), Failure> {
        let Some(current) = self.current.as_ref() else {
            return Ok(());
        };
        match rustix::fs::fstat(&current.fd) {
            Ok(st) if st.st_nlink > 0 => Ok(()),
            _ => {
                self.current = None;
                progress.record = progress.file_start;
                progress.offset = 0;
                Err(Failure::io(
                    "write",
                    self.name("current"),
                    "the file or its directory was removed",
                ))
            }
        }
    }

    /// Moves `current` (unless empty) aside as `previous`, starts a new one, and leaves the
    /// syncing, archiving and pruning to the archiver thread.
    pub fn rotate(&mut self) -> Result<(), Failure> {
        let Some(current) = self.current.as_ref() else {
            return self.reestablish();
        };
        if current.size == 0 {
            return Ok(());
        }
        self.settle_previous()?;
        move_noreplace(&self.dir, "current", "previous")
            .map_err(|e| Failure::io("rename", self.name("current"), e))?;
        let Some(previous) = self.current.take() else {
            return Ok(());
        };
        let label = self.next_label();
        self.newest_archive = Some(label);
        let job = Job {
            dir: Arc::clone(&self.dir),
            path: self.path.clone(),
            keep: self.keep,
            previous: previous.fd,
            label,
        };
        if self.archiver.is_none() {
            self.archiver = Archiver::start();
        }
        match &self.archiver {
            Some(archiver) if archiver.jobs.send(job).is_ok() => self.archiving = true,
            // No thread to be had: archived here, as a crash would leave it to recovery.
            _ => {
                self.archive_previous()?;
                self.prune();
            }
        }
        self.open_current()
    }

    /// Waits until the file rotated before is archived (its pruning may go on); if that
    /// failed, or a crash left a `previous`, archives it here, so the name is free and the
    /// archives keep their order.
    fn settle_previous(&mut self) -> Result<(), Failure> {
        if std::mem::take(&mut self.archiving) {
            match self.archiver.as_ref().map(|a| a.done.recv()) {
                Some(Ok(Ok(label))) => self.newest_archive = self.newest_archive.max(Some(label)),
                Some(Ok(Err(e))) => warden::say!("logger: warning: {e}; retrying"),
                // The thread is gone (it cannot panic, but): what it left is archived here.
                _ => self.archiver = None,
            }
        }
        self.archive_previous()
    }

    /// Lets the archiver finish (syncing, archiving and pruning), before exit.
    pub fn finish(&mut self) {
        if let Err(e) = self.settle_previous() {
            warden::say!("logger: warning: {e}; the next start archives it");
        }
        if let Some(archiver) = self.archiver.take() {
            drop(archiver.jobs);
            let _ = archiver.thread.join();
        }
    }

    /// Now, or just after the newest archive if the clock went back, so names keep their order.
    fn next_label(&self) -> Tai64N {
        let now = Tai64N::now();
        match self.newest_archive {
            Some(newest) if newest >= now => later(newest),
            _ => now,
        }
    }

    fn prune(&self) {
        prune(&self.dir, &self.path, self.keep);
    }
}

/// Renames `from` to `to` without replacing anything: renameat2 NOREPLACE, else (a filesystem
/// without it) link then unlink, which recovery completes if it stops in between.
fn move_noreplace(dir: &OwnedFd, from: &str, to: &str) -> Result<(), Errno> {
    match rustix::fs::renameat_with(dir, from, dir, to, RenameFlags::NOREPLACE) {
        Err(Errno::INVAL) | Err(Errno::NOSYS) => {
            rustix::fs::linkat(dir, from, dir, to, AtFlags::empty())?;
            rustix::fs::unlinkat(dir, from, AtFlags::empty())
        }
        other => other,
    }
}

/// Renames `file` to an archive named by `label` or the first later free label.
fn archive(dir: &OwnedFd, path: &Path, file: &str, mut label: Tai64N) -> Result<Tai64N, Failure> {
    loop {
        match move_noreplace(dir, file, archive_name(label).as_str()) {
            Ok(()) => return Ok(label),
            Err(Errno::EXIST) => label = later(label),
            Err(e) => return Err(Failure::io("rename", path.join(file), e)),
        }
    }
}

/// Deletes the oldest archives beyond the count; a failure is a warning, retried at the next
/// rotation.
fn prune(dir: &OwnedFd, path: &Path, keep: usize) {
    let names = match archives(path) {
        Ok(names) => names,
        Err(e) => {
            warden::say!("logger: warning: unable to read {}: {e}", path.display());
            return;
        }
    };
    let excess = names.len().saturating_sub(keep);
    for name in names.iter().take(excess) {
        match rustix::fs::unlinkat(dir, name.as_str(), AtFlags::empty()) {
            // Gone already: recovery and the archiver may both prune.
            Ok(()) | Err(Errno::NOENT) => {}
            Err(e) => warden::say!(
                "logger: warning: unable to remove {}: {e}",
                path.join(name).display()
            ),
        }
    }
}

/// One rotated file for the archiver: sync it, name it an archive, prune.
struct Job {
    dir: Arc<OwnedFd>,
    path: PathBuf,
    keep: usize,
    previous: OwnedFd,
    label: Tai64N,
}

/// The thread that does what a rotation must wait for the disk for, in order, one rotated
/// file at a time: the logger goes on writing the new `current` meanwhile.
struct Archiver {
    jobs: std::sync::mpsc::Sender<Job>,
    /// For each job, once it is archived (before its pruning): the label, or what failed.
    done: std::sync::mpsc::Receiver<Result<Tai64N, Failure>>,
    thread: JoinHandle<()>,
}

impl Archiver {
    fn start() -> Option<Archiver> {
        let (jobs, incoming) = std::sync::mpsc::channel::<Job>();
        let (report, done) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("archiver".into())
            .stack_size(64 * 1024)
            .spawn(move || {
                for job in incoming {
                    let archived = rustix::fs::fdatasync(&job.previous)
                        .map_err(|e| Failure::io("sync", job.path.join("previous"), e))
                        .and_then(|()| archive(&job.dir, &job.path, "previous", job.label));
                    let pruning = archived.is_ok();
                    if report.send(archived).is_err() {
                        return;
                    }
                    if pruning {
                        prune(&job.dir, &job.path, job.keep);
                    }
                }
            })
            .ok()?;
        Some(Archiver { jobs, done, thread })
    }
}

impl Drop for LogDir {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Creates, opens and locks the directory.
fn establish(path: &Path) -> Result<(OwnedFd, OwnedFd), Failure> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o750)
        .create(path)
        .map_err(|e| Failure::io("create", path.to_owned(), e))?;
    let dir = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Failure::io("open", path.to_owned(), e))?;
    let lock_path = path.join("lock");
    let lock = rustix::fs::openat(
        &dir,
        "lock",
        OFlags::RDWR | OFlags::CREATE | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )
    .map_err(|e| Failure::io("open", lock_path.clone(), e))?;
    match rustix::fs::flock(&lock, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok((dir, lock)),
        Err(Errno::WOULDBLOCK) => Err(Failure {
            verb: "lock",
            object: lock_path,
            cause: "another logger is writing to this directory".into(),
            errno: Some(Errno::WOULDBLOCK),
        }),
        Err(e) => Err(Failure::io("lock", lock_path, e)),
    }
}

fn record_len(stamp: &[u8], record: &Record) -> u64 {
    (stamp.len() + record.body_len()) as u64
}

/// Moves `progress` forward by `written` bytes over records whose lengths `len_of` gives.
fn advance(progress: &mut Progress, mut written: usize, len_of: impl Fn(usize) -> usize) {
    while written > 0 {
        let left = len_of(progress.record).saturating_sub(progress.offset);
        if left == 0 {
            return;
        }
        if written >= left {
            written -= left;
            progress.record += 1;
            progress.offset = 0;
        } else {
            progress.offset += written;
            written = 0;
        }
    }
}

pub fn archive_name(label: Tai64N) -> String {
    format!("{label}.s")
}

/// One nanosecond after `t`.
fn later(t: Tai64N) -> Tai64N {
    if t.nanos >= 999_999_999 {
        Tai64N {
            secs: t.secs + 1,
            nanos: 0,
        }
    } else {
        Tai64N {
            secs: t.secs,
            nanos: t.nanos + 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lines::End;

    #[test]
    fn archive_names() {
        assert!(is_archive_name("@400000006955b90a1dcd6500.s"));
        assert!(is_archive_name("@400000006955b90a1dcd6500.u"));
        assert!(!is_archive_name("@400000006955b90a1dcd6500.t"));
        assert!(!is_archive_name("@400000006955b90a1dcd650.s"));
        assert!(!is_archive_name("current"));
        let t = Tai64N {
            secs: 1 << 62,
            nanos: 999_999_999,
        };
        assert_eq!(
            later(t),
            Tai64N {
                secs: (1 << 62) + 1,
                nanos: 0
            }
        );
        assert!(is_archive_name(&archive_name(t)));
    }

    #[test]
    fn progress_advances_over_records() {
        let lens = [10usize, 5, 7];
        let mut p = Progress::default();
        advance(&mut p, 12, |i| lens.get(i).copied().unwrap_or(0));
        assert_eq!((p.record, p.offset), (1, 2));
        advance(&mut p, 3, |i| lens.get(i).copied().unwrap_or(0));
        assert_eq!((p.record, p.offset), (2, 0));
        advance(&mut p, 7, |i| lens.get(i).copied().unwrap_or(0));
        assert_eq!((p.record, p.offset), (3, 0));
    }

    fn records_of(batch: &[u8]) -> Vec<Record> {
        let mut records = Vec::new();
        crate::lines::plan(batch, 1000, false, &mut records);
        records
    }

    #[test]
    fn rotates_at_line_boundaries_within_the_limit() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("log");
        let mut log = LogDir::open(&path, 20, 2).unwrap();
        let batch = b"aaaa\nbbbb\ncccc\ndddd\neeee\nffff\ngggg\n";
        let records = records_of(batch);
        let mut p = Progress::default();
        log.write_records(batch, b"> ", &records, &mut p).unwrap();
        assert_eq!(p.record, 7);
        assert_eq!(std::fs::read(path.join("current")).unwrap(), b"> gggg\n");
        // The last rotated file is archived by a thread: wait for it.
        log.finish();
        assert!(!path.join("previous").exists());
        let names = archives(&path).unwrap();
        assert_eq!(names.len(), 2, "pruned to the count");
        assert_eq!(
            std::fs::read(path.join(&names[0])).unwrap(),
            b"> cccc\n> dddd\n"
        );
        assert_eq!(
            std::fs::read(path.join(&names[1])).unwrap(),
            b"> eeee\n> ffff\n"
        );
        assert_eq!(records[0].ending, End::Newline);
    }

    #[test]
    fn resumes_inside_a_record_where_a_failed_write_stopped() {
        let tmp = tempfile::tempdir().unwrap();
        let mut log = LogDir::open(tmp.path(), 1000, 2).unwrap();
        let batch = b"aaaa\nbbbb\n";
        let records = records_of(batch);
        // As if a write had stopped on a full disk after "> aa" of the first record.
        let mut p = Progress::default();
        log.write_records(batch, b"> ", &records[..0], &mut p)
            .unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(tmp.path().join("current"))
            .and_then(|mut f| std::io::Write::write_all(&mut f, b"> aa"))
            .unwrap();
        let mut p = Progress {
            record: 0,
            offset: 4,
            file_start: 0,
        };
        log.write_records(batch, b"> ", &records, &mut p).unwrap();
        assert_eq!(
            p,
            Progress {
                record: 2,
                offset: 0,
                file_start: 0
            }
        );
        assert_eq!(
            std::fs::read(tmp.path().join("current")).unwrap(),
            b"> aaaa\n> bbbb\n"
        );
    }

    #[test]
    fn second_open_is_refused_while_locked() {
        let tmp = tempfile::tempdir().unwrap();
        let _first = LogDir::open(tmp.path(), 1000, 2).unwrap();
        let second = LogDir::open(tmp.path(), 1000, 2).err().unwrap();
        assert!(second.cause.contains("another logger"), "{second}");
    }
}
