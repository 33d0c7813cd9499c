//! A service's dependencies and type, as files in its directory: `needs/NAME`,
//! `dependencies.d/NAME` (s6-rc's form, read as `needs`), `wants/NAME`, `after/NAME`, and
//! `type` (`longrun` or `oneshot`, whose programs are `up` and `down`). An entry's name is
//! the dependency; it may be an empty file or a symlink (one that resolves).

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fmt;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

pub const NEEDS: &str = "needs";
pub const WANTS: &str = "wants";
pub const AFTER: &str = "after";
/// s6-rc's name for `needs/`.
pub const DEPENDENCIES_D: &str = "dependencies.d";
pub const TYPE: &str = "type";
/// A oneshot's program run to bring it up.
pub const UP: &str = "up";
/// A oneshot's program run to bring it down (in a longrun, `down` is runit's marker file).
pub const ONESHOT_DOWN: &str = "down";

/// The directories read, and what each entry of them means.
pub const DIRS: [(&str, Edge); 4] = [
    (NEEDS, Edge::Needs),
    (DEPENDENCIES_D, Edge::Needs),
    (WANTS, Edge::Wants),
    (AFTER, Edge::After),
];

/// Most entries read from one dependency directory: a directory of millions is refused.
pub const MAX_PER_DIR: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Edge {
    /// Started only once the dependency is ready; stopped when it goes down.
    Needs,
    /// Started after the dependency is ready if it exists and is wanted up; pulled in by `up`.
    Wants,
    /// Order only.
    After,
}

impl Edge {
    pub fn name(self) -> &'static str {
        match self {
            Edge::Needs => NEEDS,
            Edge::Wants => WANTS,
            Edge::After => AFTER,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Kind {
    #[default]
    Longrun,
    Oneshot,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Deps {
    pub kind: Kind,
    pub needs: BTreeSet<String>,
    pub wants: BTreeSet<String>,
    pub after: BTreeSet<String>,
}

impl Deps {
    /// Every dependency with its strongest edge (a name in `needs/` and `after/` is a need).
    pub fn edges(&self) -> impl Iterator<Item = (&str, Edge)> + '_ {
        let needs = self.needs.iter().map(|n| (n.as_str(), Edge::Needs));
        let wants = (self.wants.iter())
            .filter(|n| !self.needs.contains(*n))
            .map(|n| (n.as_str(), Edge::Wants));
        let after = (self.after.iter())
            .filter(|n| !self.needs.contains(*n) && !self.wants.contains(*n))
            .map(|n| (n.as_str(), Edge::After));
        needs.chain(wants).chain(after)
    }

    /// What `svctl up` brings up with this service: needs and wants.
    pub fn pulled_in(&self) -> impl Iterator<Item = &str> + '_ {
        self.edges()
            .filter(|(_, e)| *e != Edge::After)
            .map(|(n, _)| n)
    }

    pub fn is_empty(&self) -> bool {
        self.needs.is_empty() && self.wants.is_empty() && self.after.is_empty()
    }
}

/// A dependency file that cannot be used: the service is not started until it is fixed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Relative to the service directory: `needs/db`, `type`, `up`.
    pub file: String,
    pub cause: String,
    /// Out of file descriptors or memory, interrupted: the files may be fine; read again.
    pub transient: bool,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.file, self.cause)
    }
}

fn problem(file: impl Into<String>, cause: impl Into<String>) -> Problem {
    Problem {
        file: file.into(),
        cause: cause.into(),
        transient: false,
    }
}

fn io_problem(file: impl Into<String>, e: &io::Error) -> Problem {
    let transient = matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOMEM | libc::EINTR | libc::EAGAIN)
    );
    Problem {
        transient,
        ..problem(file, crate::diag::cause(e))
    }
}

/// Whether a name in a service directory is one that [`read`] looks at: a dependency
/// directory, `type`, or a oneshot's `up` and `down`. A change to any other entry (a file the
/// service writes into its own directory, say) changes nothing it returns.
pub fn is_declaration(name: &OsStr) -> bool {
    [TYPE, UP, ONESHOT_DOWN]
        .into_iter()
        .chain(DIRS.iter().map(|(sub, _)| *sub))
        .any(|n| name.as_bytes() == n.as_bytes())
}

/// Whether the directory declares anything of this module at all: one `lstat` per name, no
/// file descriptor (a tree of thousands of plain services is read at boot, maybe short of
/// fds).
pub fn declares_any(dir: &Path) -> bool {
    [TYPE, NEEDS, DEPENDENCIES_D, WANTS, AFTER]
        .iter()
        .any(|name| std::fs::symlink_metadata(dir.join(name)).is_ok())
}

/// Whether `name` can name a service of the scan directory: not empty, not a dot-name, no
/// `/`, no control characters, valid UTF-8.
pub fn check_name(name: &OsStr) -> Result<&str, String> {
    let bytes = name.as_bytes();
    let text = std::str::from_utf8(bytes).map_err(|_| "is not valid UTF-8".to_owned())?;
    if text.is_empty() {
        return Err("is empty".into());
    }
    if text.starts_with('.') {
        return Err("starts with a dot: not a service name".into());
    }
    if text.contains('/') {
        return Err("contains a '/': dependencies are services of the same scan directory".into());
    }
    if text.chars().any(char::is_control) {
        return Err("contains a control character".into());
    }
    Ok(text)
}

/// Reads the dependencies and type of the service in `dir`. The first unusable file found is
/// the error; no dependency directory at all is no dependencies.
pub fn read(dir: &Path) -> Result<Deps, Problem> {
    if !declares_any(dir) {
        return Ok(Deps::default());
    }
    let mut deps = Deps {
        kind: read_kind(dir)?,
        ..Deps::default()
    };
    if deps.kind == Kind::Oneshot {
        check_program(dir, UP, true)?;
        check_program(dir, ONESHOT_DOWN, false)?;
    }
    for (sub, edge) in DIRS {
        let set = match edge {
            Edge::Needs => &mut deps.needs,
            Edge::Wants => &mut deps.wants,
            Edge::After => &mut deps.after,
        };
        read_dir_into(dir, sub, set)?;
    }
    Ok(deps)
}

/// Whether `dir`'s `type` file says `oneshot` (its `down` is then a program, not runit's
/// marker).
pub fn is_oneshot(dir: &Path) -> bool {
    read_kind(dir).is_ok_and(|k| k == Kind::Oneshot)
}

fn read_kind(dir: &Path) -> Result<Kind, Problem> {
    match crate::service::read_first_line(&dir.join(TYPE)) {
        Ok(None) => Ok(Kind::Longrun),
        Ok(Some(word)) => match word.as_str() {
            "longrun" => Ok(Kind::Longrun),
            "oneshot" => Ok(Kind::Oneshot),
            "" => Err(problem(TYPE, "is empty (longrun or oneshot)")),
            other => Err(problem(
                TYPE,
                format!("unknown type {other:?} (longrun or oneshot)"),
            )),
        },
        Err(e) => Err(io_problem(TYPE, &e)),
    }
}

/// A oneshot's `up` (required) or `down` (optional) must be an executable file.
fn check_program(dir: &Path, name: &str, required: bool) -> Result<(), Problem> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::metadata(dir.join(name)) {
        Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => Ok(()),
        Ok(m) if m.is_file() => Err(problem(name, "is not executable")),
        Ok(_) => Err(problem(name, "is not a regular file")),
        Err(e) if e.kind() == io::ErrorKind::NotFound && !required => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            Err(problem(name, "missing: a oneshot runs its up program"))
        }
        Err(e) => Err(io_problem(name, &e)),
    }
}

fn read_dir_into(dir: &Path, sub: &str, set: &mut BTreeSet<String>) -> Result<(), Problem> {
    let path = dir.join(sub);
    let entries = match std::fs::read_dir(&path) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_problem(sub, &e)),
    };
    for (n, entry) in entries.enumerate() {
        if n >= MAX_PER_DIR {
            return Err(problem(sub, format!("more than {MAX_PER_DIR} entries")));
        }
        let entry = entry.map_err(|e| io_problem(sub, &e))?;
        let raw = entry.file_name();
        let shown = format!("{sub}/{}", String::from_utf8_lossy(raw.as_bytes()));
        let name = check_name(&raw).map_err(|cause| problem(shown.as_str(), cause))?;
        let kind = entry
            .file_type()
            .map_err(|e| io_problem(shown.as_str(), &e))?;
        if kind.is_symlink() {
            if let Err(e) = std::fs::metadata(entry.path()) {
                let target = std::fs::read_link(entry.path())
                    .map(|t| format!(" to {}", t.display()))
                    .unwrap_or_default();
                let cause = if e.kind() == io::ErrorKind::NotFound {
                    format!("dangling symlink{target}")
                } else {
                    format!("symlink{target}: {}", crate::diag::cause(&e))
                };
                return Err(problem(shown, cause));
            }
        } else if !kind.is_file() && !kind.is_dir() {
            return Err(problem(shown, "not a file, a directory or a symlink"));
        }
        set.insert(name.to_owned());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    fn dir_with(files: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for f in files {
            let p = dir.path().join(f);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(&p, "").unwrap();
        }
        dir
    }

    #[test]
    fn no_files_is_a_longrun_without_dependencies() {
        let dir = dir_with(&[]);
        assert_eq!(read(dir.path()), Ok(Deps::default()));
    }

    #[test]
    fn entries_of_each_directory_are_read_and_dependencies_d_is_needs() {
        let dir = dir_with(&[
            "needs/db",
            "dependencies.d/cache",
            "wants/metrics",
            "after/net",
        ]);
        let deps = read(dir.path()).unwrap();
        assert_eq!(deps.needs, ["cache", "db"].map(String::from).into());
        assert_eq!(deps.wants, ["metrics"].map(String::from).into());
        assert_eq!(deps.after, ["net"].map(String::from).into());
        let pulled: Vec<_> = deps.pulled_in().collect();
        assert_eq!(pulled, ["cache", "db", "metrics"]);
    }

    #[test]
    fn the_strongest_edge_counts_once() {
        let dir = dir_with(&["needs/db", "wants/db", "after/db", "after/x"]);
        let deps = read(dir.path()).unwrap();
        let edges: Vec<_> = deps.edges().collect();
        assert_eq!(edges, [("db", Edge::Needs), ("x", Edge::After)]);
    }

    #[test]
    fn a_symlink_counts_by_its_name_and_a_dangling_one_is_refused() {
        let dir = dir_with(&["other/x"]);
        fs::create_dir(dir.path().join("needs")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("other"), dir.path().join("needs/db")).unwrap();
        assert_eq!(read(dir.path()).unwrap().needs, ["db".to_owned()].into());
        std::os::unix::fs::symlink("/nonexistent/x", dir.path().join("needs/gone")).unwrap();
        let e = read(dir.path()).unwrap_err();
        assert_eq!(e.file, "needs/gone");
        assert_eq!(e.cause, "dangling symlink to /nonexistent/x");
    }

    #[test]
    fn bad_names_are_refused_naming_the_file() {
        let dir = dir_with(&["wants/.hidden"]);
        let e = read(dir.path()).unwrap_err();
        assert_eq!(e.file, "wants/.hidden");
        assert!(e.cause.contains("dot"), "{e}");
        assert!(check_name(OsStr::new("a/b")).unwrap_err().contains('/'));
        assert!(check_name(OsStr::new("a\u{1b}b")).is_err());
        assert_eq!(check_name(OsStr::new("web-1")), Ok("web-1"));
    }

    #[test]
    fn type_words() {
        let dir = dir_with(&[]);
        fs::write(dir.path().join("type"), "longrun\n").unwrap();
        assert_eq!(read(dir.path()).unwrap().kind, Kind::Longrun);
        fs::write(dir.path().join("type"), "bundle\n").unwrap();
        let e = read(dir.path()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "type: unknown type \"bundle\" (longrun or oneshot)"
        );
        fs::write(dir.path().join("type"), "oneshot\n").unwrap();
        let e = read(dir.path()).unwrap_err();
        assert_eq!(e.file, "up");
        fs::write(dir.path().join("up"), "#!/bin/sh\n").unwrap();
        assert_eq!(read(dir.path()).unwrap_err().cause, "is not executable");
        fs::set_permissions(dir.path().join("up"), fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(read(dir.path()).unwrap().kind, Kind::Oneshot);
        fs::write(dir.path().join("down"), "").unwrap();
        assert_eq!(read(dir.path()).unwrap_err().file, "down");
    }

    #[test]
    fn only_the_names_read_looks_at_are_declarations() {
        for name in [
            "type",
            "needs",
            "wants",
            "after",
            "dependencies.d",
            "up",
            "down",
        ] {
            assert!(is_declaration(OsStr::new(name)), "{name}");
        }
        for name in ["run", "ready", "supervise", "log", "needs.new", "typ", ""] {
            assert!(!is_declaration(OsStr::new(name)), "{name}");
        }
    }
}
