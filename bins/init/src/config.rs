//! Where init's settings come from: the environment (`WARDEN_SCANDIR=...`, which the kernel
//! also passes for `WARDEN_SCANDIR=...` on its command line), then the kernel command line
//! (`warden.scandir=...`), then the defaults. In a container /proc/cmdline is the host's, so it
//! is not read there.

use std::path::PathBuf;
use std::time::Duration;

pub const DEFAULT_SCANDIR: &str = warden::svdir::DEFAULT_SCANDIR;
pub const DEFAULT_BOOT_HOOK: &str = "/etc/warden/boot";
pub const DEFAULT_SHUTDOWN_HOOK: &str = "/etc/warden/shutdown";
/// How long stage 3 waits after TERM before KILL (s6-linux-init's default). svscan has already
/// given every service its own grace, so this is only for what escaped supervision.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(3);
/// PATH for everything init starts when the kernel gave none: warden's /sbin before busybox's
/// /bin, so `poweroff` is warden's.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub scandir: PathBuf,
    pub boot_hook: PathBuf,
    pub shutdown_hook: PathBuf,
    pub grace: Duration,
    pub hostname_file: PathBuf,
    /// Settings that could not be understood, for one warning each.
    pub problems: Vec<String>,
}

/// The keys, as `warden.KEY=` on the kernel command line and `WARDEN_KEY` in the environment.
const KEYS: &[&str] = &["scandir", "hook", "shutdown_hook", "grace"];

impl Config {
    /// Reads the settings; `cmdline` is the kernel command line (None in a container).
    pub fn load(cmdline: Option<&str>) -> Config {
        let env = |key: &str| std::env::var(format!("WARDEN_{}", key.to_ascii_uppercase())).ok();
        Config::from_sources(cmdline.unwrap_or(""), env)
    }

    pub fn from_sources(cmdline: &str, env: impl Fn(&str) -> Option<String>) -> Config {
        let kernel = parse_cmdline(cmdline);
        let get = |key: &str| {
            env(key).or_else(|| {
                kernel
                    .iter()
                    .rev()
                    .find(|(k, _)| k == key)
                    .map(|(_, v)| v.clone())
            })
        };
        let mut problems = Vec::new();
        let grace = match get("grace") {
            None => DEFAULT_GRACE,
            Some(text) => match warden::service::parse_duration(&text) {
                Ok(d) => d,
                Err(e) => {
                    problems.push(format!(
                        "ignoring warden.grace={text}: {e}; using {}s",
                        DEFAULT_GRACE.as_secs()
                    ));
                    DEFAULT_GRACE
                }
            },
        };
        for (key, _) in &kernel {
            if !KEYS.contains(&key.as_str()) {
                problems.push(format!("ignoring unknown kernel parameter warden.{key}"));
            }
        }
        Config {
            scandir: get("scandir")
                .unwrap_or_else(|| DEFAULT_SCANDIR.into())
                .into(),
            boot_hook: get("hook")
                .unwrap_or_else(|| DEFAULT_BOOT_HOOK.into())
                .into(),
            shutdown_hook: get("shutdown_hook")
                .unwrap_or_else(|| DEFAULT_SHUTDOWN_HOOK.into())
                .into(),
            grace,
            hostname_file: "/etc/hostname".into(),
            problems,
        }
    }
}

/// The `warden.KEY=VALUE` words of a kernel command line, in order. Quoting as the kernel
/// does it: `warden.scandir="/etc/my service"`.
pub fn parse_cmdline(cmdline: &str) -> Vec<(String, String)> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    for c in cmdline.chars() {
        match c {
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
        .into_iter()
        .filter_map(|w| {
            let rest = w.strip_prefix("warden.")?;
            let (key, value) = rest.split_once('=')?;
            Some((key.to_owned(), value.to_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_without_any_setting() {
        let c = Config::from_sources("console=ttyS0 quiet", |_| None);
        assert_eq!(c.scandir, PathBuf::from("/etc/service"));
        assert_eq!(c.boot_hook, PathBuf::from("/etc/warden/boot"));
        assert_eq!(c.shutdown_hook, PathBuf::from("/etc/warden/shutdown"));
        assert_eq!(c.grace, Duration::from_secs(3));
        assert!(c.problems.is_empty());
    }

    #[test]
    fn kernel_command_line_sets_paths_and_quotes_work() {
        let c = Config::from_sources(
            r#"console=ttyS0 warden.scandir="/etc/my service" warden.hook=/boot.sh warden.grace=500ms"#,
            |_| None,
        );
        assert_eq!(c.scandir, PathBuf::from("/etc/my service"));
        assert_eq!(c.boot_hook, PathBuf::from("/boot.sh"));
        assert_eq!(c.grace, Duration::from_millis(500));
    }

    #[test]
    fn environment_wins_over_kernel_command_line() {
        let c = Config::from_sources("warden.scandir=/a", |k| {
            (k == "scandir").then(|| "/b".to_string())
        });
        assert_eq!(c.scandir, PathBuf::from("/b"));
    }

    #[test]
    fn bad_grace_and_unknown_keys_are_reported_not_fatal() {
        let c = Config::from_sources("warden.grace=soon warden.scnadir=/x", |_| None);
        assert_eq!(c.grace, DEFAULT_GRACE);
        assert_eq!(c.problems.len(), 2, "{:?}", c.problems);
        assert!(c.problems[1].contains("warden.scnadir"));
    }
}
