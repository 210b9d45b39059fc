//! Drives the API server with the real kubectl 1.32 (over HTTPS with client certificates).

mod common;

use std::path::PathBuf;
use std::process::Stdio;

use common::{CALL_LIMIT, Cluster};
use tokio::io::{AsyncBufReadExt, BufReader};

const POD: &str = "apiVersion: v1
kind: Pod
metadata:
  name: web
  labels:
    app: demo
spec:
  containers:
  - name: main
    image: busybox:1.36
    command: [sleep, '3600']
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_manages_pods_and_namespaces() {
    let c = Cluster::start().await;

    let version = c.ok(&["version", "-o", "json"]).await;
    assert!(version.contains("\"gitVersion\": \"v1.32.0\""), "{version}");

    let pod = c.write("pod.yaml", POD);
    assert_eq!(c.ok(&["apply", "-f", &pod]).await.trim(), "pod/web created");

    let table = c.ok(&["get", "pods"]).await;
    let mut lines = table.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(header, ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]);
    let row: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(row[..4], ["web", "0/1", "Pending", "0"]);

    let wide = c.ok(&["get", "pods", "-o", "wide"]).await;
    assert!(
        wide.lines()
            .next()
            .is_some_and(|h| h.contains("IP") && h.contains("NODE")),
        "{wide}"
    );

    let json: serde_json::Value =
        serde_json::from_str(&c.ok(&["get", "pod", "web", "-o", "json"]).await).expect("pod json");
    assert_eq!(json["status"]["phase"], "Pending");
    assert_eq!(json["spec"]["restartPolicy"], "Always");
    assert_eq!(json["spec"]["terminationGracePeriodSeconds"], 30);
    assert_eq!(
        json["spec"]["containers"][0]["imagePullPolicy"],
        "IfNotPresent"
    );
    assert_eq!(json["metadata"]["namespace"], "default");
    assert!(
        json["metadata"]["uid"]
            .as_str()
            .is_some_and(|u| !u.is_empty())
    );
    assert!(
        json["metadata"]["resourceVersion"]
            .as_str()
            .is_some_and(|r| !r.is_empty())
    );

    // apply of a changed manifest goes through a strategic merge patch.
    let changed = c.write("pod2.yaml", &POD.replace("app: demo", "app: demo2"));
    assert_eq!(
        c.ok(&["apply", "-f", &changed]).await.trim(),
        "pod/web configured"
    );
    let app = c
        .ok(&["get", "pod", "web", "-o", "jsonpath={.metadata.labels.app}"])
        .await;
    assert_eq!(app, "demo2");

    // JSON patch, describe, get all, set image; other spec changes are forbidden.
    let json_patch = r#"[{"op":"add","path":"/metadata/annotations","value":{"note":"x"}}]"#;
    assert_eq!(
        c.ok(&["patch", "pod", "web", "--type=json", "-p", json_patch])
            .await
            .trim(),
        "pod/web patched"
    );
    let describe = c.ok(&["describe", "pod", "web"]).await;
    assert!(
        describe.contains("busybox:1.36") && describe.contains("note: x"),
        "{describe}"
    );
    let all = c.ok(&["get", "all"]).await;
    assert!(
        all.lines()
            .any(|l| l.starts_with("web ") || l.starts_with("pod/web ")),
        "{all}"
    );
    assert_eq!(
        c.ok(&["set", "image", "pod/web", "main=busybox:1.37"])
            .await
            .trim(),
        "pod/web image updated"
    );
    let rename = r#"[{"op":"replace","path":"/spec/containers/0/name","value":"other"}]"#;
    let out = c
        .kubectl(&["patch", "pod", "web", "--type=json", "-p", rename])
        .await;
    assert!(
        !out.ok && out.stderr.contains("pod updates may not change fields"),
        "{}",
        out.stderr
    );

    // get -w: the initial row, then a row for the change.
    let mut watch = c
        .command(
            &c.kubeconfig,
            &["get", "pods", "-w", "--output-watch-events"],
        )
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn get -w");
    let mut out = BufReader::new(watch.stdout.take().expect("stdout")).lines();
    let mut seen = Vec::new();
    let read = async {
        while let Ok(Some(line)) = out.next_line().await {
            seen.push(line);
            if seen.len() == 2 {
                assert_eq!(
                    c.ok(&[
                        "patch",
                        "pod",
                        "web",
                        "--type=merge",
                        "-p",
                        r#"{"metadata":{"labels":{"tier":"fe"}}}"#
                    ])
                    .await
                    .trim(),
                    "pod/web patched"
                );
            }
            if seen.len() == 3 {
                break;
            }
        }
    };
    tokio::time::timeout(CALL_LIMIT, read)
        .await
        .expect("watch output");
    let _ = watch.kill().await;
    assert!(
        seen[0]
            .split_whitespace()
            .eq(["EVENT", "NAME", "READY", "STATUS", "RESTARTS", "AGE"]),
        "{seen:?}"
    );
    assert!(
        seen[1].starts_with("ADDED") && seen[1].contains("web"),
        "{seen:?}"
    );
    assert!(
        seen[2].starts_with("MODIFIED") && seen[2].contains("web"),
        "{seen:?}"
    );

    // Validation errors name the field.
    let bad = c.write(
        "bad.yaml",
        &POD.replace("name: web", "name: bad")
            .replace("    image: busybox:1.36\n", ""),
    );
    let out = c.kubectl(&["apply", "-f", &bad]).await;
    assert!(!out.ok);
    assert!(
        out.stderr
            .contains("spec.containers[0].image: Required value"),
        "{}",
        out.stderr
    );

    // Server-side apply creates, then updates.
    let ssa = c.write("ssa.yaml", &POD.replace("name: web", "name: ssa"));
    assert_eq!(
        c.ok(&["apply", "--server-side", "-f", &ssa]).await.trim(),
        "pod/ssa serverside-applied"
    );
    let ssa2 = c.write(
        "ssa2.yaml",
        &POD.replace("name: web", "name: ssa")
            .replace("app: demo", "app: ssa"),
    );
    assert_eq!(
        c.ok(&["apply", "--server-side", "-f", &ssa2]).await.trim(),
        "pod/ssa serverside-applied"
    );
    let app = c
        .ok(&["get", "pod", "ssa", "-o", "jsonpath={.metadata.labels.app}"])
        .await;
    assert_eq!(app, "ssa");
    c.ok(&["delete", "pod", "ssa"]).await;

    // Server dry runs change nothing.
    let dry = c.write("dry.yaml", &POD.replace("app: demo", "app: dry"));
    c.ok(&["apply", "--dry-run=server", "-f", &dry]).await;
    c.ok(&["delete", "pod", "web", "--dry-run=server"]).await;
    let app = c
        .ok(&["get", "pod", "web", "-o", "jsonpath={.metadata.labels.app}"])
        .await;
    assert_eq!(app, "demo2");

    // An unscheduled pod is deleted at once.
    assert_eq!(
        c.ok(&["delete", "pod", "web"]).await.trim(),
        "pod \"web\" deleted"
    );
    let out = c.kubectl(&["get", "pod", "web"]).await;
    assert!(
        !out.ok && out.stderr.contains("pods \"web\" not found"),
        "{}",
        out.stderr
    );

    assert_eq!(
        c.ok(&["create", "namespace", "team"]).await.trim(),
        "namespace/team created"
    );
    let ns = c.ok(&["get", "namespaces"]).await;
    assert!(
        ns.lines()
            .any(|l| l.split_whitespace().take(2).eq(["team", "Active"])),
        "{ns}"
    );
    assert!(ns.lines().any(|l| l.starts_with("kube-system")), "{ns}");
    let out = c.kubectl(&["create", "namespace", "team"]).await;
    assert!(
        out.stderr.contains("namespaces \"team\" already exists"),
        "{}",
        out.stderr
    );
    // run, label, replace in the new namespace; deleting the namespace takes its pods along.
    let run = c
        .ok(&[
            "run",
            "job1",
            "-n",
            "team",
            "--image=busybox",
            "--restart=Never",
        ])
        .await;
    assert_eq!(run.trim(), "pod/job1 created");
    let policy = c
        .ok(&[
            "get",
            "pod",
            "job1",
            "-n",
            "team",
            "-o",
            "jsonpath={.spec.containers[0].imagePullPolicy}",
        ])
        .await;
    assert_eq!(policy, "Always");
    assert_eq!(
        c.ok(&["label", "pod", "job1", "-n", "team", "x=y"])
            .await
            .trim(),
        "pod/job1 labeled"
    );
    let current = c
        .ok(&["get", "pod", "job1", "-n", "team", "-o", "json"])
        .await;
    let replaced = c.write(
        "job1.json",
        &current.replace("\"x\": \"y\"", "\"x\": \"z\""),
    );
    assert_eq!(
        c.ok(&["replace", "-f", &replaced]).await.trim(),
        "pod/job1 replaced"
    );
    let out = c.kubectl(&["replace", "-f", &replaced]).await;
    assert!(
        !out.ok && out.stderr.contains("the object has been modified"),
        "{}",
        out.stderr
    );
    assert_eq!(
        c.ok(&["delete", "namespace", "team"]).await.trim(),
        "namespace \"team\" deleted"
    );
    let out = c
        .kubectl(&["get", "pods", "-n", "team", "-o", "name"])
        .await;
    assert!(
        out.ok && out.stdout.is_empty(),
        "{} {}",
        out.stdout,
        out.stderr
    );
    let out = c.kubectl(&["get", "namespace", "team"]).await;
    assert!(
        !out.ok && out.stderr.contains("namespaces \"team\" not found"),
        "{}",
        out.stderr
    );
    let out = c.kubectl(&["delete", "namespace", "default"]).await;
    assert!(
        !out.ok && out.stderr.contains("this namespace may not be deleted"),
        "{}",
        out.stderr
    );
}

const NODE: &str = r#"{"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_are_scheduled_to_ready_nodes_and_deleted_gracefully() {
    let c = Cluster::start().await;
    let pod = c.write("pod.yaml", POD);
    c.ok(&["apply", "-f", &pod]).await;

    // Logs of an unscheduled pod are empty; exec needs a host.
    assert_eq!(c.ok(&["logs", "web"]).await, "");
    let out = c.kubectl(&["exec", "web", "--", "true"]).await;
    assert!(
        !out.ok && out.stderr.contains("pod web does not have a host assigned"),
        "{}",
        out.stderr
    );

    let node = c.write("node.json", NODE);
    assert_eq!(
        c.ok(&["create", "-f", &node]).await.trim(),
        "node/n1 created"
    );
    let nodes = c.ok(&["get", "nodes"]).await;
    assert!(
        nodes
            .lines()
            .any(|l| l.split_whitespace().take(2).eq(["n1", "Unknown"])),
        "{nodes}"
    );
    let phase = c
        .ok(&["get", "pod", "web", "-o", "jsonpath={.spec.nodeName}"])
        .await;
    assert_eq!(phase, "", "no Ready node yet");

    // The node reports Ready through the status subresource, as the node agent does.
    let status = r#"{"status":{"conditions":[{"type":"Ready","status":"True","reason":"KubeletReady"}],
        "addresses":[{"type":"InternalIP","address":"127.0.0.1"}],
        "daemonEndpoints":{"kubeletEndpoint":{"Port":1}}}}"#;
    let out = c
        .run_as(
            &c.node_kubeconfig,
            &[
                "patch",
                "node",
                "n1",
                "--subresource=status",
                "--type=merge",
                "-p",
                status,
            ],
        )
        .await;
    assert!(out.ok, "{}", out.stderr);
    let nodes = c.ok(&["get", "nodes"]).await;
    assert!(
        nodes
            .lines()
            .any(|l| l.split_whitespace().take(2).eq(["n1", "Ready"])),
        "{nodes}"
    );

    c.ok(&[
        "wait",
        "--for=jsonpath={.spec.nodeName}=n1",
        "pod/web",
        "--timeout=60s",
    ])
    .await;

    // Streaming now reaches for the kubelet (nothing listens on port 1: a dial error).
    let out = c.kubectl(&["logs", "web"]).await;
    assert!(
        !out.ok && out.stderr.contains("error dialing kubelet of node n1"),
        "{}",
        out.stderr
    );

    // Deleting a scheduled pod only marks it until the node confirms with grace 0.
    c.ok(&["delete", "pod", "web", "--wait=false"]).await;
    let ts = c
        .ok(&[
            "get",
            "pod",
            "web",
            "-o",
            "jsonpath={.metadata.deletionTimestamp}",
        ])
        .await;
    assert!(!ts.is_empty());
    let table = c.ok(&["get", "pods"]).await;
    assert!(
        table
            .lines()
            .any(|l| l.contains("web") && l.contains("Terminating")),
        "{table}"
    );
    let out = c
        .run_as(
            &c.node_kubeconfig,
            &["delete", "pod", "web", "--grace-period=0", "--force"],
        )
        .await;
    assert!(out.ok, "{}", out.stderr);
    let out = c.kubectl(&["get", "pod", "web"]).await;
    assert!(
        !out.ok && out.stderr.contains("pods \"web\" not found"),
        "{}",
        out.stderr
    );

    // A terminating pod whose node is gone is removed by the API server.
    let second = c.write("pod2.yaml", &POD.replace("name: web", "name: web2"));
    c.ok(&["apply", "-f", &second]).await;
    c.ok(&[
        "wait",
        "--for=jsonpath={.spec.nodeName}=n1",
        "pod/web2",
        "--timeout=60s",
    ])
    .await;
    c.ok(&["delete", "pod", "web2", "--wait=false"]).await;
    assert_eq!(
        c.ok(&["delete", "node", "n1"]).await.trim(),
        "node \"n1\" deleted"
    );
    c.ok(&["wait", "--for=delete", "pod/web2", "--timeout=60s"])
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_a_client_certificate_are_unauthorized() {
    let c = Cluster::start().await;
    let config = std::fs::read_to_string(&c.kubeconfig).expect("kubeconfig");
    // No client certificate; a token the server does not accept (kubectl would otherwise prompt).
    let anonymous: String = config
        .lines()
        .filter(|l| !l.contains("client-key-data"))
        .map(|l| match l.split_once("client-certificate-data") {
            Some((indent, _)) => format!("{indent}token: not-a-valid-token\n"),
            None => format!("{l}\n"),
        })
        .collect();
    let path = PathBuf::from(c.write("anon.kubeconfig", &anonymous));
    let out = c.run_as(&path, &["get", "--raw", "/version"]).await;
    assert!(out.ok && out.stdout.contains("v1.32.0"), "{}", out.stderr);
    let out = c
        .run_as(&path, &["get", "--raw", "/api/v1/namespaces"])
        .await;
    assert!(
        !out.ok && out.stderr.contains("Unauthorized"),
        "{}",
        out.stderr
    );
}
