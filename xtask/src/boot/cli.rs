//! `cargo xtask image [--out DIR] [--busybox-runit]` and `cargo xtask qemu [--busybox-runit]
//! [KERNEL-ARG...]`.

use super::image::{self, Flavour, Image, Paths};
use std::path::{Path, PathBuf};

/// The static build lives in `<target>/static` and the image in `<target>/image`, where
/// `<target>` is `$CARGO_TARGET_DIR` or the workspace's `target/`.
pub fn default_paths(workspace: &Path) -> Paths {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"));
    Paths {
        workspace: workspace.to_path_buf(),
        examples: workspace.join("example-service-dir"),
        static_target: target.join("static"),
        out: target.join("image"),
    }
}

struct Options {
    out: Option<PathBuf>,
    flavour: Flavour,
    kernel_args: Vec<String>,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut options = Options {
        out: None,
        flavour: Flavour::Warden,
        kernel_args: Vec::new(),
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--out" => options.out = Some(args.next().ok_or("--out needs a directory")?.into()),
            "--busybox-runit" => options.flavour = Flavour::BusyboxRunit,
            "--" => options.kernel_args.extend(args.by_ref().cloned()),
            other if !other.starts_with('-') => options.kernel_args.push(other.to_owned()),
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(options)
}

fn build(workspace: &Path, options: &Options) -> Result<Image, String> {
    let mut paths = default_paths(workspace);
    if let Some(out) = &options.out {
        paths.out = out.clone();
    }
    let image = image::build(&paths, options.flavour)?;
    eprintln!(
        "xtask: image ready:\n  kernel    {}\n  initramfs {}\n  disk      {}",
        image.kernel.display(),
        image.initramfs.display(),
        image.disk.display()
    );
    Ok(image)
}

/// Builds the image; prints where it is.
pub fn image_command(workspace: &Path, args: &[String]) -> Result<(), String> {
    let options = parse(args)?;
    image::ensure_tools(true)?;
    build(workspace, &options).map(|_| ())
}

/// Builds the image and boots it with the serial console on this terminal.
pub fn qemu_command(workspace: &Path, args: &[String]) -> Result<(), String> {
    let options = parse(args)?;
    image::ensure_tools(true)?;
    let image = build(workspace, &options)?;
    eprintln!(
        "xtask: waiting for qemu: booting under qemu (TCG). In the guest: `svctl status`, `svctl down NAME`, \
         `poweroff`. ctrl-a x quits qemu."
    );
    let status = super::qemu::command(
        &image,
        &image.initramfs,
        &options.kernel_args.join(" "),
        true,
    )
    .status()
    .map_err(|e| format!("unable to run qemu-system-x86_64: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("qemu exited with {status}"))
    }
}
