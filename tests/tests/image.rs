//! The boot image builder against a tree svscan has run on (issue 18): `cargo xtask demo`
//! then `cargo xtask qemu` hung for ever, because the builder opened the FIFOs svscan and
//! supervise leave behind (`.svscan/control`, `supervise/control`, `supervise/ok`) to pack
//! them. These tests run the demo's setup and svscan on the example tree, stop it, then build.

#[path = "../../xtask/src/boot/mod.rs"]
mod boot;

use boot::cpio::Cpio;
use boot::image::{self, Flavour, Paths};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;
use warden_tests::{bin, wait_until, Spawned};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The names in a newc cpio archive.
fn cpio_names(data: &[u8]) -> Vec<String> {
    let hex = |b: &[u8]| usize::from_str_radix(std::str::from_utf8(b).unwrap(), 16).unwrap();
    let align = |n: usize| (n + 3) & !3;
    let mut names = Vec::new();
    let mut at = 0;
    while at + 110 <= data.len() {
        assert_eq!(&data[at..at + 6], b"070701", "bad cpio header at {at}");
        let size = hex(&data[at + 54..at + 62]);
        let namesize = hex(&data[at + 94..at + 102]);
        let name = String::from_utf8_lossy(&data[at + 110..at + 110 + namesize - 1]).into_owned();
        at = align(at + 110 + namesize);
        at = align(at + size);
        if name == "TRAILER!!!" {
            break;
        }
        names.push(name);
    }
    names
}

/// The demo's copy of example-service-dir, run by svscan until every service's supervisor
/// (and the clock's logger) has made its FIFOs, then stopped the way ctrl-C stops it.
fn example_tree_after_svscan(root: &Path) -> PathBuf {
    let tree = root.join("demo");
    boot::tree::copy(&workspace().join("example-service-dir"), &tree).unwrap();
    let mut svscan = Spawned::new(
        Command::new(bin("svscan"))
            .arg(&tree)
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    let fifos = [
        ".svscan/control",
        "clock/supervise/ok",
        "clock/log/supervise/control",
        "crashy/supervise/ok",
        "with-finish/supervise/ok",
        "ready/supervise/ok",
        "on-demand/supervise/ok",
    ];
    wait_until("the example tree's FIFOs", Duration::from_secs(60), || {
        fifos.iter().all(|f| tree.join(f).exists()) && tree.join("clock/log/main").is_dir()
    });
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(svscan.pid()).unwrap(),
        rustix::process::Signal::INT,
    )
    .unwrap();
    let status = svscan.wait_exit(Duration::from_secs(60));
    assert!(status.success(), "svscan after INT: {status}");
    for f in fifos {
        let kind = std::fs::symlink_metadata(tree.join(f)).unwrap().file_type();
        assert!(kind.is_fifo(), "{f} should be left behind as a FIFO");
    }
    tree
}

/// Runs `job` in a thread; panics if it takes longer than `deadline` (a hang, say).
fn within<T: Send + 'static>(
    what: &str,
    deadline: Duration,
    job: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(job());
    });
    rx.recv_timeout(deadline)
        .unwrap_or_else(|_| panic!("{what} did not finish within {deadline:?} (blocked?)"))
}

#[test]
fn issue_18_the_scan_dir_packs_after_svscan_ran_on_the_example_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = example_tree_after_svscan(tmp.path());
    // A FIFO and a socket of the user's own are skipped too, not opened.
    rustix::fs::mknodat(
        rustix::fs::CWD,
        tree.join("clock/a-fifo"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    let _socket = std::os::unix::net::UnixListener::bind(tree.join("clock/a-socket")).unwrap();
    let image_service = workspace().join("image/service");
    let packed = tree.clone();
    let archive = within("packing the scan dir", Duration::from_secs(60), move || {
        let mut cpio = Cpio::new();
        image::add_scan_dir(&mut cpio, &packed, &image_service).map(|()| cpio.finish())
    })
    .unwrap();
    let names = cpio_names(&archive);
    for wanted in [
        "etc/service/clock/run",
        "etc/service/clock/log/README",
        "etc/service/with-finish/finish",
        "etc/service/ready/notification-fd",
        "etc/service/on-demand/down",
        "etc/service/ticker/log/run",
    ] {
        assert!(names.iter().any(|n| n == wanted), "{wanted} not packed");
    }
    for name in &names {
        assert!(
            !name.contains("/supervise")
                && !name.contains("/.svscan")
                && !name.contains("/log/main")
                && !name.contains("a-fifo")
                && !name.contains("a-socket"),
            "runtime state or a special file was packed: {name}"
        );
    }
}

#[test]
fn issue_18_the_image_builds_after_svscan_ran_on_the_example_tree() {
    if let Err(e) = image::ensure_tools(false) {
        panic!("{e} (.ci/run installs them)");
    }
    let tmp = tempfile::tempdir().unwrap();
    let tree = example_tree_after_svscan(tmp.path());
    let out = tmp.path().join("image");
    let exe = std::env::current_exe().unwrap();
    let paths = Paths {
        workspace: workspace(),
        examples: tree,
        static_target: exe.ancestors().nth(3).unwrap().join("static"),
        out,
    };
    // The static build is the slow part (minutes on a loaded machine, cached afterwards); the
    // hang this guards against never ends.
    let image = within("building the image", Duration::from_secs(1200), move || {
        image::build(&paths, Flavour::Warden)
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let names = cpio_names(&std::fs::read(&image.initramfs).unwrap());
    assert!(names.iter().any(|n| n == "etc/service/clock/run"));
    assert!(names.iter().any(|n| n == "sbin/svscan"));
    let state: Vec<&String> = names
        .iter()
        .filter(|n| n.starts_with("etc/service/"))
        .filter(|n| n.contains("/supervise") || n.contains("/.svscan") || n.contains("/log/main"))
        .collect();
    assert!(state.is_empty(), "runtime state was packed: {state:?}");
}
