//! Container log rotation by size, as the kubelet's container log manager does it.
//!
//! Every check interval, each running container's CRI log file that has grown past the size
//! limit is renamed to `<path>.<YYYYMMDD-HHMMSS>` and the runtime is asked to reopen the path
//! (CRI `ReopenContainerLog`): the container's monitor goes on writing into a new file, and no
//! record is split or lost. If the runtime cannot reopen, the file is renamed back. The oldest
//! rotated files are removed so that at most `max_files` remain, the current one included.
//! `kubectl logs` reads the current file, as with the kubelet. Works with any CRI runtime.
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_cri::v1 as cri;
use tokio_util::sync::CancellationToken;

use crate::cri::Cri;

/// When and how container logs are rotated (the kubelet's `containerLogMaxSize`,
/// `containerLogMaxFiles` and `containerLogMonitorInterval`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogRotation {
    /// A log file larger than this many bytes is rotated.
    pub max_size: u64,
    /// Log files kept per container, the current one included (at least 2).
    pub max_files: usize,
    /// How often the files are checked.
    pub check_every: Duration,
}

impl Default for LogRotation {
    /// The kubelet's defaults: 10 MiB, 5 files, every 10 s.
    fn default() -> Self {
        LogRotation {
            max_size: 10 << 20,
            max_files: 5,
            check_every: Duration::from_secs(10),
        }
    }
}

/// Parses a size limit in Kubernetes quantity form (`10Mi`, `500Ki`, `1G`, `4096`), in bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let quantity = crate::pods::quantity::Quantity::parse(text)?;
    u64::try_from(quantity.value())
        .ok()
        .filter(|&bytes| bytes > 0)
        .ok_or_else(|| format!("the size {text:?} must be positive"))
}

/// Checks and rotates the running containers' logs every [`LogRotation::check_every`] until
/// `stop`.
pub(crate) async fn run(cri: Cri, policy: LogRotation, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(policy.check_every) => {}
        }
        for (id, path) in running_logs(&cri).await {
            if let Err(e) = rotate_if_large(&cri, &id, &path, &policy).await {
                tracing::warn!(container = %id, log = %path.display(), error = %e, "rotating the container log");
            }
        }
    }
}

/// (container id, log path) of every running container that logs to a file.
async fn running_logs(cri: &Cri) -> Vec<(String, PathBuf)> {
    let filter = cri::ContainerFilter {
        state: Some(cri::ContainerStateValue {
            state: cri::ContainerState::ContainerRunning as i32,
        }),
        ..Default::default()
    };
    let Ok(list) = cri
        .rt()
        .list_containers(cri::ListContainersRequest {
            filter: Some(filter),
        })
        .await
    else {
        return Vec::new();
    };
    let mut logs = Vec::new();
    for c in list.into_inner().containers {
        let status = cri
            .rt()
            .container_status(cri::ContainerStatusRequest {
                container_id: c.id.clone(),
                verbose: false,
            })
            .await;
        if let Some(path) = status
            .ok()
            .and_then(|s| s.into_inner().status)
            .map(|s| s.log_path)
            .filter(|p| !p.is_empty())
        {
            logs.push((c.id, PathBuf::from(path)));
        }
    }
    logs
}

/// Rotates `path` of container `id` when it is larger than the policy allows.
async fn rotate_if_large(
    cri: &Cri,
    id: &str,
    path: &Path,
    policy: &LogRotation,
) -> Result<(), String> {
    let size = match tokio::fs::metadata(path).await {
        Ok(meta) => meta.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("reading its size: {e}")),
    };
    if size <= policy.max_size {
        return Ok(());
    }
    // Room for the file about to be rotated: max_files - 2 older ones stay.
    remove_oldest(path, policy.max_files.saturating_sub(2))?;
    let rotated = rotated_name(
        path,
        &chrono::Local::now().format("%Y%m%d-%H%M%S").to_string(),
    );
    if rotated.exists() {
        return Ok(()); // rotated within this second already: the next check does it
    }
    tokio::fs::rename(path, &rotated)
        .await
        .map_err(|e| format!("renaming it to {}: {e}", rotated.display()))?;
    let reopened = cri
        .rt()
        .reopen_container_log(cri::ReopenContainerLogRequest {
            container_id: id.to_owned(),
        })
        .await;
    if let Err(status) = reopened {
        // The monitor still writes to the renamed file: give it its name back.
        let _ = tokio::fs::rename(&rotated, path).await;
        return Err(format!(
            "the runtime did not reopen it: {}",
            status.message()
        ));
    }
    tracing::debug!(container = %id, log = %path.display(), size, "rotated the container log");
    Ok(())
}

/// `<path>.<stamp>`.
fn rotated_name(path: &Path, stamp: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".");
    name.push(stamp);
    PathBuf::from(name)
}

/// Removes the oldest rotated files of `path` until at most `keep` remain.
fn remove_oldest(path: &Path, keep: usize) -> Result<(), String> {
    let mut rotated = rotated_files(path)?;
    // Their names end in a sortable time stamp.
    rotated.sort();
    let excess = rotated.len().saturating_sub(keep);
    for old in rotated.into_iter().take(excess) {
        std::fs::remove_file(&old).map_err(|e| format!("removing {}: {e}", old.display()))?;
    }
    Ok(())
}

/// The rotated files of `path`: `<path>.<YYYYMMDD-HHMMSS>` beside it.
fn rotated_files(path: &Path) -> Result<Vec<PathBuf>, String> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Ok(Vec::new());
    };
    let prefix = format!("{}.", name.to_string_lossy());
    let entries = std::fs::read_dir(dir).map_err(|e| format!("listing {}: {e}", dir.display()))?;
    Ok(entries
        .flatten()
        .filter(|entry| {
            entry
                .file_name()
                .to_str()
                .and_then(|n| n.strip_prefix(&prefix))
                .is_some_and(is_stamp)
        })
        .map(|entry| entry.path())
        .collect())
}

/// Whether `s` looks like `YYYYMMDD-HHMMSS`.
fn is_stamp(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 15
        && b[8] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 8 || c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_quantities() {
        assert_eq!(parse_size("10Mi"), Ok(10 << 20));
        assert_eq!(parse_size("2Ki"), Ok(2048));
        assert_eq!(parse_size("1G"), Ok(1_000_000_000));
        assert!(parse_size("0").is_err());
        assert!(parse_size("ten").is_err());
    }

    #[test]
    fn only_the_oldest_rotated_files_go() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("0.log");
        for name in [
            "0.log",
            "0.log.20261124-010000",
            "0.log.20261124-010010",
            "0.log.20261124-010020",
            "0.log.tmp",
            "1.log.20261124-010000",
        ] {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        remove_oldest(&log, 1).unwrap();
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "0.log",
                "0.log.20261124-010020",
                "0.log.tmp",
                "1.log.20261124-010000"
            ]
        );
        assert_eq!(
            rotated_name(&log, "20261124-010030"),
            dir.path().join("0.log.20261124-010030")
        );
    }
}
