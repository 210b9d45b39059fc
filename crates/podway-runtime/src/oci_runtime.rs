//! The OCI runtime command line (runc; crun and youki take the same arguments).
use std::path::Path;

use crate::{Error, Result};

/// A `runc --root ROOT` command.
pub(crate) fn command(runtime: &Path, root: &Path) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(runtime);
    cmd.arg("--root").arg(root);
    cmd
}

/// `runc delete --force ID`; a container runc does not know is fine.
pub(crate) async fn delete(runtime: &Path, root: &Path, id: &str) -> Result<()> {
    let out = command(runtime, root)
        .args(["delete", "--force", id])
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| Error::Io {
            context: format!("running {} delete {id}", runtime.display()),
            source: e,
        })?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() || stderr.contains("does not exist") || stderr.contains("not exist") {
        return Ok(());
    }
    Err(Error::Command(format!(
        "{} delete {id} failed: {}",
        runtime.display(),
        stderr.trim()
    )))
}
