//! Pod volumes as a user checks them with kubectl against `podway up`: an emptyDir shared by
//! two containers, a memory-backed emptyDir, a read-only hostPath with a subPath, a volume type
//! podway's node refuses by name, and nothing left once the pod is gone. Needs root and runc.

mod support;

use std::time::Duration;

use support::*;

fn pods(host_dir: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: vols
spec:
  terminationGracePeriodSeconds: 1
  volumes:
    - name: shared
      emptyDir: {{}}
    - name: fast
      emptyDir:
        medium: Memory
        sizeLimit: 8Mi
    - name: host
      hostPath:
        path: {host_dir}
        type: Directory
  containers:
    - name: writer
      image: busybox:1.35
      command: [sh, -c, "echo from-writer > /out/note; sleep 3600"]
      volumeMounts:
        - name: shared
          mountPath: /out
        - name: fast
          mountPath: /fast
    - name: reader
      image: busybox:1.35
      command: [sleep, "3600"]
      volumeMounts:
        - name: shared
          mountPath: /in
          readOnly: true
        - name: host
          mountPath: /config
          subPath: app
          readOnly: true
---
apiVersion: v1
kind: Pod
metadata:
  name: cfg
spec:
  volumes:
    - name: settings
      configMap:
        name: settings
  containers:
    - name: main
      image: busybox:1.35
      command: [sleep, "3600"]
      volumeMounts:
        - name: settings
          mountPath: /etc/settings
"#
    )
}

#[test]
fn empty_dir_and_host_path_volumes() {
    let mut cluster = Cluster::start();
    let host_dir = cluster.dir.path().join("host-data");
    std::fs::create_dir_all(host_dir.join("app")).expect("host dir");
    std::fs::write(host_dir.join("app/settings.conf"), "color=blue\n").expect("host file");
    cluster.apply(&pods(host_dir.to_str().expect("utf-8 path")));
    cluster.wait_running("vols");

    // One emptyDir, seen by both containers; read-only where the mount says so.
    let note = wait_for("the writer's note", Duration::from_secs(30), || {
        let out = cluster.kubectl(&["exec", "vols", "-c", "reader", "--", "cat", "/in/note"]);
        out.status.success().then(|| stdout(&out))
    });
    assert_eq!(note, "from-writer");
    let out = cluster.kubectl(&["exec", "vols", "-c", "reader", "--", "touch", "/in/x"]);
    assert!(!out.status.success(), "a readOnly mount was writable");

    // medium: Memory is a tmpfs of the asked size.
    let mounts =
        stdout(&cluster.kubectl_ok(&["exec", "vols", "-c", "writer", "--", "cat", "/proc/mounts"]));
    let fast = mounts
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some("/fast"))
        .unwrap_or_else(|| panic!("/fast not mounted:\n{mounts}"));
    assert!(
        fast.starts_with("tmpfs") && fast.contains("size=8192k"),
        "{fast}"
    );

    // hostPath with a subPath: the host's file, read-only.
    let conf = stdout(&cluster.kubectl_ok(&[
        "exec",
        "vols",
        "-c",
        "reader",
        "--",
        "cat",
        "/config/settings.conf",
    ]));
    assert_eq!(conf, "color=blue");
    let out = cluster.kubectl(&["exec", "vols", "-c", "reader", "--", "touch", "/config/x"]);
    assert!(!out.status.success(), "a readOnly hostPath was writable");

    // A configMap volume: refused, naming the volume, as the pod's status says.
    let message = wait_for("cfg to be refused", Duration::from_secs(60), || {
        cluster.assert_running();
        let out = cluster.kubectl(&[
            "get",
            "pod",
            "cfg",
            "-o",
            "jsonpath={.status.containerStatuses[0].state.waiting.message}",
        ]);
        let text = stdout(&out);
        text.contains("volume").then_some(text)
    });
    assert!(
        message.contains("\"settings\"") && message.contains("emptyDir and hostPath"),
        "{message}"
    );

    // Deleting the pod removes its emptyDirs (and unmounts the tmpfs), never the hostPath.
    let uid =
        stdout(&cluster.kubectl_ok(&["get", "pod", "vols", "-o", "jsonpath={.metadata.uid}"]));
    let pod_dir = cluster.data_dir.join("node/pods").join(&uid);
    assert!(
        pod_dir
            .join("volumes/kubernetes.io~empty-dir/shared/note")
            .exists()
    );
    cluster.kubectl_ok(&["delete", "pod", "vols", "cfg", "--timeout=60s"]);
    wait_for("the pod's folder to go", Duration::from_secs(30), || {
        (!pod_dir.exists()).then_some(())
    });
    assert!(host_dir.join("app/settings.conf").exists());
    let (status, log) = cluster.stop();
    assert!(status.success(), "podway up failed: {log}");
    assert_eq!(cluster.mounts(), Vec::<String>::new(), "mounts left behind");
}
