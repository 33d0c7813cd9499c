//! Booting the image under qemu (TCG: /dev/kvm is not relied on) and talking to the guest
//! over its serial console: write a command, wait for a sentinel line with a deadline, and
//! stop at once on a kernel panic.

use super::image::Image;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The kernel command line: serial console, warden's init, quiet kernel, reboot at once on a
/// panic (the driver notices the panic message first and stops qemu).
pub fn append(extra: &str) -> String {
    format!("console=ttyS0 rdinit=/init loglevel=4 panic=-1 {extra}")
        .trim()
        .to_owned()
}

/// The qemu command for an image. `interactive`: the serial console and qemu's monitor on the
/// terminal (ctrl-a x quits); else the serial console alone on stdin/stdout.
pub fn command(image: &Image, initramfs: &Path, extra_append: &str, interactive: bool) -> Command {
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args([
        "-accel",
        "tcg",
        "-m",
        "256",
        "-smp",
        "1",
        "-nodefaults",
        "-no-user-config",
    ])
    .arg("-kernel")
    .arg(&image.kernel)
    .arg("-initrd")
    .arg(initramfs)
    .arg("-append")
    .arg(append(extra_append))
    .arg("-drive")
    .arg(format!(
        "file={},if=virtio,format=raw",
        image.disk.display()
    ));
    if interactive {
        cmd.args(["-nographic", "-serial", "mon:stdio"]);
    } else {
        cmd.args(["-display", "none", "-serial", "stdio", "-monitor", "none"]);
    }
    cmd
}

/// Everything the guest printed so far, shared with the reader thread.
#[derive(Default)]
struct Transcript {
    text: String,
    eof: bool,
}

/// A running guest whose serial console is driven by the caller.
pub struct Guest {
    child: Child,
    stdin: Option<ChildStdin>,
    shared: Arc<(Mutex<Transcript>, Condvar)>,
    /// Where in the transcript the next `expect` starts looking.
    pos: usize,
    started: Instant,
    log: Option<PathBuf>,
    sentinel: u64,
}

pub const PANIC: &str = "Kernel panic";

impl Guest {
    /// Starts qemu; the console transcript is also copied to `log` as it arrives.
    pub fn start(mut cmd: Command, log: Option<PathBuf>) -> Result<Guest, String> {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("unable to start qemu-system-x86_64: {e}"))?;
        let stdin = child.stdin.take();
        let mut stdout = child.stdout.take().ok_or("no qemu stdout")?;
        let shared = Arc::new((Mutex::new(Transcript::default()), Condvar::new()));
        let reader = Arc::clone(&shared);
        let mut log_file = log.as_ref().and_then(|p| std::fs::File::create(p).ok());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                let n = stdout.read(&mut buf).unwrap_or(0);
                let (lock, cond) = &*reader;
                let Ok(mut t) = lock.lock() else { return };
                if n == 0 {
                    t.eof = true;
                    cond.notify_all();
                    return;
                }
                let chunk = String::from_utf8_lossy(&buf[..n]).replace('\r', "");
                if let Some(f) = log_file.as_mut() {
                    let _ = f.write_all(chunk.as_bytes());
                }
                t.text.push_str(&chunk);
                cond.notify_all();
            }
        });
        Ok(Guest {
            child,
            stdin,
            shared,
            pos: 0,
            started: Instant::now(),
            log,
            sentinel: 0,
        })
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// The whole transcript so far.
    pub fn transcript(&self) -> String {
        self.shared
            .0
            .lock()
            .map(|t| t.text.clone())
            .unwrap_or_default()
    }

    fn fail(&mut self, why: String) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let text = self.transcript();
        let tail: String = text
            .lines()
            .rev()
            .take(60)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n");
        let log = self
            .log
            .as_ref()
            .map(|p| format!(" (whole console in {})", p.display()))
            .unwrap_or_default();
        format!("{why}{log}; console tail:\n{tail}")
    }

    /// Waits until `pattern` appears after the last match; returns the text up to and
    /// including it. Fails on a kernel panic, on qemu exiting, or at the deadline.
    pub fn expect(&mut self, pattern: &str, timeout: Duration) -> Result<String, String> {
        let deadline = Instant::now() + timeout;
        let (lock, cond) = &*Arc::clone(&self.shared);
        let mut t = lock.lock().map_err(|_| "console reader died".to_string())?;
        loop {
            let region = t.text.get(self.pos..).unwrap_or("");
            if let Some(i) = region.find(pattern) {
                let end = self.pos + i + pattern.len();
                let found = t.text.get(self.pos..end).unwrap_or("").to_owned();
                self.pos = end;
                return Ok(found);
            }
            if region.contains(PANIC) {
                drop(t);
                return Err(self.fail(format!("kernel panic while waiting for {pattern:?}")));
            }
            if t.eof {
                drop(t);
                return Err(self.fail(format!("qemu exited while waiting for {pattern:?}")));
            }
            let now = Instant::now();
            if now >= deadline {
                drop(t);
                return Err(self.fail(format!(
                    "timed out after {timeout:?} waiting for {pattern:?}"
                )));
            }
            t = cond
                .wait_timeout(t, deadline - now)
                .map_err(|_| "console reader died".to_string())?
                .0;
        }
    }

    /// Types `line` and a newline on the console.
    pub fn send(&mut self, line: &str) -> Result<(), String> {
        let stdin = self.stdin.as_mut().ok_or("qemu stdin closed")?;
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .and_then(|_| stdin.flush())
            .map_err(|e| format!("unable to write to the console: {e}"))
    }

    /// Runs a shell command in the guest's console shell and returns what it printed. The
    /// sentinel is computed by the shell, so the echo of the typed line never matches it.
    pub fn run(&mut self, command: &str, timeout: Duration) -> Result<String, String> {
        self.sentinel += 1;
        let n = self.sentinel;
        self.send(&format!("{command}; echo \"@@end $((1000+{n}))@@\""))?;
        let marker = format!("@@end {}@@", 1000 + n);
        let out = self.expect(&marker, timeout)?;
        // What the command printed starts after the echo of the typed line.
        let echoed = format!("$((1000+{n}))@@\"");
        let body = match out.rfind(&echoed) {
            Some(i) => out
                .get(i..)
                .and_then(|rest| rest.split_once('\n'))
                .map(|(_, after)| after)
                .unwrap_or(""),
            None => out.as_str(),
        };
        Ok(body.trim_end_matches(marker.as_str()).to_owned())
    }

    /// Waits for qemu to exit by itself; its exit status code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<Option<i32>, String> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return Ok(status.code()),
                Ok(None) => {}
                Err(e) => return Err(format!("unable to wait for qemu: {e}")),
            }
            if self
                .transcript()
                .get(self.pos..)
                .unwrap_or("")
                .contains(PANIC)
            {
                return Err(self.fail("kernel panic while waiting for qemu to exit".into()));
            }
            if Instant::now() >= deadline {
                return Err(self.fail(format!("qemu did not exit within {timeout:?}")));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
