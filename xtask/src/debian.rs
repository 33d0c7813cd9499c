//! `cargo xtask debian [--flavour warden|systemd|runit|sysvinit] [--build-only] [KERNEL-ARG...]`:
//! builds (or takes from the cache) the Debian 12 image of a flavour and boots a copy of it
//! under qemu with the serial console on this terminal (docs/debian.md).

use crate::boot::debian::{self, Flavour, Inputs};
use crate::boot::image::{build_static, Paths};
use std::path::{Path, PathBuf};

const USAGE: &str = "usage: cargo xtask debian [--flavour warden|systemd|runit|sysvinit] \
                     [--build-only] [--port N] [KERNEL-ARG...]";

fn target(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
}

pub fn debian_command(root: &Path, args: &[String]) -> Result<(), String> {
    let mut flavour = Flavour::Warden;
    let mut build_only = false;
    let mut port = None;
    let mut kernel_args = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--flavour" => {
                flavour = Flavour::parse(
                    args.next()
                        .ok_or(format!("--flavour needs a value\n{USAGE}"))?,
                )?
            }
            "--build-only" => build_only = true,
            "--port" => {
                let value = args
                    .next()
                    .ok_or(format!("--port needs a value\n{USAGE}"))?;
                port = Some(
                    value
                        .parse::<u16>()
                        .map_err(|e| format!("--port {value}: {e}"))?,
                );
            }
            "--" => kernel_args.extend(args.by_ref().cloned()),
            other if !other.starts_with('-') => kernel_args.push(other.to_owned()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    let target = target(root);
    let dir = target.join("debian");
    let (key, public) = debian::ssh_key(&dir)?;
    let deb = if flavour == Flavour::Warden {
        let bins = build_static(&Paths {
            workspace: root.to_owned(),
            examples: root.join("example-service-dir"),
            static_target: target.join("static"),
            out: target.join("image"),
        })?;
        Some(crate::install::deb(root, &bins, &dir.join("deb"))?)
    } else {
        None
    };
    let hook_path = root.join("image/debian/boot");
    let hook = std::fs::read_to_string(&hook_path)
        .map_err(|e| format!("unable to read {}: {e}", hook_path.display()))?;
    let image = debian::image(
        flavour,
        &Inputs {
            deb: deb.as_deref(),
            authorized_key: &public,
            hook: &hook,
        },
    )?;
    if build_only {
        // For scripts (tests/tests/debian_boot.rs, bench/run): one `name=value` a line.
        println!("disk={}", image.disk.display());
        println!("kernel={}", image.kernel.display());
        println!("initrd={}", image.initrd.display());
        println!("key={}", key.display());
        return Ok(());
    }
    let disk = dir.join(format!("{}.img", flavour.name()));
    debian::copy_disk(&image, &disk)?;
    let port = match port {
        Some(p) => p,
        None => debian::free_port()?,
    };
    eprintln!(
        "xtask: booting Debian ({} flavour) from a copy of the cached image: {}\n\
         xtask: ssh key for root: {}\n\
         xtask: ssh port: {port} on 127.0.0.1 (the guest reaches nothing else)\n\
         xtask: log in with: ssh -i {} -p {port} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null root@127.0.0.1\n\
         xtask: on the console: root, no password. ctrl-a x quits qemu; `poweroff` in the guest ends it.",
        flavour.name(),
        disk.display(),
        key.display(),
        key.display(),
    );
    let status = debian::command(&image, &disk, port, &kernel_args.join(" "), true)
        .status()
        .map_err(|e| format!("unable to run qemu-system-x86_64: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("qemu exited with {status}"))
    }
}
