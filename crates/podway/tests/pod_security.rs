//! A pod's security context and resources, as a user checks them with kubectl against
//! `podway up`: the user and groups `id` shows, no_new_privs, the seccomp filter and dropped
//! capabilities in `/proc/1/status`, the CPU and memory limits in the container's cgroup, the
//! QoS OOM score, `runAsNonRoot` refusing an image that runs as root, a pod sharing one PID
//! namespace and a pod on the host's network. Needs root and runc.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use support::*;

const PODS: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: locked
spec:
  terminationGracePeriodSeconds: 1
  securityContext:
    runAsUser: 1000
    runAsGroup: 3000
    fsGroup: 2000
    seccompProfile:
      type: RuntimeDefault
  containers:
    - name: main
      image: busybox:1.35
      command: [sleep, "3600"]
      securityContext:
        allowPrivilegeEscalation: false
        capabilities:
          drop: [ALL]
      resources:
        limits:
          cpu: 250m
          memory: 48Mi
---
apiVersion: v1
kind: Pod
metadata:
  name: nonroot
spec:
  terminationGracePeriodSeconds: 1
  securityContext:
    runAsNonRoot: true
  containers:
    - name: main
      image: busybox:1.35
      command: [sleep, "3600"]
---
apiVersion: v1
kind: Pod
metadata:
  name: shared
spec:
  terminationGracePeriodSeconds: 1
  shareProcessNamespace: true
  containers:
    - name: a
      image: busybox:1.35
      command: [sleep, "3600"]
    - name: b
      image: busybox:1.35
      command: [sleep, "3601"]
---
apiVersion: v1
kind: Pod
metadata:
  name: hostnet
spec:
  terminationGracePeriodSeconds: 1
  hostNetwork: true
  containers:
    - name: main
      image: busybox:1.35
      command: [sleep, "3600"]
"#;

/// A field of `/proc/1/status` in the pod, read with `kubectl exec`.
fn status_field(cluster: &Cluster, pod: &str, field: &str) -> String {
    let status = stdout(&cluster.kubectl_ok(&["exec", pod, "--", "cat", "/proc/1/status"]));
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.strip_prefix(':'))
        .unwrap_or_else(|| panic!("no {field} in {status}"))
        .trim()
        .to_owned()
}

/// A file of the container's cgroup (v1 `controller/name`, else v2 `v2_name`).
fn cgroup_file(container_id: &str, controller: &str, name: &str, v2_name: &str) -> String {
    let root = PathBuf::from("/sys/fs/cgroup");
    let path = if root.join("cgroup.controllers").exists() {
        root.join("podway").join(container_id).join(v2_name)
    } else {
        root.join(controller)
            .join("podway")
            .join(container_id)
            .join(name)
    };
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .to_owned()
}

/// Whether this process (and so `podway up`, its child) holds `CAP_SYS_RESOURCE`.
fn may_lower_oom_score() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").expect("own status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|mask| mask & (1 << 24) != 0)
}

#[test]
fn security_context_and_limits_reach_the_container() {
    let mut cluster = Cluster::start();
    cluster.apply(PODS);
    cluster.wait_running("locked");

    // The user, the group and the fsGroup as a supplemental group.
    let id = stdout(&cluster.kubectl_ok(&["exec", "locked", "--", "id"]));
    assert!(id.starts_with("uid=1000 gid=3000"), "{id}");
    assert!(id.contains("2000"), "fsGroup missing from the groups: {id}");

    // allowPrivilegeEscalation: false, RuntimeDefault seccomp, every capability dropped.
    assert_eq!(status_field(&cluster, "locked", "NoNewPrivs"), "1");
    assert_eq!(status_field(&cluster, "locked", "Seccomp"), "2");
    assert_eq!(
        status_field(&cluster, "locked", "CapEff"),
        "0000000000000000"
    );
    let out = cluster.kubectl(&["exec", "locked", "--", "unshare", "-U", "true"]);
    assert!(
        !out.status.success(),
        "the default filter let a user namespace through"
    );

    // Limits only: requests default to them, so a Guaranteed pod, with the CFS quota and memory limit of its container.
    let qos =
        stdout(&cluster.kubectl_ok(&["get", "pod", "locked", "-o", "jsonpath={.status.qosClass}"]));
    assert_eq!(qos, "Guaranteed");
    // Guaranteed is -997, unless the runtime may not go below its own score (no
    // CAP_SYS_RESOURCE, as on some CI machines): then it stays at the runtime's.
    assert_eq!(
        stdout(&cluster.kubectl_ok(&["exec", "locked", "--", "cat", "/proc/1/oom_score_adj"])),
        if may_lower_oom_score() {
            "-997".to_owned()
        } else {
            std::fs::read_to_string("/proc/self/oom_score_adj")
                .expect("own oom_score_adj")
                .trim()
                .to_owned()
        }
    );
    let container_id = cluster.container_id("locked");
    assert_eq!(
        cgroup_file(
            &container_id,
            "memory",
            "memory.limit_in_bytes",
            "memory.max"
        ),
        (48 << 20).to_string()
    );
    let quota = cgroup_file(&container_id, "cpu", "cpu.cfs_quota_us", "cpu.max");
    assert!(quota.starts_with("25000"), "{quota}");

    // runAsNonRoot with an image that runs as root: the container is never created, and the
    // pod says why, as the kubelet would.
    let (reason, message) = wait_for("nonroot to be refused", Duration::from_secs(60), || {
        cluster.assert_running();
        let out = cluster.kubectl(&[
            "get",
            "pod",
            "nonroot",
            "-o",
            "jsonpath={.status.containerStatuses[0].state.waiting.reason}|{.status.containerStatuses[0].state.waiting.message}",
        ]);
        let text = stdout(&out);
        let (reason, message) = text.split_once('|')?;
        (reason == "CreateContainerConfigError").then(|| (reason.to_owned(), message.to_owned()))
    });
    assert!(
        message.contains("runAsNonRoot and image will run as root"),
        "{reason}: {message}"
    );

    // shareProcessNamespace: one PID namespace for the pod, whose PID 1 is the pause process;
    // each container sees the other's processes.
    for pod in ["shared", "hostnet"] {
        cluster.wait_running(pod);
    }
    let init =
        stdout(&cluster.kubectl_ok(&["exec", "shared", "-c", "a", "--", "cat", "/proc/1/cmdline"]));
    assert!(init.contains("pause"), "PID 1 of a shared pod is {init:?}");
    let ps = stdout(&cluster.kubectl_ok(&["exec", "shared", "-c", "a", "--", "ps"]));
    assert!(
        ps.contains("sleep 3601"),
        "container a doesn't see b's process:\n{ps}"
    );
    let init = stdout(&cluster.kubectl_ok(&["exec", "locked", "--", "cat", "/proc/1/cmdline"]));
    assert!(
        init.starts_with("sleep"),
        "a container of its own PID namespace is its PID 1: {init:?}"
    );

    // hostNetwork: the container is in the host's network namespace.
    let theirs =
        stdout(&cluster.kubectl_ok(&["exec", "hostnet", "--", "readlink", "/proc/1/ns/net"]));
    let ours = std::fs::read_link("/proc/self/ns/net").expect("own net namespace");
    assert_eq!(theirs, ours.to_string_lossy());

    cluster.kubectl_ok(&[
        "delete",
        "pod",
        "locked",
        "nonroot",
        "shared",
        "hostnet",
        "--timeout=60s",
    ]);
    let (status, log) = cluster.stop();
    assert!(status.success(), "podway up failed: {log}");
    assert_eq!(cluster.processes(), Vec::new(), "processes left behind");
    assert_eq!(cluster.mounts(), Vec::<String>::new(), "mounts left behind");
}
