//! The OCI runtime command line (runc; crun and youki take the same arguments).
use std::path::Path;

use crate::{Error, Result};

/// A `runc --root ROOT` command.
pub(crate) fn command(runtime: &Path, root: &Path) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(runtime);
    cmd.arg("--root").arg(root);
    cmd
}

/// Runs `runc --root ROOT ARGS…` to its end (blocking); `Err` when it could not run or failed,
/// unless `fine` accepts its stderr.
fn run_blocking(runtime: &Path, root: &Path, args: &[&str], fine: fn(&str) -> bool) -> Result<()> {
    let what = format!("{} {}", runtime.display(), args.join(" "));
    let out = std::process::Command::new(runtime)
        .arg("--root")
        .arg(root)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| Error::Io {
            context: format!("running {what}"),
            source: e,
        })?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() || fine(&stderr) {
        return Ok(());
    }
    Err(Error::Command(format!("{what} failed: {}", stderr.trim())))
}

/// `runc delete --force ID`; a container runc does not know is fine. Blocking.
pub(crate) fn delete(runtime: &Path, root: &Path, id: &str) -> Result<()> {
    run_blocking(runtime, root, &["delete", "--force", id], |stderr| {
        stderr.contains("not exist")
    })
}

/// `runc kill --all ID KILL`: every process left in the container's cgroup (runc freezes it
/// first, so none forks away), also once its init process is gone. Blocking (the pod's shim
/// calls it from its loop; the runtime from `spawn_blocking`).
pub(crate) fn kill_all(runtime: &Path, root: &Path, id: &str) -> Result<()> {
    run_blocking(runtime, root, &["kill", "--all", id, "KILL"], |_| false)
}

/// The last error of a runc text log (`--log FILE --log-format text`): its `msg`, unescaped.
pub(crate) fn last_error(log: &str) -> String {
    log.lines()
        .rev()
        .find(|l| l.contains("level=error"))
        .map_or_else(|| log.trim().to_string(), message)
}

/// The `msg="…"` of a runc text log line (the whole line if it has none).
fn message(line: &str) -> String {
    let Some(start) = line.find("msg=\"") else {
        return line.to_string();
    };
    let mut out = String::new();
    let mut chars = line[start + 5..].chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => break,
            '\\' => out.extend(chars.next()),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_messages_from_the_log() {
        let log = concat!(
            "time=\"x\" level=warning msg=\"w\"\n",
            r#"time="x" level=error msg="exec: \"/x\": stat /x: no such file""#,
            "\n"
        );
        assert_eq!(last_error(log), r#"exec: "/x": stat /x: no such file"#);
        assert_eq!(last_error("plain text\n"), "plain text");
    }
}
