//! A real Debian 12 system under qemu (issue 16): an ext4 root file system made by
//! `mmdebstrap` from Debian's packages, booted with the cloud kernel and its initramfs
//! (initramfs-tools mounts the virtio root the normal way), then `init=` warden's init, or the
//! init of another flavour for comparison. Used by `cargo xtask debian`, tests/tests/debian_boot.rs
//! and bench/run. Standard library only (the tests include this module with `#[path]`).
//!
//! Two layers, both cached outside the clone (`$WARDEN_CACHE`, default `/var/cache/warden`), so
//! that CI's clean clone reuses them:
//! - the base: the tarball mmdebstrap makes, keyed by a hash of the suite, the packages and the
//!   hook commands (downloading it is the slow part, ~1 min);
//! - the disk: base + what the flavour adds (warden's own `.deb`, its boot hook, the scan dir
//!   links; the ssh key; hostname and fstab), keyed by a hash of all of that, written with
//!   `mke2fs -d` (no loop mount). Its kernel and initrd are copied out next to it.
//!
//! Boots always use a copy of the cached disk (`copy_disk`): the cache is never written to by
//! a guest.

use super::image::which;
use std::path::{Path, PathBuf};
use std::process::Command;

pub const SUITE: &str = "bookworm";
pub const MIRROR: &str = "http://deb.debian.org/debian";
/// What every flavour has. `runit` brings `sv`, `chpst`, `invoke-run` (not `runit-init`);
/// `getty-run` the serial getty's service dir; udev comes with initramfs-tools.
pub const PACKAGES: &[&str] = &[
    "linux-image-cloud-amd64",
    "initramfs-tools",
    "runit",
    "runit-services",
    "getty-run",
    "openssh-server",
    "cron",
    "rsyslog",
    "dbus",
    "iproute2",
    "mount",
    "procps",
    "psmisc",
    "e2fsprogs",
    "kmod",
];
/// The services enabled in each flavour, as named in `/etc/sv`.
pub const SERVICES: &[&str] = &["cron", "rsyslog", "dbus", "ssh", "getty-ttyS0"];
/// What every flavour prints on the serial console once its init has all enabled services up,
/// by that init's own notion (`customize`): warden's and runit's `all-up` service, systemd's
/// `all-up.service` after multi-user.target, sysvinit's `/etc/rc.local`. Followed by the
/// guest's uptime then and the notion; bench/run debian times it from the host.
pub const ALL_UP: &str = "all-up: all enabled services up";
/// The service dir of the last service in the warden and runit flavours.
pub const ALL_UP_SERVICE: &str = "all-up";
/// Where warden's `.deb` puts init.
pub const WARDEN_INIT: &str = "/usr/lib/warden/init";
pub const DISK_SIZE: &str = "1536M";
/// The guest's address on qemu's user network (its built-in default).
pub const GUEST_NET: &str = "10.0.2.15/24 via 10.0.2.2";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavour {
    Warden,
    Systemd,
    Runit,
    Sysvinit,
}

impl Flavour {
    pub const ALL: [Flavour; 4] = [
        Flavour::Warden,
        Flavour::Systemd,
        Flavour::Runit,
        Flavour::Sysvinit,
    ];

    pub fn parse(name: &str) -> Result<Flavour, String> {
        Flavour::ALL
            .into_iter()
            .find(|f| f.name() == name)
            .ok_or_else(|| format!("unknown flavour {name}: warden, systemd, runit or sysvinit"))
    }

    pub fn name(self) -> &'static str {
        match self {
            Flavour::Warden => "warden",
            Flavour::Systemd => "systemd",
            Flavour::Runit => "runit",
            Flavour::Sysvinit => "sysvinit",
        }
    }

    /// The init package the flavour adds to `PACKAGES`.
    fn packages(self) -> &'static [&'static str] {
        match self {
            Flavour::Warden => &[],
            Flavour::Systemd => &["systemd-sysv"],
            Flavour::Runit => &["runit-init", "ifupdown"],
            // orphan-sysvinit-scripts (which sysvinit-core recommends) has the init script
            // rsyslog no longer ships.
            Flavour::Sysvinit => &["sysvinit-core", "orphan-sysvinit-scripts", "ifupdown"],
        }
    }

    /// `init=` on the kernel command line.
    pub fn init(self) -> &'static str {
        match self {
            Flavour::Warden => WARDEN_INIT,
            Flavour::Systemd => "/lib/systemd/systemd",
            Flavour::Runit => "/sbin/runit-init",
            Flavour::Sysvinit => "/sbin/init",
        }
    }
}

/// The commands run in the new root (as mmdebstrap's `--customize-hook`s) for every flavour:
/// console login as root without a password (a throwaway machine; ssh still wants the key);
/// none of this machine's hostname or resolver; the root in fstab with a pass number, its type
/// told to initramfs-tools (`FSTYPE`: its fsck hook probes the root device, which does not
/// exist where the image is made) and the initramfs made again, so that it includes e2fsck and
/// checks the root before mounting it, the normal way.
const BASE_HOOKS: &[&str] = &[
    "chroot \"$1\" passwd -d root",
    "rm -f \"$1\"/etc/hostname \"$1\"/etc/resolv.conf",
    "echo '/dev/vda / ext4 rw,errors=remount-ro 0 1' > \"$1\"/etc/fstab",
    "echo FSTYPE=ext4 > \"$1\"/etc/initramfs-tools/conf.d/fstype",
    "chroot \"$1\" update-initramfs -u -k all",
];

pub fn cache_dir() -> PathBuf {
    std::env::var_os("WARDEN_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/warden"))
}

/// FNV-1a, 64 bits: a cache key, not a security check.
pub fn fnv(data: &[u8], mut hash: u64) -> u64 {
    for b in data {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x100_0000_01b3);
    }
    hash
}
const FNV_START: u64 = 0xcbf2_9ce4_8422_2325;

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd
        .output()
        .map_err(|e| format!("unable to run {cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn mkdir(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("unable to create {}: {e}", dir.display()))
}

/// `rel` in the unpacked guest `root`: its parent resolved with `in_root`, so that no link
/// of the guest (absolute, as Debian's are) leads to this machine's files.
fn at(root: &Path, rel: &str) -> Result<PathBuf, String> {
    let (parent, name) = rel.rsplit_once('/').unwrap_or(("", rel));
    Ok(in_root(root, parent)?.join(name))
}

/// Writes a file of the guest (a link in its place is replaced, never followed).
fn write(path: &Path, data: &str, mode: u32) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(dir) = path.parent() {
        mkdir(dir)?;
    }
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
        let _ = std::fs::remove_file(path);
    }
    std::fs::write(path, data).map_err(|e| format!("unable to write {}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("unable to chmod {}: {e}", path.display()))
}

fn symlink(target: &str, at: &Path) -> Result<(), String> {
    if let Some(dir) = at.parent() {
        mkdir(dir)?;
    }
    let _ = std::fs::remove_file(at);
    std::os::unix::fs::symlink(target, at)
        .map_err(|e| format!("unable to link {} -> {target}: {e}", at.display()))
}

/// The mmdebstrap tarball of a flavour, from the cache or made now.
pub fn base(flavour: Flavour) -> Result<PathBuf, String> {
    let mut packages: Vec<&str> = PACKAGES.to_vec();
    packages.extend(flavour.packages());
    let mut key = FNV_START;
    for part in [SUITE, MIRROR, &packages.join(","), &BASE_HOOKS.join("\n")] {
        key = fnv(part.as_bytes(), key);
        key = fnv(b"\0", key);
    }
    let cache = cache_dir();
    mkdir(&cache)?;
    let tar = cache.join(format!("debian-base-{}-{key:016x}.tar", flavour.name()));
    if tar.is_file() {
        eprintln!("xtask: cached base {}", tar.display());
        return Ok(tar);
    }
    which("mmdebstrap").ok_or("mmdebstrap is not installed: apt-get install mmdebstrap")?;
    let temp = tar.with_extension("tar.part");
    let _ = std::fs::remove_file(&temp);
    eprintln!(
        "xtask: waiting for mmdebstrap: Debian {SUITE} ({}) from {MIRROR}",
        packages.join(" ")
    );
    let started = std::time::Instant::now();
    let mut cmd = Command::new("mmdebstrap");
    cmd.args(["--variant=apt", "--format=tar", "--quiet"])
        .arg(format!("--include={}", packages.join(",")));
    for hook in BASE_HOOKS {
        cmd.arg(format!("--customize-hook={hook}"));
    }
    cmd.arg(SUITE).arg(&temp).arg(MIRROR);
    run(&mut cmd)?;
    std::fs::rename(&temp, &tar)
        .map_err(|e| format!("unable to rename {}: {e}", temp.display()))?;
    eprintln!(
        "xtask: mmdebstrap took {:.0?}; base {}",
        started.elapsed(),
        tar.display()
    );
    // Older bases of this flavour are of no use any more.
    remove_others(&cache, &format!("debian-base-{}-", flavour.name()), &tar);
    Ok(tar)
}

fn remove_others(dir: &Path, prefix: &str, keep: &Path) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(prefix) && path != keep && !keep.starts_with(&path) {
            if path.is_dir() {
                let _ = std::fs::remove_dir_all(&path);
            } else {
                let _ = std::fs::remove_file(&path);
            }
        }
    }
}

/// A built image: its disk (in the cache: boot a `copy_disk` of it), kernel and initrd.
#[derive(Clone, Debug)]
pub struct DebianImage {
    pub flavour: Flavour,
    pub disk: PathBuf,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
}

/// What a flavour adds to the base: `deb` is warden's `.deb` (installed in the warden flavour
/// only), `authorized_key` the public key root accepts over ssh, `hook` warden's boot hook
/// (`image/debian/boot` of the workspace).
pub struct Inputs<'a> {
    pub deb: Option<&'a Path>,
    pub authorized_key: &'a str,
    pub hook: &'a str,
}

/// The image of a flavour, from the cache or made now.
pub fn image(flavour: Flavour, inputs: &Inputs) -> Result<DebianImage, String> {
    let base = base(flavour)?;
    let mut key = fnv(base.to_string_lossy().as_bytes(), FNV_START);
    // This file: a change to what `customize` does makes a new image.
    key = fnv(include_str!("debian.rs").as_bytes(), key);
    key = fnv(inputs.authorized_key.as_bytes(), key);
    key = fnv(inputs.hook.as_bytes(), key);
    key = fnv(GUEST_NET.as_bytes(), key);
    key = fnv(DISK_SIZE.as_bytes(), key);
    key = fnv(SERVICES.join(",").as_bytes(), key);
    if let Some(deb) = inputs.deb {
        let data =
            std::fs::read(deb).map_err(|e| format!("unable to read {}: {e}", deb.display()))?;
        key = fnv(&data, key);
    }
    let cache = cache_dir();
    let dir = cache.join(format!("debian-{}-{key:016x}", flavour.name()));
    let image = DebianImage {
        flavour,
        disk: dir.join("disk.img"),
        kernel: dir.join("vmlinuz"),
        initrd: dir.join("initrd.img"),
    };
    if image.disk.is_file() && image.kernel.is_file() && image.initrd.is_file() {
        eprintln!("xtask: cached image {}", image.disk.display());
        return Ok(image);
    }
    let started = std::time::Instant::now();
    let work = cache.join(format!("debian-{}-{key:016x}.part", flavour.name()));
    let _ = std::fs::remove_dir_all(&work);
    let root = work.join("root");
    mkdir(&root)?;
    run(Command::new("tar")
        .args(["--numeric-owner", "--xattrs", "--xattrs-include=*", "-xpf"])
        .arg(&base)
        .arg("-C")
        .arg(&root))?;
    customize(flavour, &root, inputs)?;
    // The kernel and initrd go beside the disk, for qemu's -kernel and -initrd.
    let boot = root.join("boot");
    let mut found = (None, None);
    for entry in std::fs::read_dir(&boot)
        .map_err(|e| format!("unable to read {}: {e}", boot.display()))?
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("vmlinuz-") {
            found.0 = Some(entry.path());
        } else if name.starts_with("initrd.img-") {
            found.1 = Some(entry.path());
        }
    }
    let (Some(kernel), Some(initrd)) = found else {
        return Err(format!(
            "no vmlinuz-* and initrd.img-* in {}",
            boot.display()
        ));
    };
    for (from, to) in [(&kernel, "vmlinuz"), (&initrd, "initrd.img")] {
        std::fs::copy(from, work.join(to))
            .map_err(|e| format!("unable to copy {}: {e}", from.display()))?;
    }
    let disk = work.join("disk.img");
    run(
        Command::new(which("mke2fs").ok_or("mke2fs is not installed")?)
            .args(["-q", "-F", "-t", "ext4", "-L", "debian", "-d"])
            .arg(&root)
            .arg(&disk)
            .arg(DISK_SIZE),
    )?;
    std::fs::remove_dir_all(&root)
        .map_err(|e| format!("unable to remove {}: {e}", root.display()))?;
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::rename(&work, &dir)
        .map_err(|e| format!("unable to rename {}: {e}", work.display()))?;
    remove_others(&cache, &format!("debian-{}-", flavour.name()), &dir);
    eprintln!(
        "xtask: image made in {:.0?}: {}",
        started.elapsed(),
        image.disk.display()
    );
    Ok(image)
}

/// The first interface that is not loopback, up with qemu's user-network address: the same
/// few lines for every flavour that does not configure the network itself.
fn net_script() -> String {
    let (addr, gw) = GUEST_NET.split_once(" via ").unwrap_or((GUEST_NET, ""));
    format!(
        "ip link set lo up\n\
         for dev in /sys/class/net/*; do\n  \
           dev=${{dev##*/}}\n  \
           [ \"$dev\" = lo ] && continue\n  \
           ip link set \"$dev\" up && ip addr add {addr} dev \"$dev\" && ip route add default via {gw}\n  \
           break\n\
         done\n"
    )
}

/// ifupdown's configuration of qemu's user network (runit and sysvinit flavours).
const QEMU_INTERFACES: &str =
    "auto eth0\niface eth0 inet static\n  address 10.0.2.15/24\n  gateway 10.0.2.2\n";

/// What each flavour adds to the unpacked base at `root`.
fn customize(flavour: Flavour, root: &Path, inputs: &Inputs) -> Result<(), String> {
    write(
        &at(root, "etc/hostname")?,
        &format!("debian-{}\n", flavour.name()),
        0o644,
    )?;
    write(
        &at(root, "etc/hosts")?,
        &format!(
            "127.0.0.1 localhost\n127.0.1.1 debian-{}\n::1 localhost ip6-localhost ip6-loopback\n",
            flavour.name()
        ),
        0o644,
    )?;
    // initramfs-tools fscks the root before mounting it when fstab gives it a pass number.
    write(
        &at(root, "etc/fstab")?,
        "/dev/vda / ext4 rw,errors=remount-ro 0 1\n",
        0o644,
    )?;
    write(
        &at(root, "root/.ssh/authorized_keys")?,
        inputs.authorized_key,
        0o600,
    )?;
    std::fs::set_permissions(
        at(root, "root/.ssh")?,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .map_err(|e| format!("unable to chmod /root/.ssh: {e}"))?;
    // /etc/service is a chain of absolute links in Debian (-> runit/runsvdir/current ->
    // /etc/runit/runsvdir/default): resolved inside `root`, never on this machine.
    let service = in_root(root, "etc/service")?;
    write(&at(root, SAY_ALL_UP)?, &say_all_up(), 0o755)?;
    match flavour {
        Flavour::Warden => {
            let deb = inputs.deb.ok_or("the warden flavour needs warden's .deb")?;
            // No maintainer scripts in warden's .deb: dpkg --root needs no chroot.
            run(Command::new("dpkg")
                .arg(format!("--root={}", root.display()))
                .args(["--force-script-chrootless", "-i"])
                .arg(deb))?;
            write(&at(root, "etc/warden/boot")?, inputs.hook, 0o755)?;
            write(
                &at(root, "etc/warden/network")?,
                &format!(
                    "#!/bin/sh\n# qemu's user network (cargo xtask debian)\n{}",
                    net_script()
                ),
                0o755,
            )?;
            // svctl is on PATH; poweroff, reboot and halt (the .deb leaves Debian's alone,
            // and this Debian has none without an init package) signal warden's process 1.
            for name in ["poweroff", "reboot", "halt"] {
                symlink("/usr/bin/svctl", &at(root, &format!("usr/sbin/{name}"))?)?;
            }
            enable_runit_way(&service)?;
            last_service(root, &service, "svctl -w 5m check", "svctl once .")?;
        }
        Flavour::Runit => {
            // runit-init's stage 1 runs the rcS scripts: ifupdown's networking brings eth0 up.
            write(
                &at(root, "etc/network/interfaces.d/qemu")?,
                QEMU_INTERFACES,
                0o644,
            )?;
            enable_runit_way(&service)?;
            last_service(root, &service, "sv -w 300 check", "sv once .")?;
        }
        Flavour::Sysvinit => {
            // ifupdown's networking service brings the interface up.
            write(
                &at(root, "etc/network/interfaces.d/qemu")?,
                QEMU_INTERFACES,
                0o644,
            )?;
            // The serial getty, sysvinit's way.
            let inittab = at(root, "etc/inittab")?;
            let mut text = std::fs::read_to_string(&inittab).unwrap_or_default();
            text.push_str("T0:23:respawn:/sbin/getty -L ttyS0 115200 vt100\n");
            write(&inittab, &text, 0o644)?;
            // The end of the boot, sysvinit's way: /etc/rc.local, which /etc/init.d/rc.local
            // (`Required-Start: $all`, so insserv orders it after every other script of the
            // runlevel) runs last. Debian's own lines kept.
            write(
                &at(root, "etc/rc.local")?,
                &format!(
                    "#!/bin/sh -e\n\
                     # rc.local: run by /etc/init.d/rc.local, the last script of runlevels 2-5.\n\
                     if test -d /etc/boot.d ; then\n\
                     \trun-parts /etc/boot.d\n\
                     fi\n\
                     /{SAY_ALL_UP} \"sysvinit: rc.local, after every other script of the runlevel\"\n\
                     exit 0\n"
                ),
                0o755,
            )?;
        }
        Flavour::Systemd => {
            write(
                &at(root, "etc/systemd/network/50-qemu.network")?,
                "[Match]\nName=en* eth*\n\n[Network]\nAddress=10.0.2.15/24\nGateway=10.0.2.2\n",
                0o644,
            )?;
            // runit's own unit would start runsvdir on /etc/service under systemd: the
            // daemons must be systemd's alone here.
            symlink("/dev/null", &at(root, "etc/systemd/system/runit.service")?)?;
            symlink(
                "/lib/systemd/system/systemd-networkd.service",
                &at(
                    root,
                    "etc/systemd/system/multi-user.target.wants/systemd-networkd.service",
                )?,
            )?;
            // The end of the boot, systemd's way: a unit ordered after multi-user.target, which
            // is reached once every unit it wants has started (ready, for Type=notify), as
            // systemd-update-utmp-runlevel.service is (DefaultDependencies=no: with them, the
            // target that wants it would be ordered after it, a cycle).
            write(
                &at(root, "etc/systemd/system/all-up.service")?,
                &format!(
                    "[Unit]\n\
                     Description=Tell the console the boot is done\n\
                     DefaultDependencies=no\n\
                     After=multi-user.target\n\
                     Conflicts=shutdown.target\n\
                     Before=shutdown.target\n\n\
                     [Service]\n\
                     Type=oneshot\n\
                     ExecStart=/{SAY_ALL_UP} \"systemd: after multi-user.target\"\n\n\
                     [Install]\n\
                     WantedBy=multi-user.target\n"
                ),
                0o644,
            )?;
            symlink(
                "/etc/systemd/system/all-up.service",
                &at(
                    root,
                    "etc/systemd/system/multi-user.target.wants/all-up.service",
                )?,
            )?;
        }
    }
    Ok(())
}

/// The script every flavour's end-of-boot hook calls: [`ALL_UP`] on the console, with the
/// guest's uptime and the notion it is given.
const SAY_ALL_UP: &str = "usr/local/sbin/say-all-up";

fn say_all_up() -> String {
    format!(
        "#!/bin/sh\n\
         # Says on the console that the init has all enabled services up (\"$*\": by which\n\
         # notion), with the uptime then. cargo xtask debian; bench/run debian times the line.\n\
         read -r up _ < /proc/uptime\n\
         echo \"{ALL_UP}, uptime $up s ($*)\" > /dev/console\n"
    )
}

/// The last service of a runit-style scan dir (warden, runit): it tells its supervisor not to
/// start it again once it ends (`once`: before the wait, so that its exit cannot come first),
/// waits with `check` (the client's `-w ... check`: every other service of the scan dir in
/// the state it wants, up with its `./check` passing, or down), then says so on the console.
fn last_service(root: &Path, service: &Path, check: &str, once: &str) -> Result<(), String> {
    let name = ALL_UP_SERVICE;
    write(
        &at(root, &format!("etc/sv/{name}/run"))?,
        &format!(
            "#!/bin/sh\n\
             # The last service: once `{check}` sees every other service of /etc/service\n\
             # as it wants to be, say so on the console; then stay down.\n\
             exec 2>&1\n\
             {once}\n\
             set --\n\
             for dir in /etc/service/*; do\n  \
               [ \"${{dir##*/}}\" = {name} ] || set -- \"$@\" \"$dir\"\n\
             done\n\
             {check} \"$@\" && /{SAY_ALL_UP} \"{check} /etc/service/*\"\n"
        ),
        0o755,
    )?;
    symlink(&format!("/etc/sv/{name}"), &service.join(name))
}

/// `path` (relative) inside `root`, its symlinks followed as the guest would follow them: an
/// absolute target is taken relative to `root`. Only the links on the way are resolved; a
/// missing last component is returned as is.
pub fn in_root(root: &Path, path: &str) -> Result<PathBuf, String> {
    let mut todo: Vec<String> = path
        .split('/')
        .filter(|c| !c.is_empty())
        .rev()
        .map(String::from)
        .collect();
    let mut done: Vec<String> = Vec::new();
    let mut hops = 0;
    while let Some(part) = todo.pop() {
        match part.as_str() {
            "." => continue,
            ".." => {
                done.pop();
                continue;
            }
            _ => {}
        }
        let here = done
            .iter()
            .fold(root.to_path_buf(), |p, c| p.join(c))
            .join(&part);
        match std::fs::read_link(&here) {
            Ok(target) => {
                hops += 1;
                if hops > 40 {
                    return Err(format!(
                        "too many links resolving {path} in {}",
                        root.display()
                    ));
                }
                let target = target.to_string_lossy().into_owned();
                if target.starts_with('/') {
                    done.clear();
                }
                todo.extend(
                    target
                        .split('/')
                        .filter(|c| !c.is_empty())
                        .rev()
                        .map(String::from),
                );
            }
            Err(_) => done.push(part),
        }
    }
    Ok(done.iter().fold(root.to_path_buf(), |p, c| p.join(c)))
}

/// The Debian way of enabling runit services: `/etc/sv/NAME` linked into `/etc/service`
/// (runit-helper's postinst did so for the daemons; the getty of the serial console is added,
/// the ones of the virtual terminals a serial machine has not are removed).
fn enable_runit_way(service: &Path) -> Result<(), String> {
    mkdir(service)?;
    for entry in std::fs::read_dir(service)
        .map_err(|e| format!("unable to read {}: {e}", service.display()))?
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("getty-") && !SERVICES.contains(&name.as_str()) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    for name in SERVICES {
        let at = service.join(name);
        if std::fs::symlink_metadata(&at).is_err() {
            symlink(&format!("/etc/sv/{name}"), &at)?;
        }
    }
    Ok(())
}

/// The kernel command line of a flavour.
pub fn append(flavour: Flavour, extra: &str) -> String {
    format!(
        "root=/dev/vda rw console=ttyS0 init={} panic=-1 loglevel=4 net.ifnames=0 {extra}",
        flavour.init()
    )
    .trim()
    .to_owned()
}

/// A copy of the cached disk to boot (sparse), so that the cache is never modified.
pub fn copy_disk(image: &DebianImage, to: &Path) -> Result<(), String> {
    if let Some(dir) = to.parent() {
        mkdir(dir)?;
    }
    let _ = std::fs::remove_file(to);
    run(Command::new("cp")
        .arg("--sparse=always")
        .arg(&image.disk)
        .arg(to))
}

/// A free loopback port for the forwarded ssh (the kernel picks it; there is a short window
/// before qemu binds it).
pub fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("unable to find a free port: {e}"))
}

/// The qemu command: TCG, the user network restricted to this machine (`restrict=on`: the
/// guest reaches nothing, not even DNS), port 22 forwarded to 127.0.0.1:`port`.
pub fn command(
    image: &DebianImage,
    disk: &Path,
    port: u16,
    extra_append: &str,
    interactive: bool,
) -> Command {
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args([
        "-accel",
        "tcg",
        "-m",
        "512",
        "-smp",
        "1",
        "-nodefaults",
        "-no-user-config",
    ])
    .arg("-kernel")
    .arg(&image.kernel)
    .arg("-initrd")
    .arg(&image.initrd)
    .arg("-append")
    .arg(append(image.flavour, extra_append))
    .arg("-drive")
    .arg(format!("file={},if=virtio,format=raw", disk.display()))
    .arg("-netdev")
    .arg(format!(
        "user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:{port}-:22"
    ))
    .args(["-device", "virtio-net-pci,netdev=net0"]);
    if interactive {
        cmd.args(["-nographic", "-serial", "mon:stdio"]);
    } else {
        cmd.args(["-display", "none", "-serial", "stdio", "-monitor", "none"]);
    }
    cmd
}

/// The ssh key for root in `dir` (`id_ed25519`, made if missing); the public key's line.
pub fn ssh_key(dir: &Path) -> Result<(PathBuf, String), String> {
    mkdir(dir)?;
    let key = dir.join("id_ed25519");
    if !key.is_file() {
        let _ = std::fs::remove_file(dir.join("id_ed25519.pub"));
        run(Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "warden-debian", "-f"])
            .arg(&key))?;
    }
    let public = std::fs::read_to_string(dir.join("id_ed25519.pub"))
        .map_err(|e| format!("unable to read the public key: {e}"))?;
    Ok((key, public))
}

/// ssh arguments for root on the forwarded port with `key`, never asking anything.
pub fn ssh_args(key: &Path, port: u16) -> Vec<String> {
    [
        "-i",
        &key.display().to_string(),
        "-p",
        &port.to_string(),
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
        "-o",
        "ConnectTimeout=10",
        "root@127.0.0.1",
    ]
    .map(String::from)
    .to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_root_follows_absolute_links_inside_the_root_only() {
        let root = std::env::temp_dir().join(format!("warden-in-root-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("etc/runit/runsvdir/default")).unwrap();
        std::os::unix::fs::symlink("runit/runsvdir/current", root.join("etc/service")).unwrap();
        std::os::unix::fs::symlink(
            "/etc/runit/runsvdir/default",
            root.join("etc/runit/runsvdir/current"),
        )
        .unwrap();
        assert_eq!(
            in_root(&root, "etc/service").unwrap(),
            root.join("etc/runit/runsvdir/default")
        );
        assert_eq!(in_root(&root, "etc/none").unwrap(), root.join("etc/none"));
        std::fs::remove_dir_all(&root).unwrap();
    }
}
