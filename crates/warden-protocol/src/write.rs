//! Replacing a state file atomically: write `NAME.new`, then rename over `NAME`, so a reader
//! never sees a torn record.
//!
//! Relative to a directory fd, and `NAME.new` made afresh with `O_EXCL|O_NOFOLLOW`: whoever
//! planted a symlink or a hard link there cannot make us write through it (issue 11, item 2).

use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::io::Errno;
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::path::Path;

/// `replace_at` on `dir` opened by path (tests and one-off tools; daemons hold a dir fd).
pub fn replace(dir: &Path, name: &str, contents: &[u8]) -> io::Result<()> {
    let fd = rustix::fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    replace_at(&fd, name, contents)
}

/// Writes `contents` to `dir/NAME.new` and renames it over `dir/NAME`. A stale `NAME.new`
/// (ours from a crash, or anything planted there: `O_EXCL` refuses a symlink or any existing
/// name) is unlinked and the open tried once more; unlinking a symlink or a hard link never
/// touches what it points at. The unlink comes only then: a supervisor writes its status
/// several times per start, and the common case costs no extra syscall.
pub fn replace_at(dir: impl AsFd, name: &str, contents: &[u8]) -> io::Result<()> {
    let dir = dir.as_fd();
    let tmp = format!("{name}.new");
    let create = || {
        rustix::fs::openat(
            dir,
            &tmp,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        )
    };
    let fd = match create() {
        Err(Errno::EXIST) => {
            match rustix::fs::unlinkat(dir, &tmp, AtFlags::empty()) {
                Ok(()) | Err(Errno::NOENT) => {}
                Err(e) => return Err(e.into()),
            }
            create()?
        }
        other => other?,
    };
    let mut file = std::fs::File::from(fd);
    file.write_all(contents)?;
    drop(file);
    rustix::fs::renameat(dir, &tmp, dir, name)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn replaces_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        super::replace(dir.path(), "status", b"long contents").unwrap();
        super::replace(dir.path(), "status", b"short").unwrap();
        assert_eq!(std::fs::read(dir.path().join("status")).unwrap(), b"short");
        assert!(!dir.path().join("status.new").exists());
    }

    #[test]
    fn a_stale_temporary_is_replaced_not_appended_to() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("status.new"), b"left by a crash, longer").unwrap();
        super::replace(dir.path(), "status", b"record").unwrap();
        assert_eq!(std::fs::read(dir.path().join("status")).unwrap(), b"record");
        assert!(!dir.path().join("status.new").exists());
    }

    #[test]
    fn never_creates_through_a_planted_dangling_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("would-be-created");
        std::os::unix::fs::symlink(&victim, dir.path().join("status.new")).unwrap();
        super::replace(dir.path(), "status", b"record").unwrap();
        assert!(!victim.exists());
        assert_eq!(std::fs::read(dir.path().join("status")).unwrap(), b"record");
    }

    #[test]
    fn never_writes_through_a_planted_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        std::os::unix::fs::symlink(&victim, dir.path().join("status.new")).unwrap();
        super::replace(dir.path(), "status", b"record").unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert_eq!(std::fs::read(dir.path().join("status")).unwrap(), b"record");
    }
}
