//! Project tasks: `cargo xtask test` (everything CI checks), `cargo xtask demo` (the example
//! tree in the foreground), `cargo xtask image|qemu` (the boot image), `cargo xtask install|deb`
//! (docs/install.md).

mod boot;
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
        _ => {
            eprintln!(
                "usage: cargo xtask test | demo | image [--out DIR] | qemu [KERNEL-ARG...]\n\
                 \x20      | install [--prefix P] [--destdir D] [--power] [--svlogd] | deb [--out DIR]"
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

/// Builds the programs and replaces itself with `svscan example-service-dir`, so ctrl-C reaches
/// svscan, which stops the services, drains the loggers and exits.
fn demo() -> Result<(), String> {
    use std::os::unix::process::CommandExt;
    cargo(&["build", "--workspace", "--bins"])?;
    let root = workspace_root();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let bin = target.join("debug");
    let svctl = bin.join("svctl");
    eprintln!("xtask: svscan example-service-dir; in another terminal:");
    eprintln!("    {} -d example-service-dir status", svctl.display());
    eprintln!("ctrl-C stops the tree");
    let error = Command::new(bin.join("svscan"))
        .arg("example-service-dir")
        .current_dir(&root)
        .exec();
    Err(format!(
        "unable to run {}: {error}",
        bin.join("svscan").display()
    ))
}
