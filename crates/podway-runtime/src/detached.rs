//! Starting the detached helpers (`podway pause`, `podway shim`) and reading their report.
use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::util::io_ctx;
use crate::{Error, Result};

/// Runs `podway ARGS…` (which forks a detached child and exits), with stderr appended to
/// `stderr_log`, and returns the words after `ok` of the child's one-line report.
/// Blocking: call from `spawn_blocking`.
pub(crate) fn spawn(
    podway: &Path,
    args: &[&std::ffi::OsStr],
    stderr_log: &Path,
    what: &str,
) -> Result<Vec<String>> {
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
        ("ok", rest) => Ok(rest.split_whitespace().map(str::to_string).collect()),
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
