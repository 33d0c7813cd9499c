//! Project tasks: `cargo xtask test` (everything CI checks), `cargo xtask demo` (the example
//! tree in the foreground), `cargo xtask image|qemu` (the boot image), `cargo xtask install|deb`
//! (docs/install.md), `cargo xtask debian` (docs/debian.md).

mod boot;
mod debian;
mod install;

use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") => test(&args[1..]),
        Some("demo") => demo(),
        Some("image") => boot::cli::image_command(&workspace_root(), &args[1..]),
        Some("qemu") => boot::cli::qemu_command(&workspace_root(), &args[1..]),
        Some("install") => install::install_command(&workspace_root(), &args[1..]),
        Some("deb") => install::deb_command(&workspace_root(), &args[1..]),
        Some("debian") => debian::debian_command(&workspace_root(), &args[1..]),
        _ => {
            eprintln!(
                "usage: cargo xtask test | demo | image [--out DIR] | qemu [KERNEL-ARG...]\n\
                 \x20      | install [--prefix P] [--destdir D] [--power] [--svlogd] | deb [--out DIR]\n\
                 \x20      | debian [--flavour warden|systemd|runit|sysvinit] [--build-only] [KERNEL-ARG...]"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs a cargo command from the workspace root, failing on a non-zero exit.
fn cargo(args: &[&str]) -> Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("xtask: cargo {}", args.join(" "));
    let status = Command::new(cargo)
        .args(args)
        .current_dir(workspace_root())
        .status()
        .map_err(|e| format!("unable to run cargo: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("cargo {} failed: {status}", args.join(" ")))
    }
}

fn workspace_root() -> std::path::PathBuf {
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// fmt, clippy, the build the process tests run, then every test.
fn test(extra: &[String]) -> Result<(), String> {
    cargo(&["fmt", "--all", "--", "--check"])?;
    cargo(&[
        "clippy",
        "--workspace",
        "--all-targets",
        "--locked",
        "--",
        "-D",
        "warnings",
    ])?;
    cargo(&["build", "--workspace", "--locked"])?;
    let mut args = vec!["test", "--workspace", "--locked", "--no-fail-fast"];
    args.extend(extra.iter().map(String::as_str));
    cargo(&args)
}

/// Where the demo runs: a copy of example-service-dir, so that the checkout never collects
/// `supervise/`, `.svscan/` or logs.
fn demo_dir(target: &std::path::Path) -> std::path::PathBuf {
    target.join("demo")
}

/// Builds the programs, copies example-service-dir to `<target>/demo` (afresh, unless a demo
/// still runs there) and replaces itself with `svscan <target>/demo`, so ctrl-C reaches
/// svscan, which stops the services, drains the loggers and exits.
fn demo() -> Result<(), String> {
    use std::os::unix::process::CommandExt;
    cargo(&["build", "--workspace", "--bins"])?;
    let root = workspace_root();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let bin = target.join("debug");
    let dir = demo_dir(&target);
    if demo_running(&dir) {
        return Err(format!(
            "a demo already runs on {}: stop it with ctrl-C, or `{} -d {} shutdown`",
            dir.display(),
            bin.join("svctl").display(),
            dir.display()
        ));
    }
    if dir.exists() {
        std::fs::remove_dir_all(&dir)
            .map_err(|e| format!("unable to remove the old {}: {e}", dir.display()))?;
    }
    boot::tree::copy(&root.join("example-service-dir"), &dir)?;
    let shown = dir
        .strip_prefix(&root)
        .unwrap_or(&dir)
        .display()
        .to_string();
    let svctl = bin.join("svctl");
    let svctl = svctl.strip_prefix(&root).unwrap_or(&svctl).display();
    eprintln!("xtask: the demo runs on a copy of example-service-dir: {shown}");
    eprintln!("xtask: svscan {shown}; in another terminal:");
    eprintln!("    {svctl} -d {shown} status");
    eprintln!("ctrl-C stops the tree");
    let error = Command::new(bin.join("svscan"))
        .arg(&dir)
        .current_dir(&root)
        .exec();
    Err(format!(
        "unable to run {}: {error}",
        bin.join("svscan").display()
    ))
}

/// Whether an svscan runs on the demo tree: its control FIFO has a reader (an open for
/// writing that cannot block fails with ENXIO when nobody reads).
fn demo_running(dir: &std::path::Path) -> bool {
    use std::os::unix::fs::OpenOptionsExt;
    const O_NONBLOCK: i32 = 0o4000;
    std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(O_NONBLOCK)
        .open(dir.join(".svscan/control"))
        .is_ok()
}
