//! kube-rs (the client the node agent uses) against the API server: typed CRUD, merge, strategic,
//! apply and status patches, conflicts and errors, and a watcher that sees changes and deletions.

mod common;

use common::Cluster;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::watcher;
use serde_json::json;

async fn client(c: &Cluster) -> kube::Client {
    let kubeconfig = Kubeconfig::read_from(&c.node_kubeconfig).expect("read kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("client config");
    kube::Client::try_from(config).expect("client")
}

fn pod(name: &str) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "kube-rs"}},
        "spec": {"containers": [{"name": "main", "image": "busybox:1.36"}]}
    }))
    .expect("pod")
}

fn api_code(err: kube::Error) -> u16 {
    match err {
        kube::Error::Api(status) => status.code,
        other => panic!("expected an API error, got {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_rs_crud_patch_and_watch() {
    let c = Cluster::start().await;
    let client = client(&c).await;

    let namespaces: Api<Namespace> = Api::all(client.clone());
    let names: Vec<String> = namespaces
        .list(&ListParams::default())
        .await
        .expect("list namespaces")
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    assert_eq!(names, ["default", "kube-system"]);

    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let created = pods
        .create(&PostParams::default(), &pod("a"))
        .await
        .expect("create");
    assert_eq!(
        created.status.and_then(|s| s.phase).as_deref(),
        Some("Pending")
    );
    assert_eq!(
        api_code(
            pods.create(&PostParams::default(), &pod("a"))
                .await
                .expect_err("dup")
        ),
        409
    );
    assert_eq!(
        api_code(pods.get("missing").await.expect_err("missing")),
        404
    );

    // A watcher (list, then watch from the list's resourceVersion) sees a change.
    let mut events = watcher(
        pods.clone(),
        watcher::Config::default().labels("app=kube-rs"),
    )
    .boxed();
    loop {
        match events.try_next().await.expect("watch event") {
            Some(watcher::Event::InitDone) => break,
            Some(_) => {}
            None => panic!("watch ended"),
        }
    }

    let merge = Patch::Merge(json!({"metadata": {"labels": {"step": "merge"}}}));
    pods.patch("a", &PatchParams::default(), &merge)
        .await
        .expect("merge patch");
    let strategic = Patch::Strategic(json!({"metadata": {"annotations": {"k": "v"}}}));
    pods.patch("a", &PatchParams::default(), &strategic)
        .await
        .expect("strategic patch");
    let apply = Patch::Apply(
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "b",
        "labels": {"app": "kube-rs"}}, "spec": {"containers": [{"name": "main", "image": "busybox"}]}}),
    );
    let b = pods
        .patch("b", &PatchParams::apply("test").force(), &apply)
        .await
        .expect("apply creates");
    assert_eq!(
        b.spec.map(|s| s.containers[0].image_pull_policy.clone()),
        Some(Some("Always".into()))
    );
    let status = Patch::Merge(json!({"status": {"phase": "Running"}}));
    let a = pods
        .patch_status("a", &PatchParams::default(), &status)
        .await
        .expect("status patch");
    assert_eq!(a.status.and_then(|s| s.phase).as_deref(), Some("Running"));

    // A stale resourceVersion is a conflict.
    let mut stale = pods.get("a").await.expect("get");
    stale.metadata.resource_version = Some("1".into());
    assert_eq!(
        api_code(
            pods.replace("a", &PostParams::default(), &stale)
                .await
                .expect_err("stale")
        ),
        409
    );

    pods.delete("a", &DeleteParams::default())
        .await
        .expect("delete");
    let mut seen_b = false;
    let mut seen_annotation = false;
    loop {
        match events.next().await {
            Some(Ok(watcher::Event::Apply(p))) => {
                let name = p.metadata.name.clone().unwrap_or_default();
                seen_b |= name == "b";
                seen_annotation |= p.metadata.annotations.is_some_and(|a| a.contains_key("k"));
            }
            Some(Ok(watcher::Event::Delete(p))) => {
                assert_eq!(p.metadata.name.as_deref(), Some("a"));
                break;
            }
            Some(Ok(_)) => {}
            other => panic!("watch failed: {other:?}"),
        }
    }
    assert!(seen_b && seen_annotation);

    // The streaming-list watcher (sendInitialEvents) gets the current state and its end marker.
    let config = watcher::Config::default().streaming_lists();
    let mut streaming = watcher(pods.clone(), config).boxed();
    let mut initial = Vec::new();
    loop {
        match streaming.try_next().await.expect("streaming watch event") {
            Some(watcher::Event::InitApply(p)) => initial.extend(p.metadata.name),
            Some(watcher::Event::InitDone) => break,
            Some(_) => {}
            None => panic!("streaming watch ended"),
        }
    }
    assert_eq!(initial, ["b"]);
}
