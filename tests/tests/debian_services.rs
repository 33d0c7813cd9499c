//! Debian's real service dirs, as shipped, under warden's svscan (issue 15): cron, rsyslog and
//! dbus from runit-services, ssh from openssh-server, in a fresh PID, mount and network
//! namespace with a private /run, /var/log and /etc/sv (tests/debian/services.sh does the
//! work as that namespace's process 1, and says what it checks). Needs root, as CI runs.

use std::path::Path;
use std::time::Duration;
use warden_tests::{bin, require, run, unshare_pid_and_mount};

#[test]
fn debian_service_dirs_run_unchanged_under_svscan() {
    assert!(
        rustix::process::geteuid().is_root(),
        "needs root: the daemons (sshd, cron, rsyslogd, dbus-daemon) and the namespace's mounts"
    );
    for (tool, package) in [
        ("sv", "runit"),
        ("chpst", "runit"),
        ("svlogd", "runit"),
        ("cron", "cron"),
        ("rsyslogd", "rsyslog"),
        ("dbus-daemon", "dbus"),
        ("ip", "iproute2"),
        ("logger", "bsdutils"),
    ] {
        require(tool, package);
    }
    assert!(
        Path::new("/usr/sbin/sshd").exists() && Path::new("/etc/sv/ssh").is_dir(),
        "apt-get install openssh-server runit-services (.ci/run does)"
    );
    assert!(
        Path::new("/usr/share/runit/sv/cron").is_dir(),
        "apt-get install runit-services (.ci/run does)"
    );
    let work = tempfile::tempdir().unwrap();
    let bins = bin("svscan").parent().unwrap().to_owned();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("debian/services.sh");
    let mut cmd = unshare_pid_and_mount();
    cmd.arg("--net")
        .arg("bash")
        .arg(&script)
        .arg(&bins)
        .arg(work.path());
    let (code, out, err) = run(&mut cmd, Duration::from_secs(240));
    // Supervisors killed with the namespace could not remove their cgroups.
    let left = warden_tests::remove_cgroups_under(work.path(), Duration::from_secs(5));
    println!("{out}{err}");
    assert_eq!(code, Some(0), "services.sh failed:\n{out}\n{err}");
    assert!(out.contains("services.sh: ok"), "{out}");
    // ssh's `chpst -u _runit-log svlogd -tt` ran warden's logger, not /usr/bin/svlogd.
    if std::env::var_os("WARDEN_SVLOGD").is_none_or(|v| v != "0") {
        assert!(out.contains("logs are written by warden's logger"), "{out}");
    }
    assert!(left.is_empty(), "cgroups left: {left:?}");
}
