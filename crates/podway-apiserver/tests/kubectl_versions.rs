//! Every kubectl on this machine (1.27–1.33, and Debian's 1.20 when installed) can apply, list,
//! label and delete pods against the API server, and the PATH dispatcher picks kubectl 1.32.

mod common;

use std::path::{Path, PathBuf};

use common::Cluster;
use tokio::process::Command;

fn clients() -> Vec<PathBuf> {
    let mut clients: Vec<PathBuf> = (27..=33)
        .map(|minor| PathBuf::from(format!("/usr/lib/google-cloud-sdk/bin/kubectl.1.{minor}")))
        .collect();
    let debian = PathBuf::from("/opt/podway/kubectl-1.20/usr/bin/kubectl");
    if debian.exists() {
        clients.push(debian);
    }
    clients
}

async fn run(c: &Cluster, kubectl: &Path, args: &[&str]) -> (bool, String, String) {
    let out = tokio::time::timeout(
        common::CALL_LIMIT,
        Command::new(kubectl)
            .arg("--kubeconfig")
            .arg(&c.kubeconfig)
            .args(args)
            .env("HOME", c.dir.path())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap_or_else(|_| panic!("{} {args:?} hung", kubectl.display()))
    .expect("run kubectl");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kubectl_version_manages_pods() {
    let c = Cluster::start().await;
    for kubectl in clients() {
        let who = kubectl.display().to_string();
        assert!(kubectl.exists(), "{who} is missing");
        let manifest = c.write(
            "pod.yaml",
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: v\nspec:\n  containers:\n  - name: main\n    image: busybox:1.36\n",
        );
        // Default validation: OpenAPI v3 (≥ 1.29) or the protobuf OpenAPI v2 document.
        let (ok, out, err) = run(&c, &kubectl, &["apply", "-f", manifest.as_str()]).await;
        assert!(ok && out.trim() == "pod/v created", "{who}: {out} {err}");
        let (ok, out, err) = run(&c, &kubectl, &["get", "pods"]).await;
        let row: Vec<&str> = out
            .lines()
            .nth(1)
            .unwrap_or_default()
            .split_whitespace()
            .collect();
        assert!(
            ok && row[..3] == ["v", "0/1", "Pending"],
            "{who}: {out} {err}"
        );
        let (ok, out, err) = run(&c, &kubectl, &["label", "pod", "v", "x=y"]).await;
        assert!(ok && out.trim() == "pod/v labeled", "{who}: {out} {err}");
        let (ok, out, err) = run(&c, &kubectl, &["delete", "pod", "v"]).await;
        assert!(
            ok && out.trim() == "pod \"v\" deleted",
            "{who}: {out} {err}"
        );
    }

    // The dispatcher on PATH asks /version and runs the matching kubectl (1.32).
    let (ok, out, err) = run(
        &c,
        Path::new("kubectl"),
        &["version", "--client=false", "-o", "json"],
    )
    .await;
    assert!(
        ok && out.contains("\"gitVersion\": \"v1.32.0\""),
        "{out} {err}"
    );
    let client_version = out.split("\"clientVersion\"").nth(1).unwrap_or_default();
    assert!(client_version.contains("\"minor\": \"32\""), "{out}");
}
