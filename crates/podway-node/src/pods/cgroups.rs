//! Pod-level cgroups, laid out as the kubelet's cgroupfs driver does: `/kubepods/pod<uid>` for
//! Guaranteed pods, `/kubepods/burstable/pod<uid>` and `/kubepods/besteffort/pod<uid>`.
//!
//! The path goes to the runtime as `LinuxPodSandboxConfig.cgroup_parent`. containerd needs one:
//! without it, runc derives the container's cgroup from its own, and on a cgroup v1 host that
//! lists a v2 entry it has no mount for ("0::/") it fails with "no cgroup mount found in
//! mountinfo". The runtime creates the container cgroups below the parent and removes only
//! those, so the agent removes the pod's own folder once the sandbox is gone, as the kubelet does.
use std::path::Path;

use k8s_openapi::api::core::v1::Pod;

use super::linux::QosClass;

/// Where cgroup hierarchies are mounted.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// The pod's QoS class folder below `/kubepods` ("" for Guaranteed).
fn qos_folder(pod: &Pod) -> &'static str {
    match QosClass::of(pod) {
        QosClass::Guaranteed => "",
        QosClass::Burstable => "burstable/",
        QosClass::BestEffort => "besteffort/",
    }
}

/// The pod's cgroup parent, `/kubepods/[<qos>/]pod<uid>`.
pub(crate) fn pod_cgroup_parent(pod: &Pod, uid: &str) -> String {
    format!("/kubepods/{}pod{uid}", qos_folder(pod))
}

/// Removes the pod's cgroup folders (every QoS layout, every hierarchy) once its containers are
/// gone. A folder still holding processes or children stays, and says why in the log.
pub(crate) fn remove_pod_cgroups(uid: &str) {
    remove_pod_cgroups_under(Path::new(CGROUP_ROOT), uid);
}

fn remove_pod_cgroups_under(root: &Path, uid: &str) {
    let Ok(hierarchies) = std::fs::read_dir(root) else {
        return;
    };
    // cgroup v1 mounts one hierarchy per folder of the root; v2 is the root itself.
    let mut bases: Vec<std::path::PathBuf> = hierarchies
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("kubepods").is_dir())
        .collect();
    if root.join("kubepods").is_dir() {
        bases.push(root.to_path_buf());
    }
    for base in bases {
        for qos in ["", "burstable/", "besteffort/"] {
            let dir = base.join(format!("kubepods/{qos}pod{uid}"));
            match std::fs::remove_dir(&dir) {
                Ok(()) => tracing::debug!(cgroup = %dir.display(), "removed the pod cgroup"),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(cgroup = %dir.display(), error = %e, "cannot remove the pod cgroup")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(yaml: &str) -> Pod {
        serde_yaml::from_str(yaml).expect("pod yaml")
    }

    #[test]
    fn qos_classes() {
        let best_effort = pod("spec: {containers: [{name: a}]}");
        assert_eq!(
            pod_cgroup_parent(&best_effort, "u1"),
            "/kubepods/besteffort/podu1"
        );
        let burstable = pod("spec: {containers: [{name: a, resources: {requests: {cpu: 100m}}}]}");
        assert_eq!(
            pod_cgroup_parent(&burstable, "u1"),
            "/kubepods/burstable/podu1"
        );
        let guaranteed =
            pod("spec: {containers: [{name: a, resources: {limits: {cpu: '1', memory: 1Gi}}}]}");
        assert_eq!(pod_cgroup_parent(&guaranteed, "u1"), "/kubepods/podu1");
        let reported = pod("{spec: {containers: [{name: a}]}, status: {qosClass: Burstable}}");
        assert_eq!(
            pod_cgroup_parent(&reported, "u1"),
            "/kubepods/burstable/podu1"
        );
    }

    #[test]
    fn removes_only_empty_pod_folders() {
        let root = tempfile::tempdir().expect("temp dir");
        let pod_dir = root.path().join("memory/kubepods/besteffort/podu1");
        std::fs::create_dir_all(&pod_dir).expect("pod dir");
        let busy = root.path().join("cpu/kubepods/burstable/podu1/container");
        std::fs::create_dir_all(&busy).expect("busy dir");
        remove_pod_cgroups_under(root.path(), "u1");
        assert!(!pod_dir.exists());
        assert!(busy.exists(), "a folder with children stays");
        assert!(root.path().join("memory/kubepods/besteffort").exists());
    }
}
