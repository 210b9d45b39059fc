//! Pod volumes on the node, as the kubelet lays them out: an `emptyDir` is a folder
//! `<root>/pods/<uid>/volumes/kubernetes.io~empty-dir/<name>` (a tmpfs for `medium: Memory`)
//! that lives as long as the pod; a `hostPath` is the host's path, checked against its `type`.
//! Containers get them as CRI mounts, with `subPath` and `readOnly`. Other volume types need
//! API objects podway's API server does not serve, and are refused by name.
use std::collections::HashMap;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use k8s_cri::v1::Mount;
use k8s_openapi::api::core::v1::{Container, HostPathVolumeSource, Pod, Volume};

use super::quantity::Quantity;

/// The pod's folder below the agent's root.
fn pod_dir(root: &Path, uid: &str) -> PathBuf {
    root.join("pods").join(uid)
}

/// Makes the pod's volumes ready (idempotent: an emptyDir keeps its content across container
/// restarts) and returns where each one is on the host, by name. The error names the volume.
pub(crate) fn prepare(
    root: &Path,
    uid: &str,
    pod: &Pod,
) -> Result<HashMap<String, PathBuf>, String> {
    let volumes = pod.spec.as_ref().and_then(|s| s.volumes.as_ref());
    let mut ready = HashMap::new();
    for v in volumes.into_iter().flatten() {
        let path = prepare_one(root, uid, v).map_err(|e| format!("volume {:?}: {e}", v.name))?;
        ready.insert(v.name.clone(), path);
    }
    Ok(ready)
}

fn prepare_one(root: &Path, uid: &str, v: &Volume) -> Result<PathBuf, String> {
    if let Some(host) = &v.host_path {
        return host_path(host);
    }
    let Some(empty) = &v.empty_dir else {
        return Err("only emptyDir and hostPath volumes are supported by podway's node".into());
    };
    let dir = pod_dir(root, uid)
        .join("volumes/kubernetes.io~empty-dir")
        .join(&v.name);
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    // World-writable like the kubelet's, so a container of any user can use it.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))
        .map_err(|e| format!("chmod {}: {e}", dir.display()))?;
    match empty.medium.as_deref().unwrap_or("") {
        "" => {}
        "Memory" if !is_mount_point(&dir) => {
            let size = match &empty.size_limit {
                Some(q) => format!(
                    ",size={}",
                    Quantity::parse(&q.0)
                        .map_err(|e| format!("sizeLimit: {e}"))?
                        .value()
                ),
                None => String::new(),
            };
            nix::mount::mount(
                Some("tmpfs"),
                &dir,
                Some("tmpfs"),
                nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV,
                Some(format!("mode=0777{size}").as_str()),
            )
            .map_err(|e| format!("mounting a tmpfs on {}: {e}", dir.display()))?;
        }
        "Memory" => {}
        other => return Err(format!("emptyDir medium {other:?} is not supported")),
    }
    Ok(dir)
}

/// A hostPath after its type check (creating it for the `…OrCreate` types).
fn host_path(source: &HostPathVolumeSource) -> Result<PathBuf, String> {
    let path = PathBuf::from(&source.path);
    if !path.is_absolute() {
        return Err(format!("hostPath {:?} is not absolute", source.path));
    }
    let kind = source.type_.as_deref().unwrap_or("");
    let meta = std::fs::metadata(&path);
    let failed = |what: &str| {
        Err(format!(
            "hostPath type check failed: {} is not {what}",
            path.display()
        ))
    };
    match kind {
        "" => Ok(path),
        "DirectoryOrCreate" if meta.is_err() => {
            std::fs::create_dir_all(&path)
                .map_err(|e| format!("creating {}: {e}", path.display()))?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                .map_err(|e| format!("chmod {}: {e}", path.display()))?;
            Ok(path)
        }
        "FileOrCreate" if meta.is_err() => {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| format!("creating {}: {e}", parent.display()))?;
            }
            std::fs::File::create(&path)
                .map_err(|e| format!("creating {}: {e}", path.display()))?;
            Ok(path)
        }
        "Directory" | "DirectoryOrCreate" => match meta {
            Ok(m) if m.is_dir() => Ok(path),
            _ => failed("a directory"),
        },
        "File" | "FileOrCreate" => match meta {
            Ok(m) if m.is_file() => Ok(path),
            _ => failed("a file"),
        },
        "Socket" => match meta {
            Ok(m) if m.file_type().is_socket() => Ok(path),
            _ => failed("a socket file"),
        },
        "CharDevice" => match meta {
            Ok(m) if m.file_type().is_char_device() => Ok(path),
            _ => failed("a character device"),
        },
        "BlockDevice" => match meta {
            Ok(m) if m.file_type().is_block_device() => Ok(path),
            _ => failed("a block device"),
        },
        other => Err(format!("unknown hostPath type {other:?}")),
    }
}

/// The CRI mounts of `c`'s `volumeMounts`, from the prepared `volumes`. A `subPath` stays
/// inside its volume and is created (as a folder) when missing.
pub(crate) fn container_mounts(
    c: &Container,
    volumes: &HashMap<String, PathBuf>,
) -> Result<Vec<Mount>, String> {
    let mut mounts = Vec::new();
    for m in c.volume_mounts.iter().flatten() {
        let bad = |why: String| format!("container {:?}: volumeMount {:?}: {why}", c.name, m.name);
        let source = volumes
            .get(&m.name)
            .ok_or_else(|| bad("no volume of that name in the pod".into()))?;
        let host_path = match m.sub_path.as_deref().filter(|s| !s.is_empty()) {
            None => source.clone(),
            Some(sub) => {
                let relative = Path::new(sub);
                if !relative
                    .components()
                    .all(|c| matches!(c, Component::Normal(_)))
                {
                    return Err(bad(format!(
                        "subPath {sub:?} must be a relative path inside the volume"
                    )));
                }
                let path = source.join(relative);
                if !path.exists() {
                    std::fs::create_dir_all(&path)
                        .map_err(|e| bad(format!("creating subPath {}: {e}", path.display())))?;
                }
                path
            }
        };
        mounts.push(Mount {
            container_path: m.mount_path.clone(),
            host_path: host_path.to_string_lossy().into_owned(),
            readonly: m.read_only.unwrap_or(false),
            ..Default::default()
        });
    }
    Ok(mounts)
}

/// Removes the pod's folder (its emptyDirs, unmounting tmpfs ones first) once the pod is gone.
pub(crate) fn remove(root: &Path, uid: &str) {
    let dir = pod_dir(root, uid);
    let empty_dirs = dir.join("volumes/kubernetes.io~empty-dir");
    for entry in std::fs::read_dir(&empty_dirs)
        .into_iter()
        .flatten()
        .flatten()
    {
        let path = entry.path();
        if is_mount_point(&path)
            && let Err(e) = nix::mount::umount2(&path, nix::mount::MntFlags::MNT_DETACH)
        {
            tracing::warn!(volume = %path.display(), error = %e, "cannot unmount an emptyDir");
        }
    }
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot remove the pod's folder")
        }
    }
}

/// Whether `path` is a mount point (its device differs from its parent's).
fn is_mount_point(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let dev = |p: &Path| std::fs::metadata(p).map(|m| m.dev()).ok();
    match (dev(path), path.parent().and_then(dev)) {
        (Some(own), Some(parent)) => own != parent,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(yaml: &str) -> Pod {
        serde_yaml::from_str(yaml).expect("pod yaml")
    }

    #[test]
    fn empty_dirs_and_host_paths_become_mounts() {
        let root = tempfile::tempdir().expect("temp dir");
        let host = root.path().join("host-data");
        let p = pod(&format!(
            "spec: {{volumes: [{{name: scratch, emptyDir: {{}}}}, {{name: data, hostPath: {{path: {}, type: DirectoryOrCreate}}}}],
              containers: [{{name: a, volumeMounts: [{{name: scratch, mountPath: /scratch}},
                {{name: data, mountPath: /data, readOnly: true, subPath: sub/dir}}]}}]}}",
            host.display()
        ));
        let volumes = prepare(root.path(), "u1", &p).expect("volumes");
        let scratch = root
            .path()
            .join("pods/u1/volumes/kubernetes.io~empty-dir/scratch");
        assert_eq!(volumes["scratch"], scratch);
        assert!(scratch.is_dir() && host.is_dir());
        let c = &p.spec.as_ref().expect("spec").containers[0];
        let mounts = container_mounts(c, &volumes).expect("mounts");
        assert_eq!(mounts.len(), 2);
        assert_eq!(
            (mounts[0].container_path.as_str(), mounts[0].readonly),
            ("/scratch", false)
        );
        assert_eq!(PathBuf::from(&mounts[1].host_path), host.join("sub/dir"));
        assert!(mounts[1].readonly && host.join("sub/dir").is_dir());
        remove(root.path(), "u1");
        assert!(!root.path().join("pods/u1").exists());
        assert!(host.exists(), "a hostPath is the host's, never removed");
    }

    #[test]
    fn bad_volumes_are_named() {
        let root = tempfile::tempdir().expect("temp dir");
        let missing = pod(
            "spec: {volumes: [{name: v, hostPath: {path: /nonexistent/podway, type: Directory}}], containers: [{name: a}]}",
        );
        let err = prepare(root.path(), "u", &missing).expect_err("type check");
        assert!(
            err.contains("\"v\"") && err.contains("is not a directory"),
            "{err}"
        );
        let config =
            pod("spec: {volumes: [{name: cfg, configMap: {name: x}}], containers: [{name: a}]}");
        let err = prepare(root.path(), "u", &config).expect_err("configMap");
        assert!(
            err.contains("\"cfg\"") && err.contains("emptyDir and hostPath"),
            "{err}"
        );
        let escape = pod(
            "spec: {volumes: [{name: v, emptyDir: {}}], containers: [{name: a, volumeMounts: [{name: v, mountPath: /m, subPath: ../../etc}]}]}",
        );
        let volumes = prepare(root.path(), "u", &escape).expect("volumes");
        let c = &escape.spec.as_ref().expect("spec").containers[0];
        let err = container_mounts(c, &volumes).expect_err("escape");
        assert!(err.contains("subPath"), "{err}");
        let unknown =
            pod("spec: {containers: [{name: a, volumeMounts: [{name: nope, mountPath: /m}]}]}");
        let c = &unknown.spec.as_ref().expect("spec").containers[0];
        let err = container_mounts(c, &HashMap::new()).expect_err("unknown");
        assert!(err.contains("\"nope\""), "{err}");
    }
}
