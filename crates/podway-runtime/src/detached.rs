//! Starting the detached helpers (`podway pause`, `podway shim`) and reading their report.
use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::util::io_ctx;
use crate::{Error, Result};

/// Runs `podway ARGS…` (which forks a detached child and exits), with stderr appended to
/// `stderr_log`, reads the child's one-line report (`ok PID …` or `error TEXT`) and returns the
/// reported pid with its start time (which identifies it across pid reuse).
/// Blocking: call from `spawn_blocking`.
pub(crate) fn spawn(
    podway: &Path,
    args: &[&std::ffi::OsStr],
    stderr_log: &Path,
    what: &str,
) -> Result<(u32, u64)> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(stderr_log)
        .map_err(io_ctx(format!("opening {}", stderr_log.display())))?;
    let mut child = Command::new(podway)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .map_err(io_ctx(format!("{what}: running {}", podway.display())))?;
    let stdout = child.stdout.take();
    let status = child
        .wait()
        .map_err(io_ctx(format!("{what}: waiting for {}", podway.display())))?;
    let mut line = String::new();
    if let Some(stdout) = stdout {
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .map_err(io_ctx(format!(
                "{what}: reading the report of {}",
                podway.display()
            )))?;
    }
    let line = line.trim_end();
    match line.split_once(' ').unwrap_or((line, "")) {
        ("ok", rest) => {
            let pid: u32 = rest
                .split_whitespace()
                .next()
                .and_then(|w| w.parse().ok())
                .ok_or_else(|| Error::Command(format!("{what}: bad report {line:?}")))?;
            let start = crate::util::proc_start_time(pid)
                .ok_or_else(|| Error::Command(format!("{what}: process {pid} exited at once")))?;
            Ok((pid, start))
        }
        ("error", text) => Err(Error::Command(format!("{what}: {text}"))),
        _ => {
            let tail = std::fs::read_to_string(stderr_log).unwrap_or_default();
            let tail = tail.lines().last().unwrap_or("").to_string();
            Err(Error::Command(format!(
                "{what}: {} exited ({status}) without a report{}",
                podway.display(),
                if tail.is_empty() {
                    String::new()
                } else {
                    format!(": {tail}")
                }
            )))
        }
    }
}
