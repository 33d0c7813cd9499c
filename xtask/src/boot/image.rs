//! Builds the boot image: `initramfs.cpio`, `disk.img` (ext4) and the kernel path.
//!
//! Layout inside the initramfs:
//! - `/sbin/{init,svscan,supervise,svctl,logger}` (static), `/init -> sbin/init`,
//!   `/sbin/{poweroff,reboot,halt} -> svctl`;
//! - busybox with its applet links (`/bin/ash`, `mount`, `modprobe`, `getty`, ...), except the
//!   names warden provides, so warden's always win; `/bin/sh` is dash (see `add_script_shell`);
//! - `image/rootfs/**` (hostname, fstab, the boot hook, profile);
//! - the scan dir `/etc/service`: `example-service-dir/*`, then `image/service/*`;
//! - virtio_pci and virtio_blk with what modules.dep says they need, and a matching
//!   trimmed modules.dep for busybox `modprobe`.
//!
//! The static build goes to its own target dir (`<target>/static`) so it never invalidates the
//! normal debug build.

use super::cpio::Cpio;
use super::tree::{self, Node};
use std::path::{Path, PathBuf};
use std::process::Command;

pub const WARDEN_BINS: &[&str] = &["init", "svscan", "supervise", "svctl", "logger"];
/// svctl's argv[0] names: they signal process 1.
pub const POWER_NAMES: &[&str] = &["poweroff", "reboot", "halt"];
/// Kernel modules the disk needs (their dependencies come from modules.dep).
pub const MODULES: &[&str] = &["virtio_pci", "virtio_blk"];
pub const DISK_SIZE: &str = "64M";
pub const TARGET: &str = "x86_64-unknown-linux-gnu";
/// Static, and not position-independent: a static-pie binary relocates itself at every exec,
/// writing to each of its data pages, and under qemu's TCG that made every exec of a warden
/// program about twice as slow, enough to lose the boot benchmark (docs/init.md). The
/// `WARDEN_STATIC_RUSTFLAGS` variable overrides these flags.
pub const STATIC_RUSTFLAGS: &str = "-C target-feature=+crt-static -C relocation-model=static";

/// What to put in the image as process 1 and service scanner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavour {
    /// warden's init → svscan.
    Warden,
    /// busybox init + Debian's runit runsvdir/runsv, for the benchmark.
    BusyboxRunit,
}

pub struct Paths {
    pub workspace: PathBuf,
    /// The example services put in the image's scan dir (the workspace's
    /// `example-service-dir`; a test may pass a copy).
    pub examples: PathBuf,
    /// The static build's target dir.
    pub static_target: PathBuf,
    pub out: PathBuf,
}

pub struct Image {
    pub kernel: PathBuf,
    pub kernel_version: String,
    pub initramfs: PathBuf,
    pub disk: PathBuf,
}

/// The tools the image and the boot need, with the Debian package of each.
pub const TOOLS: &[(&str, &str)] = &[
    ("qemu-system-x86_64", "qemu-system-x86"),
    ("busybox", "busybox-static"),
    ("mke2fs", "e2fsprogs"),
    ("e2fsck", "e2fsprogs"),
    ("debugfs", "e2fsprogs"),
];
pub const KERNEL_PACKAGE: &str = "linux-image-cloud-amd64";

pub fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/sbin", "/usr/sbin"].map(PathBuf::from))
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// The newest /boot/vmlinuz-VERSION whose /lib/modules/VERSION exists (WARDEN_KERNEL
/// overrides), and VERSION.
pub fn find_kernel() -> Option<(PathBuf, String)> {
    if let Some(k) = std::env::var_os("WARDEN_KERNEL") {
        let k = PathBuf::from(k);
        let version = k
            .file_name()?
            .to_str()?
            .strip_prefix("vmlinuz-")?
            .to_owned();
        return Some((k, version));
    }
    let mut kernels: Vec<(PathBuf, String)> = std::fs::read_dir("/boot")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_owned();
            let version = name.strip_prefix("vmlinuz-")?.to_owned();
            Path::new("/lib/modules")
                .join(&version)
                .is_dir()
                .then(|| (e.path(), version))
        })
        .collect();
    kernels.sort();
    kernels.pop()
}

/// Whether an ELF file has no program interpreter (is statically linked).
fn is_static_elf(path: &Path) -> bool {
    let Ok(data) = std::fs::read(path) else {
        return false;
    };
    let u16_at = |o: usize| {
        data.get(o..o + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]) as usize)
    };
    let u64_at = |o: usize| {
        data.get(o..o + 8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])) as usize)
    };
    if data.get(0..4) != Some(b"\x7fELF") {
        return false;
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38))
    else {
        return false;
    };
    const PT_INTERP: u32 = 3;
    !(0..phnum).any(|i| {
        data.get(phoff + i * phentsize..phoff + i * phentsize + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) == PT_INTERP)
            .unwrap_or(false)
    })
}

/// Checks for qemu, the kernel, a static busybox and e2fsprogs. When some are missing:
/// installs them with apt-get if `install` and root, else fails with the exact command.
pub fn ensure_tools(install: bool) -> Result<(), String> {
    let mut missing: Vec<&str> = TOOLS
        .iter()
        .filter(|(tool, _)| which(tool).is_none())
        .map(|(_, pkg)| *pkg)
        .collect();
    if let Some(bb) = which("busybox") {
        if !is_static_elf(&bb) {
            missing.push("busybox-static");
        }
    }
    match find_kernel() {
        None => missing.push(KERNEL_PACKAGE),
        // Debian installs kernels mode 0600: qemu, run by this user, must be able to read it.
        Some((kernel, _)) => {
            if let Err(e) = std::fs::File::open(&kernel) {
                return Err(format!(
                    "unable to read {}: {e} (Debian installs kernels 0600: run as root, or \
                     sudo chmod a+r {})",
                    kernel.display(),
                    kernel.display()
                ));
            }
        }
    }
    missing.sort();
    missing.dedup();
    if missing.is_empty() {
        return Ok(());
    }
    let command = format!(
        "apt-get install -y --no-install-recommends {}",
        missing.join(" ")
    );
    let root = std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false);
    if !(install && root) {
        return Err(format!(
            "missing for the boot image: {}; install with: sudo {command}",
            missing.join(", ")
        ));
    }
    let ok = |args: &[&str]| {
        eprintln!("xtask: waiting for apt-get {}", args.join(" "));
        Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    let mut args = vec!["install", "-y", "--no-install-recommends"];
    args.extend(missing.iter().copied());
    // A fresh machine may have no package lists yet: update once and retry.
    let installed = ok(&args) || (ok(&["update"]) && ok(&args));
    if !installed {
        return Err(format!("`{command}` failed"));
    }
    Ok(())
}

/// `cargo build --release` of warden's programs, static (`STATIC_RUSTFLAGS`), into
/// `static_target`; returns the directory holding them.
pub fn build_static(paths: &Paths) -> Result<PathBuf, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&paths.workspace)
        .args([
            "build",
            "--release",
            "--locked",
            "--target",
            TARGET,
            "--target-dir",
        ])
        .arg(&paths.static_target);
    for bin in WARDEN_BINS {
        cmd.args(["-p", bin]);
    }
    // An explicit --target keeps these flags away from build scripts and proc macros.
    let flags =
        std::env::var("WARDEN_STATIC_RUSTFLAGS").unwrap_or_else(|_| STATIC_RUSTFLAGS.into());
    cmd.env("RUSTFLAGS", flags)
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET");
    eprintln!(
        "xtask: waiting for cargo: building static binaries into {}",
        paths.static_target.display()
    );
    let status = cmd
        .status()
        .map_err(|e| format!("unable to run cargo: {e}"))?;
    if !status.success() {
        return Err(format!("static build failed: {status}"));
    }
    Ok(paths.static_target.join(TARGET).join("release"))
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("unable to read {}: {e}", path.display()))
}

/// Copies a host directory tree into the archive under `dest`, keeping modes and symlinks:
/// regular files, directories and symlinks only, never runtime state (see `tree`). Says once
/// what it left out.
pub fn add_tree(cpio: &mut Cpio, src: &Path, dest: &str) -> Result<(), String> {
    eprintln!("xtask: packing {}", src.display());
    let (nodes, skipped) = tree::walk(src)?;
    let under = |path: &str| {
        if dest.is_empty() {
            path.to_owned()
        } else {
            format!("{dest}/{path}")
        }
    };
    for node in nodes {
        match node {
            Node::Dir { path, mode } => cpio.dir(&under(&path), mode),
            Node::File { path, mode, data } => cpio.file(&under(&path), mode, &data),
            Node::Symlink { path, target } => cpio.symlink(&under(&path), &target),
        }
    }
    if let Some(line) = skipped.report(src) {
        eprintln!("{line}");
    }
    Ok(())
}

/// The image's scan dir, `/etc/service`: `examples` (example-service-dir), then
/// `image/service` of the workspace.
pub fn add_scan_dir(cpio: &mut Cpio, examples: &Path, image_service: &Path) -> Result<(), String> {
    cpio.dir("etc/service", 0o755);
    if examples.is_dir() {
        add_tree(cpio, examples, "etc/service")?;
    }
    add_tree(cpio, image_service, "etc/service")
}

/// The modules in `wanted` and everything they need, as paths relative to the modules dir,
/// dependencies first; and the modules.dep lines for them.
pub fn module_closure(modules_dep: &str, wanted: &[&str]) -> Result<(Vec<String>, String), String> {
    let deps: Vec<(String, Vec<String>)> = modules_dep
        .lines()
        .filter_map(|l| {
            let (module, rest) = l.split_once(':')?;
            Some((
                module.to_owned(),
                rest.split_whitespace().map(str::to_owned).collect(),
            ))
        })
        .collect();
    let find = |name: &str| {
        deps.iter().find(|(m, _)| {
            let file = m.rsplit('/').next().unwrap_or(m);
            let stem = file.split(".ko").next().unwrap_or(file);
            stem.replace('-', "_") == name.replace('-', "_")
        })
    };
    let mut order: Vec<String> = Vec::new();
    for name in wanted {
        let (module, needs) =
            find(name).ok_or_else(|| format!("module {name} not in modules.dep"))?;
        // modules.dep lists the full closure, most dependent first: load in reverse.
        for m in needs.iter().rev().chain(std::iter::once(module)) {
            if !order.contains(m) {
                order.push(m.clone());
            }
        }
    }
    let dep_lines: String = order
        .iter()
        .filter_map(|m| deps.iter().find(|(d, _)| d == m))
        .map(|(m, needs)| format!("{m}: {}\n", needs.join(" ")).replace(": \n", ":\n"))
        .collect();
    Ok((order, dep_lines))
}

/// The busybox applets as paths (`bin/sh`, `usr/bin/awk`, `sbin/mdev`), from
/// `busybox --list-full`.
fn busybox_applets(busybox: &Path) -> Result<Vec<String>, String> {
    eprintln!("xtask: listing the applets of {}", busybox.display());
    let out = Command::new(busybox)
        .arg("--list-full")
        .output()
        .map_err(|e| format!("unable to run {}: {e}", busybox.display()))?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().to_owned())
        .filter(|l| !l.is_empty())
        .collect())
}

/// Builds the whole image into `paths.out`.
pub fn build(paths: &Paths, flavour: Flavour) -> Result<Image, String> {
    build_with(paths, flavour, true)
}

/// [`build`], with `/dev/console` and `/dev/null` in the initramfs or (`dev_nodes` false, a
/// test of init's start) without them: the kernel then starts process 1 with fds 0-2 closed,
/// and nothing but devtmpfs, which init mounts, has the nodes. The kernel's own built-in
/// initramfs, unpacked first, has a `/dev/console`: a dangling symlink in ours replaces it.
pub fn build_with(paths: &Paths, flavour: Flavour, dev_nodes: bool) -> Result<Image, String> {
    let (kernel, kernel_version) = find_kernel().ok_or("no /boot/vmlinuz-* with modules")?;
    let bins = build_static(paths)?;
    std::fs::create_dir_all(&paths.out)
        .map_err(|e| format!("unable to create {}: {e}", paths.out.display()))?;
    let mut cpio = Cpio::new();
    for dir in ["proc", "sys", "dev", "run", "root", "var/log", "etc/warden"] {
        cpio.dir(dir, 0o755);
    }
    cpio.dir("tmp", 0o1777);
    // The kernel opens /dev/console for process 1 before anything is mounted.
    if dev_nodes {
        cpio.char_device("dev/console", 0o600, 5, 1);
        cpio.char_device("dev/null", 0o666, 1, 3);
    } else {
        cpio.symlink("dev/console", "/nonexistent/console");
    }

    for bin in WARDEN_BINS {
        cpio.file(&format!("sbin/{bin}"), 0o755, &read(&bins.join(bin))?);
    }
    for name in POWER_NAMES {
        cpio.symlink(&format!("sbin/{name}"), "svctl");
    }
    match flavour {
        Flavour::Warden => cpio.symlink("init", "sbin/init"),
        Flavour::BusyboxRunit => {
            cpio.symlink("init", "bin/busybox");
            add_runit(&mut cpio)?;
        }
    }

    let image_dir = paths.workspace.join("image");
    add_tree(&mut cpio, &image_dir.join("rootfs"), "")?;
    if flavour == Flavour::BusyboxRunit {
        add_tree(&mut cpio, &image_dir.join("busybox-runit"), "")?;
    }
    add_scan_dir(&mut cpio, &paths.examples, &image_dir.join("service"))?;

    add_script_shell(&mut cpio)?;
    let busybox = which("busybox").ok_or("busybox is not installed")?;
    cpio.file("bin/busybox", 0o755, &read(&busybox)?);
    for applet in busybox_applets(&busybox)? {
        let applet = applet.trim_start_matches('/');
        let name = applet.rsplit('/').next().unwrap_or(applet);
        let owned = WARDEN_BINS.contains(&name) || POWER_NAMES.contains(&name);
        if owned || applet == "bin/busybox" || applet == "linuxrc" || cpio.contains(applet) {
            continue;
        }
        let depth = applet.matches('/').count();
        cpio.symlink(applet, &format!("{}bin/busybox", "../".repeat(depth)));
    }
    // busybox's own `poweroff -f` stays reachable as `busybox poweroff -f` (emergency shell).

    let modules_dir = Path::new("/lib/modules").join(&kernel_version);
    let dep = String::from_utf8_lossy(&read(&modules_dir.join("modules.dep"))?).into_owned();
    let (modules, dep_lines) = module_closure(&dep, MODULES)?;
    let dest = format!("lib/modules/{kernel_version}");
    for m in &modules {
        cpio.file(&format!("{dest}/{m}"), 0o644, &read(&modules_dir.join(m))?);
    }
    cpio.file(&format!("{dest}/modules.dep"), 0o644, dep_lines.as_bytes());

    let initramfs = paths.out.join(match (flavour, dev_nodes) {
        (Flavour::Warden, true) => "initramfs.cpio",
        (Flavour::Warden, false) => "initramfs-no-dev-nodes.cpio",
        (Flavour::BusyboxRunit, true) => "initramfs-busybox-runit.cpio",
        (Flavour::BusyboxRunit, false) => "initramfs-busybox-runit-no-dev-nodes.cpio",
    });
    std::fs::write(&initramfs, cpio.finish())
        .map_err(|e| format!("unable to write {}: {e}", initramfs.display()))?;
    let disk = paths.out.join("disk.img");
    make_disk(&disk)?;
    Ok(Image {
        kernel,
        kernel_version,
        initramfs,
        disk,
    })
}

/// busybox-static's shell runs its own applets before it searches PATH (FEATURE_SH_STANDALONE):
/// in a `#!/bin/sh` script `logger` or `poweroff` would be busybox's, whatever PATH says. So
/// /bin/sh is dash (with the C library it needs) when the host has it; busybox's ash stays as
/// /bin/ash for the console, where /etc/profile points those names at /sbin.
fn add_script_shell(cpio: &mut Cpio) -> Result<(), String> {
    let Some(dash) = which("dash") else {
        eprintln!("xtask: warning: no dash: /bin/sh is busybox, whose applets shadow warden's logger and poweroff in scripts");
        return Ok(());
    };
    cpio.file("bin/dash", 0o755, &read(&dash)?);
    add_libs(cpio, &dash)?;
    cpio.symlink("bin/sh", "dash");
    Ok(())
}

fn add_libs(cpio: &mut Cpio, program: &Path) -> Result<(), String> {
    if is_static_elf(program) {
        return Ok(());
    }
    for lib in shared_libs(program)? {
        let dest = lib.to_string_lossy().trim_start_matches('/').to_owned();
        let real = std::fs::canonicalize(&lib).map_err(|e| e.to_string())?;
        cpio.file(&dest, 0o755, &read(&real)?);
    }
    Ok(())
}

/// runsvdir and runsv from Debian's runit, with the C library they are linked against.
fn add_runit(cpio: &mut Cpio) -> Result<(), String> {
    for tool in ["runsvdir", "runsv", "sv"] {
        let path = which(tool).ok_or(format!("{tool} is not installed: apt-get install runit"))?;
        cpio.file(&format!("usr/bin/{tool}"), 0o755, &read(&path)?);
        add_libs(cpio, &path)?;
    }
    Ok(())
}

/// The libraries `ldd` names for a dynamically linked program (absolute paths).
fn shared_libs(program: &Path) -> Result<Vec<PathBuf>, String> {
    let out = Command::new("ldd")
        .arg(program)
        .output()
        .map_err(|e| format!("unable to run ldd: {e}"))?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter(|w| w.starts_with('/'))
        .map(PathBuf::from)
        .collect())
}

/// A fresh, empty ext4 file system (`mke2fs -d` needs no root), replacing any old one.
pub fn make_disk(disk: &Path) -> Result<(), String> {
    let _ = std::fs::remove_file(disk);
    eprintln!("xtask: waiting for mke2fs: making {}", disk.display());
    let root = disk.with_extension("root");
    std::fs::create_dir_all(&root).map_err(|e| e.to_string())?;
    let out = Command::new(which("mke2fs").ok_or("mke2fs is not installed")?)
        .args(["-q", "-F", "-t", "ext4", "-L", "wardenlog", "-d"])
        .arg(&root)
        .arg(disk)
        .arg(DISK_SIZE)
        .output()
        .map_err(|e| format!("unable to run mke2fs: {e}"))?;
    let _ = std::fs::remove_dir_all(&root);
    if !out.status.success() {
        return Err(format!(
            "mke2fs {} failed: {}",
            disk.display(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_elf_detection_tells_busybox_static_from_dash() {
        let (Some(busybox), Some(dash)) = (which("busybox"), which("dash")) else {
            return;
        };
        if is_static_elf(&busybox) {
            assert!(
                !is_static_elf(&dash),
                "dash is dynamically linked on Debian"
            );
        }
        assert!(
            !is_static_elf(Path::new("/etc/hostname")),
            "not an ELF file"
        );
    }

    #[test]
    fn module_closure_loads_dependencies_first() {
        let dep = "kernel/drivers/virtio/virtio.ko:\n\
                   kernel/drivers/virtio/virtio_ring.ko:\n\
                   kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko\n";
        let (order, lines) = module_closure(dep, &["virtio_blk"]).unwrap();
        assert_eq!(
            order,
            [
                "kernel/drivers/virtio/virtio_ring.ko",
                "kernel/drivers/virtio/virtio.ko",
                "kernel/drivers/block/virtio_blk.ko"
            ]
        );
        assert!(lines.starts_with("kernel/drivers/virtio/virtio_ring.ko:\n"));
        assert!(module_closure(dep, &["nope"]).is_err());
    }
}
