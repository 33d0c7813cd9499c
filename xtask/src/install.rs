//! `cargo xtask install` and `cargo xtask deb`: the installed layout (docs/install.md).
//!
//! ```text
//! P/bin/svctl                                   the one program on PATH
//! P/lib/warden/{init,svscan,supervise,logger}   the daemons, where they find each other
//! P/share/man/man8/{svctl,warden-*}.8           never daemontools' svscan.8 or supervise.8
//! P/share/bash-completion/completions/svctl
//! P/share/doc/warden/
//! --power:  P/sbin/{poweroff,reboot,halt} -> ../bin/svctl   (they replace the system's)
//! --svlogd: P/bin/svlogd -> ../lib/warden/logger           (runit's svlogd is /usr/bin/svlogd)
//! ```
//!
//! Nothing is ever installed as `logger` on PATH: util-linux's `/usr/bin/logger` stays.

use crate::boot::image::{build_static, Paths, POWER_NAMES};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The daemons, in `P/lib/warden/`.
pub const DAEMONS: &[&str] = &["init", "svscan", "supervise", "logger"];
/// The man pages in `man/`, installed to `share/man/man8/`.
pub const MAN_PAGES: &[&str] = &[
    "svctl.8",
    "warden-svscan.8",
    "warden-supervise.8",
    "warden-logger.8",
    "warden-init.8",
];

#[derive(Debug, Default)]
pub struct Options {
    pub prefix: PathBuf,
    pub destdir: Option<PathBuf>,
    pub power: bool,
    pub svlogd: bool,
    /// Use the binaries in this directory instead of building them.
    pub bins: Option<PathBuf>,
    /// gzip the man pages (Debian policy).
    pub gzip_man: bool,
}

const USAGE: &str =
    "usage: cargo xtask install [--prefix P] [--destdir D] [--power] [--svlogd] [--bins DIR]
       cargo xtask deb [--out DIR] [--bins DIR]";

fn value(args: &[String], i: &mut usize, name: &str) -> Result<PathBuf, String> {
    *i += 1;
    args.get(*i)
        .map(PathBuf::from)
        .ok_or_else(|| format!("{name} needs a value\n{USAGE}"))
}

pub fn install_command(root: &Path, args: &[String]) -> Result<(), String> {
    let mut options = Options {
        prefix: PathBuf::from("/usr/local"),
        ..Options::default()
    };
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--prefix" => options.prefix = value(args, &mut i, "--prefix")?,
            "--destdir" => options.destdir = Some(value(args, &mut i, "--destdir")?),
            "--bins" => options.bins = Some(value(args, &mut i, "--bins")?),
            "--power" => options.power = true,
            "--svlogd" => options.svlogd = true,
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
        i += 1;
    }
    if !options.prefix.is_absolute() {
        return Err(format!("--prefix must be absolute\n{USAGE}"));
    }
    let bins = binaries(root, options.bins.as_deref())?;
    install(root, &bins, &options)?;
    let top = staged(options.destdir.as_deref(), &options.prefix);
    eprintln!("xtask: installed into {}", top.display());
    Ok(())
}

pub fn deb_command(root: &Path, args: &[String]) -> Result<(), String> {
    let mut out = root.join("target").join("deb");
    let mut bins = None;
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--out" => out = value(args, &mut i, "--out")?,
            "--bins" => bins = Some(value(args, &mut i, "--bins")?),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
        i += 1;
    }
    let bins = binaries(root, bins.as_deref())?;
    let deb = deb(root, &bins, &out)?;
    println!("{}", deb.display());
    Ok(())
}

/// The static, non-PIE release binaries (built now), or the ones in `given`.
fn binaries(root: &Path, given: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(dir) = given {
        return Ok(dir.to_owned());
    }
    build_static(&Paths {
        workspace: root.to_owned(),
        examples: root.join("example-service-dir"),
        static_target: root.join("target").join("static"),
        out: root.join("target").join("image"),
    })
}

/// `destdir` + `prefix` (prefix taken as relative to destdir).
fn staged(destdir: Option<&Path>, prefix: &Path) -> PathBuf {
    match destdir {
        Some(d) => d.join(prefix.strip_prefix("/").unwrap_or(prefix)),
        None => prefix.to_owned(),
    }
}

fn mkdir(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("unable to create {}: {e}", dir.display()))
}

/// Copies `from` to `to` with `mode`, through a temporary in the same dir and a rename, so a
/// running daemon's executable is replaced, not written over.
fn put(from: &Path, to: &Path, mode: u32) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let dir = to.parent().unwrap_or(Path::new("."));
    mkdir(dir)?;
    let name = to.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let temp = dir.join(format!(".{name}.xtask-new"));
    let _ = std::fs::remove_file(&temp);
    std::fs::copy(from, &temp).map_err(|e| {
        format!(
            "unable to copy {} to {}: {e}",
            from.display(),
            temp.display()
        )
    })?;
    std::fs::set_permissions(&temp, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("unable to set the mode of {}: {e}", temp.display()))?;
    std::fs::rename(&temp, to).map_err(|e| {
        format!(
            "unable to rename {} to {}: {e}",
            temp.display(),
            to.display()
        )
    })
}

fn link(target: &str, at: &Path) -> Result<(), String> {
    mkdir(at.parent().unwrap_or(Path::new(".")))?;
    match std::fs::symlink_metadata(at) {
        Ok(meta) if meta.file_type().is_symlink() => {
            let _ = std::fs::remove_file(at);
        }
        Ok(_) => {
            return Err(format!(
                "{} exists and is not a symlink: not replacing it",
                at.display()
            ))
        }
        Err(_) => {}
    }
    std::os::unix::fs::symlink(target, at)
        .map_err(|e| format!("unable to link {} to {target}: {e}", at.display()))
}

fn gzip(path: &Path) -> Result<(), String> {
    let status = Command::new("gzip")
        .args(["-9nf"])
        .arg(path)
        .status()
        .map_err(|e| format!("unable to run gzip: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("gzip {} failed: {status}", path.display()))
    }
}

/// Puts the layout under `destdir`/`prefix`.
pub fn install(root: &Path, bins: &Path, options: &Options) -> Result<(), String> {
    let top = staged(options.destdir.as_deref(), &options.prefix);
    let lib = top.join("lib").join("warden");
    for daemon in DAEMONS {
        put(&bins.join(daemon), &lib.join(daemon), 0o755)?;
    }
    put(&bins.join("svctl"), &top.join("bin").join("svctl"), 0o755)?;
    let man8 = top.join("share").join("man").join("man8");
    for page in MAN_PAGES {
        let to = man8.join(page);
        put(&root.join("man").join(page), &to, 0o644)?;
        if options.gzip_man {
            gzip(&to)?;
        }
    }
    put(
        &root.join("completions").join("svctl.bash"),
        &top.join("share/bash-completion/completions/svctl"),
        0o644,
    )?;
    let doc = top.join("share").join("doc").join("warden");
    put(
        &root.join("docs").join("install.md"),
        &doc.join("install.md"),
        0o644,
    )?;
    put(&root.join("README.md"), &doc.join("README.md"), 0o644)?;
    if options.power {
        for name in POWER_NAMES {
            link("../bin/svctl", &top.join("sbin").join(name))?;
        }
    }
    if options.svlogd {
        link("../lib/warden/logger", &top.join("bin").join("svlogd"))?;
    }
    Ok(())
}

fn output(cmd: &mut Command) -> Result<String, String> {
    let out = cmd
        .output()
        .map_err(|e| format!("unable to run {cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Disk use in KiB, as dpkg's Installed-Size.
fn size_kib(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            match entry.metadata() {
                Ok(m) if m.is_dir() => stack.push(entry.path()),
                Ok(m) => total += m.len().div_ceil(1024),
                Err(_) => {}
            }
        }
    }
    total
}

/// The .deb of the layout with prefix /usr, in `out`; no maintainer scripts: installing it
/// neither takes over PID 1 nor touches /etc/service.
pub fn deb(root: &Path, bins: &Path, out: &Path) -> Result<PathBuf, String> {
    let version = env!("CARGO_PKG_VERSION");
    let arch = output(Command::new("dpkg").arg("--print-architecture"))?;
    let stage = out.join("stage");
    if stage.exists() {
        std::fs::remove_dir_all(&stage)
            .map_err(|e| format!("unable to remove {}: {e}", stage.display()))?;
    }
    install(
        root,
        bins,
        &Options {
            prefix: PathBuf::from("/usr"),
            destdir: Some(stage.clone()),
            gzip_man: true,
            ..Options::default()
        },
    )?;
    let doc = stage.join("usr/share/doc/warden");
    std::fs::write(
        doc.join("copyright"),
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\
         Upstream-Name: warden\n\n\
         Files: *\nCopyright: the warden authors\nLicense: MIT or Apache-2.0\n",
    )
    .map_err(|e| format!("unable to write the copyright file: {e}"))?;
    let control = format!(
        "Package: warden\n\
         Version: {version}\n\
         Architecture: {arch}\n\
         Maintainer: warden developers <warden@localhost>\n\
         Installed-Size: {}\n\
         Section: admin\n\
         Priority: optional\n\
         Description: process supervision suite and minimal PID 1\n \
         warden supervises services in runit and daemontools service directories\n \
         (svctl, svscan, supervise, logger, init). The daemons live in\n \
         /usr/lib/warden; only svctl is on PATH. Installing the package does not\n \
         change PID 1 or /etc/service: see /usr/share/doc/warden/install.md.\n",
        size_kib(&stage)
    );
    mkdir(&stage.join("DEBIAN"))?;
    std::fs::write(stage.join("DEBIAN/control"), control)
        .map_err(|e| format!("unable to write DEBIAN/control: {e}"))?;
    let deb = out.join(format!("warden_{version}_{arch}.deb"));
    output(
        Command::new("dpkg-deb")
            .args(["--root-owner-group", "-Zxz", "--build"])
            .arg(&stage)
            .arg(&deb),
    )?;
    Ok(deb)
}
