//! A newc ("070701") cpio archive writer, enough for an initramfs: directories, regular
//! files, symlinks and device nodes, all owned by root, built without root.

use std::collections::BTreeSet;

pub struct Cpio {
    out: Vec<u8>,
    next_ino: u32,
    /// Paths already written, so parents are made once and duplicates are caught.
    written: BTreeSet<String>,
}

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;

impl Default for Cpio {
    fn default() -> Self {
        Cpio::new()
    }
}

impl Cpio {
    pub fn new() -> Cpio {
        Cpio {
            out: Vec::new(),
            next_ino: 1,
            written: BTreeSet::new(),
        }
    }

    /// Whether `path` (no leading slash) is already in the archive.
    pub fn contains(&self, path: &str) -> bool {
        self.written.contains(path.trim_start_matches('/'))
    }

    pub fn dir(&mut self, path: &str, perm: u32) {
        self.parents(path);
        self.entry(path, S_IFDIR | perm, 2, (0, 0), &[]);
    }

    pub fn file(&mut self, path: &str, perm: u32, data: &[u8]) {
        self.parents(path);
        self.entry(path, S_IFREG | perm, 1, (0, 0), data);
    }

    pub fn symlink(&mut self, path: &str, target: &str) {
        self.parents(path);
        self.entry(path, S_IFLNK | 0o777, 1, (0, 0), target.as_bytes());
    }

    pub fn char_device(&mut self, path: &str, perm: u32, major: u32, minor: u32) {
        self.parents(path);
        self.entry(path, S_IFCHR | perm, 1, (major, minor), &[]);
    }

    /// The archive, with its trailer.
    pub fn finish(mut self) -> Vec<u8> {
        self.header("TRAILER!!!", 0, 0, 1, (0, 0), 0);
        self.out
    }

    fn parents(&mut self, path: &str) {
        let path = path.trim_start_matches('/');
        let mut prefix = String::new();
        let parts: Vec<&str> = path.split('/').collect();
        for part in parts.iter().take(parts.len().saturating_sub(1)) {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(part);
            if !self.written.contains(&prefix) {
                let p = prefix.clone();
                self.entry(&p, S_IFDIR | 0o755, 2, (0, 0), &[]);
            }
        }
    }

    fn entry(&mut self, path: &str, mode: u32, nlink: u32, rdev: (u32, u32), data: &[u8]) {
        let path = path.trim_start_matches('/');
        if !self.written.insert(path.to_owned()) {
            // A later entry for the same path would replace the first on unpacking; keep the
            // first, which is how the builder gives the image's own files priority.
            return;
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        self.header(path, ino, mode, nlink, rdev, data.len());
        self.out.extend_from_slice(data);
        self.pad();
    }

    fn header(
        &mut self,
        name: &str,
        ino: u32,
        mode: u32,
        nlink: u32,
        rdev: (u32, u32),
        size: usize,
    ) {
        let fields = [
            ino,
            mode,
            0, // uid
            0, // gid
            nlink,
            0, // mtime: reproducible images
            size as u32,
            0, // dev major
            0, // dev minor
            rdev.0,
            rdev.1,
            name.len() as u32 + 1,
            0, // check
        ];
        self.out.extend_from_slice(b"070701");
        for f in fields {
            self.out.extend_from_slice(format!("{f:08X}").as_bytes());
        }
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        self.pad();
    }

    fn pad(&mut self) {
        while self.out.len() % 4 != 0 {
            self.out.push(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpio_reads_back_what_was_written() {
        if std::process::Command::new("cpio")
            .arg("--version")
            .output()
            .is_err()
        {
            return;
        }
        let mut c = Cpio::new();
        c.file("etc/hostname", 0o644, b"warden\n");
        c.symlink("init", "sbin/init");
        c.dir("/proc", 0o555);
        let data = c.finish();
        let tmp = std::env::temp_dir().join(format!("cpio-test-{}", std::process::id()));
        std::fs::create_dir_all(&tmp).unwrap();
        let mut child = std::process::Command::new("cpio")
            .args(["-i", "-d", "--quiet", "--no-absolute-filenames"])
            .current_dir(&tmp)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(&data).unwrap();
        assert!(child.wait().unwrap().success());
        assert_eq!(
            std::fs::read(tmp.join("etc/hostname")).unwrap(),
            b"warden\n"
        );
        assert_eq!(
            std::fs::read_link(tmp.join("init")).unwrap(),
            std::path::PathBuf::from("sbin/init")
        );
        assert!(tmp.join("proc").is_dir());
        std::fs::remove_dir_all(&tmp).unwrap();
    }
}
