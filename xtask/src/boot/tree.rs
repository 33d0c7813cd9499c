//! Reading a source tree of service directories (example-service-dir, image/service) the way
//! the image builder and the demo need it: regular files, directories and symlinks only, and
//! never the runtime state that svscan, supervise and logger leave in a tree they ran on.
//!
//! A tree svscan once ran on holds FIFOs (`.svscan/control`, `supervise/control`,
//! `supervise/ok`): opening one for reading blocks until a writer comes, which is how
//! `cargo xtask qemu` used to hang after a `cargo xtask demo` (issue 18). Here the type of
//! every entry is looked at (lstat) before anything is opened, and files are opened with
//! `O_NONBLOCK | O_NOFOLLOW` and checked again on the open descriptor.

use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Directories made while a tree is supervised, skipped wherever they are: svscan's control
/// dir, and supervise's state dir.
pub const RUNTIME_DIRS: &[&str] = &[".svscan", "supervise"];
/// The default logger's directory (`log/main`), skipped inside a `log/`.
pub const LOG_OUTPUT: &str = "main";

/// One entry of a source tree, `path` relative to its root (`/`-separated).
pub enum Node {
    Dir {
        path: String,
        mode: u32,
    },
    File {
        path: String,
        mode: u32,
        data: Vec<u8>,
    },
    Symlink {
        path: String,
        target: String,
    },
}

/// What a walk left out, to be said once per tree.
#[derive(Default)]
pub struct Skipped {
    /// FIFOs, sockets and device nodes (relative paths).
    pub special: Vec<String>,
    /// Runtime state directories (relative paths).
    pub runtime: Vec<String>,
}

impl Skipped {
    /// One line for the user, if anything was left out of `root`.
    pub fn report(&self, root: &Path) -> Option<String> {
        let mut parts = Vec::new();
        if let Some(first) = self.runtime.first() {
            parts.push(format!(
                "{} runtime state dir(s) (supervise/, .svscan/, log/main/; e.g. {first})",
                self.runtime.len()
            ));
        }
        if let Some(first) = self.special.first() {
            parts.push(format!(
                "{} FIFO(s), socket(s) or device(s) (e.g. {first})",
                self.special.len()
            ));
        }
        (!parts.is_empty()).then(|| {
            format!(
                "xtask: skipped in {}: {}",
                root.display(),
                parts.join(" and ")
            )
        })
    }
}

/// Whether `name`, found in the directory `parent` (relative path, "" for the root), is
/// runtime state rather than part of the tree.
pub fn is_runtime_state(parent: &str, name: &str) -> bool {
    RUNTIME_DIRS.contains(&name) || name == LOG_OUTPUT && parent.rsplit('/').next() == Some("log")
}

/// Every entry of the tree under `root`, parents before children, names sorted.
pub fn walk(root: &Path) -> Result<(Vec<Node>, Skipped), String> {
    let mut nodes = Vec::new();
    let mut skipped = Skipped::default();
    walk_dir(root, "", &mut nodes, &mut skipped)?;
    Ok((nodes, skipped))
}

fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_owned()
    } else {
        format!("{parent}/{name}")
    }
}

fn walk_dir(
    dir: &Path,
    rel: &str,
    nodes: &mut Vec<Node>,
    skipped: &mut Skipped,
) -> Result<(), String> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| format!("unable to read {}: {e}", dir.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("unable to read {}: {e}", dir.display()))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            return Err(format!(
                "unable to pack {}: the name is not UTF-8",
                entry.path().display()
            ));
        };
        let path = entry.path();
        let child = join(rel, name);
        if is_runtime_state(rel, name) {
            skipped.runtime.push(child);
            continue;
        }
        let meta = std::fs::symlink_metadata(&path)
            .map_err(|e| format!("unable to stat {}: {e}", path.display()))?;
        let kind = meta.file_type();
        let mode = meta.mode() & 0o7777;
        if kind.is_symlink() {
            let target = std::fs::read_link(&path)
                .map_err(|e| format!("unable to read the link {}: {e}", path.display()))?;
            nodes.push(Node::Symlink {
                path: child,
                target: target.to_string_lossy().into_owned(),
            });
        } else if kind.is_dir() {
            nodes.push(Node::Dir {
                path: child.clone(),
                mode,
            });
            walk_dir(&path, &child, nodes, skipped)?;
        } else if kind.is_file() {
            match read_regular(&path)? {
                Some(data) => nodes.push(Node::File {
                    path: child,
                    mode,
                    data,
                }),
                None => skipped.special.push(child),
            }
        } else if kind.is_fifo()
            || kind.is_socket()
            || kind.is_block_device()
            || kind.is_char_device()
        {
            skipped.special.push(child);
        }
    }
    Ok(())
}

/// The contents of a regular file, opened so that it cannot block or follow a link; `None`
/// if it turned into something else since it was looked at.
fn read_regular(path: &Path) -> Result<Option<Vec<u8>>, String> {
    use std::io::Read;
    const O_NONBLOCK: i32 = 0o4000;
    const O_NOFOLLOW: i32 = 0o400000;
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(O_NONBLOCK | O_NOFOLLOW)
        .open(path)
        .map_err(|e| format!("unable to open {}: {e}", path.display()))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("unable to stat {}: {e}", path.display()))?;
    if !meta.file_type().is_file() {
        return Ok(None);
    }
    let mut data = Vec::new();
    file.read_to_end(&mut data)
        .map_err(|e| format!("unable to read {}: {e}", path.display()))?;
    Ok(Some(data))
}

/// Copies the tree under `src` to `dest` (which must not exist), as the image would hold it:
/// no runtime state, no FIFOs. Says once what it left out.
pub fn copy(src: &Path, dest: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let (nodes, skipped) = walk(src)?;
    let made = |p: &Path, e: std::io::Error| format!("unable to create {}: {e}", p.display());
    std::fs::create_dir_all(dest).map_err(|e| made(dest, e))?;
    for node in nodes {
        match node {
            Node::Dir { path, mode } => {
                let p = dest.join(path);
                std::fs::create_dir(&p).map_err(|e| made(&p, e))?;
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode))
                    .map_err(|e| made(&p, e))?;
            }
            Node::File { path, mode, data } => {
                let p = dest.join(path);
                std::fs::write(&p, data).map_err(|e| made(&p, e))?;
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode))
                    .map_err(|e| made(&p, e))?;
            }
            Node::Symlink { path, target } => {
                let p: PathBuf = dest.join(path);
                std::os::unix::fs::symlink(&target, &p).map_err(|e| made(&p, e))?;
            }
        }
    }
    if let Some(line) = skipped.report(src) {
        eprintln!("{line}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_state_is_recognised_where_it_lives() {
        assert!(is_runtime_state("", ".svscan"));
        assert!(is_runtime_state("clock", "supervise"));
        assert!(is_runtime_state("clock/log", "supervise"));
        assert!(is_runtime_state("clock/log", "main"));
        assert!(!is_runtime_state("clock", "main"));
        assert!(!is_runtime_state("", "main"));
        assert!(!is_runtime_state("clock", "run"));
    }
}
