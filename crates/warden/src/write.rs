//! Replacing a state file atomically: write `NAME.new`, then rename over `NAME`, so a reader
//! never sees a torn record.

use std::io::{self, Write};
use std::path::Path;

pub fn replace(dir: &Path, name: &str, contents: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!("{name}.new"));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(&tmp)?;
    file.write_all(contents)?;
    drop(file);
    std::fs::rename(&tmp, dir.join(name))
}

use std::os::unix::fs::OpenOptionsExt;

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
}
