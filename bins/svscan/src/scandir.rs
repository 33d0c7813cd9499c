//! What the scan directory holds: which names are services (directories, or symlinks to
//! them, identified by device and inode), and inotify's word on what changed.

use rustix::fs::inotify::{self, CreateFlags, ReadFlags, WatchFlags};
use rustix::fs::{Dir, Mode, OFlags};
use rustix::io::Errno;
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{OsStr, OsString};
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// A service directory is known by its (device, inode), as in daemontools, runit and s6:
/// renaming it or reaching it through another symlink does not make it a new service.
pub type Id = (u64, u64);

#[derive(Debug, PartialEq, Eq)]
pub enum Probe {
    Service(Id),
    /// A file, a FIFO...: not a service, and not worth a word (a README in the scan dir).
    NotService,
    /// Nothing by that name any more.
    Gone,
    /// Something by that name that cannot be used, and why.
    Broken(String),
}

/// Names svscan never supervises: `.svscan` and anything else hidden.
pub fn ignored(name: &OsStr) -> bool {
    name.as_bytes().first() == Some(&b'.')
}

/// Looks at one name in the current directory (the scan directory), following symlinks.
pub fn probe(name: &OsStr) -> Probe {
    match std::fs::metadata(name) {
        Ok(meta) if meta.is_dir() => Probe::Service((meta.dev(), meta.ino())),
        Ok(_) => Probe::NotService,
        Err(e) => match Errno::from_io_error(&e) {
            Some(Errno::NOENT) if std::fs::symlink_metadata(name).is_ok() => {
                Probe::Broken("symlink to nothing".into())
            }
            Some(Errno::NOENT) | Some(Errno::NOTDIR) => Probe::Gone,
            _ => Probe::Broken(e.to_string()),
        },
    }
}

/// Whether the directory `name` was made or changed (an entry added, say) less than `within`
/// ago: a service being made right now.
pub fn changed_within(name: &OsStr, within: std::time::Duration) -> bool {
    let Ok(meta) = std::fs::metadata(name) else {
        return false;
    };
    let changed = std::time::UNIX_EPOCH
        + std::time::Duration::new(
            u64::try_from(meta.ctime()).unwrap_or(0),
            u32::try_from(meta.ctime_nsec()).unwrap_or(0),
        );
    std::time::SystemTime::now()
        .duration_since(changed)
        .map_or(true, |age| age < within)
}

/// The scan directory, held open for svscan's life so that reading it never needs a new
/// fd: when fds run short, the scan that notices removed services (and so frees their
/// pipes) must still work, or the shortage would never end.
pub struct Listing {
    path: PathBuf,
    held: Option<Dir>,
}

impl Listing {
    /// Opens the directory (the scan directory, `.` once svscan is in it). Without an fd for
    /// it now, each listing opens its own.
    pub fn open(path: &Path) -> Listing {
        Listing {
            path: path.to_owned(),
            held: open_dir(path).ok(),
        }
    }

    /// The names in the directory, hidden ones left out. Errors on single entries come back
    /// beside the names, so one bad entry never hides the others.
    pub fn list(&mut self) -> io::Result<(Vec<OsString>, Vec<io::Error>)> {
        let mut once;
        let dir = match self.held.as_mut() {
            Some(dir) => {
                dir.rewind();
                dir
            }
            None => {
                once = open_dir(&self.path)?;
                &mut once
            }
        };
        let mut names = Vec::new();
        let mut errors = Vec::new();
        while let Some(entry) = dir.read() {
            match entry {
                Ok(entry) => {
                    let name = OsStr::from_bytes(entry.file_name().to_bytes());
                    if !ignored(name) {
                        names.push(name.to_owned());
                    }
                }
                Err(e) => errors.push(e.into()),
            }
        }
        Ok((names, errors))
    }
}

fn open_dir(path: &Path) -> Result<Dir, Errno> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    Dir::new(rustix::fs::open(path, flags, Mode::empty())?)
}

/// What one wake-up of the inotify fd reported.
#[derive(Debug, Default)]
pub struct Changes {
    pub names: BTreeSet<OsString>,
    /// Events were lost (IN_Q_OVERFLOW) or unreadable: only a full scan is safe.
    pub overflow: bool,
    /// The watch on the scan directory itself ended (directory deleted or unmounted).
    pub watch_lost: bool,
    /// Every watch that saw something (a logger's `supervise/`; the scan directory's too,
    /// which another user may share).
    pub others: BTreeSet<i32>,
    /// The names those events were about, by watch, dot-names included; a watch that saw an
    /// event about itself (no name: removed, say) is in `others` but not here, and counts as
    /// "anything".
    pub others_named: BTreeMap<i32, BTreeSet<OsString>>,
    /// Watches of `others` that saw an event without a name.
    pub others_unnamed: BTreeSet<i32>,
}

impl Changes {
    /// The names watch `wd` saw, or `None` when what it saw may be anything (an event
    /// without a name, or an overflow).
    pub fn names_seen(&self, wd: i32) -> Option<&BTreeSet<OsString>> {
        if self.overflow || self.others_unnamed.contains(&wd) {
            return None;
        }
        self.others_named.get(&wd)
    }
}

pub struct Watch {
    fd: OwnedFd,
    scandir: i32,
    buf: Vec<MaybeUninit<u8>>,
}

impl Watch {
    /// Watches the current directory for entries appearing, disappearing and being renamed.
    pub fn new() -> Result<Watch, Errno> {
        let fd = inotify::init(CreateFlags::CLOEXEC | CreateFlags::NONBLOCK)?;
        let scandir = inotify::add_watch(
            &fd,
            ".",
            WatchFlags::CREATE
                | WatchFlags::DELETE
                | WatchFlags::MOVED_FROM
                | WatchFlags::MOVED_TO
                | WatchFlags::DELETE_SELF
                | WatchFlags::MOVE_SELF
                | WatchFlags::ONLYDIR,
        )?;
        Ok(Watch {
            fd,
            scandir,
            buf: vec![MaybeUninit::uninit(); 64 * 1024],
        })
    }

    /// Watches a supervise directory for its status file being replaced.
    pub fn add_status_watch(&self, dir: &std::path::Path) -> Result<i32, Errno> {
        inotify::add_watch(&self.fd, dir, WatchFlags::MOVED_TO | WatchFlags::ONLYDIR)
    }

    /// Watches a service directory (or one of its dependency directories) for entries made,
    /// removed, renamed or written: a `log/` appearing, `supervise/` made, dependencies
    /// changed. One mask for every user of such a watch, since a second `inotify_add_watch`
    /// of the same directory replaces the mask of the first.
    pub fn add_log_watch(&self, dir: &std::path::Path) -> Result<i32, Errno> {
        inotify::add_watch(
            &self.fd,
            dir,
            WatchFlags::CREATE
                | WatchFlags::DELETE
                | WatchFlags::MOVED_FROM
                | WatchFlags::MOVED_TO
                | WatchFlags::CLOSE_WRITE
                | WatchFlags::ONLYDIR,
        )
    }

    /// Watches a directory for an entry made in it (the target of a `supervise` symlink, made
    /// by the supervisor at its start), adding to the mask of any other watch of it.
    pub fn add_creation_watch(&self, dir: &std::path::Path) -> Result<i32, Errno> {
        inotify::add_watch(
            &self.fd,
            dir,
            WatchFlags::CREATE | WatchFlags::MOVED_TO | WatchFlags::ONLYDIR | WatchFlags::MASK_ADD,
        )
    }

    /// Ends a watch; never the scan directory's, which another watch may share (a service's
    /// `supervise` symlink pointing into the scan directory, a `needs` linked to it).
    pub fn remove(&self, wd: i32) {
        if wd != self.scandir {
            let _ = inotify::remove_watch(&self.fd, wd);
        }
    }

    pub fn read(&mut self) -> Changes {
        let mut changes = Changes::default();
        let scandir = self.scandir;
        let mut reader = inotify::Reader::new(&self.fd, &mut self.buf);
        loop {
            match reader.next() {
                Ok(event) => {
                    let flags = event.events();
                    // The overflow event belongs to no watch (wd -1).
                    if flags.contains(ReadFlags::QUEUE_OVERFLOW) {
                        changes.overflow = true;
                    } else {
                        // Every watch that saw something, the scan directory's included:
                        // another user may share it (a `supervise` linking into it).
                        let wd = event.wd();
                        changes.others.insert(wd);
                        match event.file_name() {
                            Some(name) => {
                                let name = OsStr::from_bytes(name.to_bytes());
                                if wd == scandir && !ignored(name) {
                                    changes.names.insert(name.to_owned());
                                }
                                changes
                                    .others_named
                                    .entry(wd)
                                    .or_default()
                                    .insert(name.to_owned());
                            }
                            None => {
                                changes.others_unnamed.insert(wd);
                            }
                        }
                        if wd == scandir
                            && flags.intersects(ReadFlags::IGNORED | ReadFlags::DELETE_SELF)
                        {
                            changes.watch_lost = true;
                        }
                    }
                }
                Err(Errno::AGAIN) => break,
                Err(Errno::INTR) => continue,
                Err(e) => {
                    warden::say!("svscan: warning: unable to read inotify events: {e}");
                    changes.overflow = true;
                    break;
                }
            }
        }
        changes
    }
}

impl AsFd for Watch {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// The path svscan passes to `supervise`: the name, made unmistakable for an option.
pub fn service_path(name: &OsStr) -> PathBuf {
    if name.as_bytes().first() == Some(&b'-') {
        Path::new(".").join(name)
    } else {
        PathBuf::from(name)
    }
}

/// The service's `log/`: one place says where it is.
pub fn log_path(name: &OsStr) -> PathBuf {
    service_path(name).join(warden::service::LOG)
}

/// The path of the supervisor of `role`.
pub fn path_of(name: &OsStr, role: crate::life::Role) -> PathBuf {
    match role {
        crate::life::Role::Service => service_path(name),
        crate::life::Role::Log => log_path(name),
    }
}

/// Whether the service has a `log/` directory (a symlink to one counts).
pub fn has_log(name: &OsStr) -> bool {
    log_path(name).is_dir()
}

/// A name for messages: quoted and escaped, so spaces, newlines and odd bytes stay visible.
pub fn shown(name: &OsStr) -> String {
    format!("{:?}", name)
}

/// The service's name, or `NAME/log` for its logger, for messages.
pub fn shown_as(name: &OsStr, role: crate::life::Role) -> String {
    match role {
        crate::life::Role::Service => shown(name),
        crate::life::Role::Log => shown(Path::new(name).join(warden::service::LOG).as_os_str()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_watch_that_saw_no_name_or_an_overflow_may_have_seen_anything() {
        let mut c = Changes::default();
        c.others.extend([3, 4, 5]);
        c.others_named.entry(3).or_default().insert("state".into());
        c.others_named.entry(4).or_default().insert("needs".into());
        c.others_unnamed.insert(4);
        let state: BTreeSet<OsString> = ["state".into()].into();
        assert_eq!(c.names_seen(3), Some(&state));
        assert_eq!(c.names_seen(4), None, "an event without a name");
        assert_eq!(c.names_seen(5), None, "no names recorded");
        c.overflow = true;
        assert_eq!(c.names_seen(3), None, "events were lost");
    }

    #[test]
    fn names_that_look_like_options_get_a_path() {
        use crate::life::Role;
        assert_eq!(service_path(OsStr::new("-x")), PathBuf::from("./-x"));
        assert_eq!(service_path(OsStr::new("x y")), PathBuf::from("x y"));
        assert_eq!(log_path(OsStr::new("a")), PathBuf::from("a/log"));
        assert_eq!(
            path_of(OsStr::new("-a"), Role::Log),
            PathBuf::from("./-a/log")
        );
        assert_eq!(shown(OsStr::new("a\nb")), "\"a\\nb\"");
        assert_eq!(shown_as(OsStr::new("a"), Role::Log), "\"a/log\"");
    }

    #[test]
    fn hidden_names_are_ignored() {
        assert!(ignored(OsStr::new(".svscan")));
        assert!(ignored(OsStr::new(".x")));
        assert!(!ignored(OsStr::new("x.")));
        assert!(!ignored(OsStr::new("")));
    }

    #[test]
    fn a_directory_just_made_changed_within_a_second_and_not_within_nothing() {
        let dir = std::env::temp_dir().join(format!("warden-changed-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert!(changed_within(
            dir.as_os_str(),
            std::time::Duration::from_secs(1)
        ));
        assert!(!changed_within(dir.as_os_str(), std::time::Duration::ZERO));
        assert!(!changed_within(
            dir.join("missing").as_os_str(),
            std::time::Duration::from_secs(1)
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_held_listing_sees_what_changed_since_the_last_one() {
        let dir = std::env::temp_dir().join(format!("warden-listing-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("a")).unwrap();
        std::fs::create_dir_all(dir.join(".hidden")).unwrap();
        let mut listing = Listing::open(&dir);
        assert!(listing.held.is_some());
        let names = |listing: &mut Listing| {
            let (mut names, errors) = listing.list().unwrap();
            assert!(errors.is_empty(), "{errors:?}");
            names.sort();
            names
        };
        assert_eq!(names(&mut listing), ["a"]);
        std::fs::create_dir(dir.join("b")).unwrap();
        std::fs::remove_dir(dir.join("a")).unwrap();
        assert_eq!(names(&mut listing), ["b"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
