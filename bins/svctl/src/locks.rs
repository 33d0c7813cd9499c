//! Who holds an flock: /proc/locks names the pid, by device and inode of the locked file.
//! Used to find svscan's pid for `-w shutdown`.

use std::path::Path;

/// The pid holding an flock on `path`, if any.
pub fn flock_holder(path: &Path) -> Option<u32> {
    let stat = rustix::fs::stat(path).ok()?;
    let id = format!(
        "{:02x}:{:02x}:{}",
        rustix::fs::major(stat.st_dev),
        rustix::fs::minor(stat.st_dev),
        stat.st_ino
    );
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    locks.lines().find_map(|line| holder(line, &id))
}

/// The pid in one /proc/locks line (`1: FLOCK  ADVISORY  WRITE 8508 fe:00:10111024 0 EOF`)
/// if it locks the file `id`; lines of blocked waiters (`1: -> FLOCK ...`) hold nothing.
fn holder(line: &str, id: &str) -> Option<u32> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    if fields.get(1) != Some(&"FLOCK") {
        return None;
    }
    if fields.get(5) != Some(&id) {
        return None;
    }
    fields.get(4)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::fs::{flock, FlockOperation};

    #[test]
    fn parses_holders_and_skips_waiters() {
        let id = "fe:00:10111024";
        assert_eq!(
            holder("1: FLOCK  ADVISORY  WRITE 8508 fe:00:10111024 0 EOF", id),
            Some(8508)
        );
        assert_eq!(
            holder("1: -> FLOCK  ADVISORY  WRITE 9 fe:00:10111024 0 EOF", id),
            None
        );
        assert_eq!(
            holder("2: POSIX  ADVISORY  WRITE 7 fe:00:10111024 0 EOF", id),
            None
        );
        assert_eq!(
            holder("3: FLOCK  ADVISORY  WRITE 8508 fe:00:1 0 EOF", id),
            None
        );
    }

    #[test]
    fn finds_our_own_lock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let file = std::fs::File::create(&path).unwrap();
        assert_eq!(flock_holder(&path), None);
        flock(&file, FlockOperation::NonBlockingLockExclusive).unwrap();
        assert_eq!(flock_holder(&path), Some(std::process::id()));
    }
}
