//! ContainerStats, ListContainerStats, PodSandboxStats and ListPodSandboxStats over real gRPC,
//! with figures read from the container's cgroup and writable layer (root, runc).
mod common;

use std::time::Duration;

use common::{Daemon, eventually, run_pod};
use k8s_cri::v1 as cri;

/// Burns a core with a 20 MB buffer it keeps touching (dd) and writes 2 MB into the writable
/// layer.
const BURNER: &[&str] = &[
    "sh",
    "-c",
    "dd if=/dev/zero of=/dev/null bs=20M & head -c 2000000 /dev/zero > /big; \
     touch /ready; sleep 1000",
];

fn figure(v: &Option<cri::UInt64Value>) -> u64 {
    v.as_ref().map_or(0, |v| v.value)
}

async fn container_stats(c: &mut common::Clients, id: &str) -> cri::ContainerStats {
    c.runtime
        .container_stats(cri::ContainerStatsRequest {
            container_id: id.to_owned(),
        })
        .await
        .unwrap()
        .into_inner()
        .stats
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_show_cpu_memory_and_writable_layer() {
    let daemon = Daemon::start().await;
    let mut c = daemon.clients.clone();
    let logs = daemon.dir.path().join("logs");
    let (sandbox, container) = run_pod(&mut c, "burner", &logs, BURNER).await;

    let rc = c.clone();
    eventually("the burner holds its memory", || {
        let mut c = rc.clone();
        let id = container.clone();
        async move {
            let out = c
                .runtime
                .exec_sync(cri::ExecSyncRequest {
                    container_id: id,
                    cmd: vec!["test".into(), "-e".into(), "/ready".into()],
                    timeout: 5,
                })
                .await;
            out.is_ok_and(|o| o.into_inner().exit_code == 0)
        }
    })
    .await;

    let first = container_stats(&mut c, &container).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let second = container_stats(&mut c, &container).await;
    let attributes = second.attributes.as_ref().unwrap();
    assert_eq!(attributes.id, container);
    assert_eq!(attributes.metadata.as_ref().unwrap().name, "burner");
    assert_eq!(attributes.labels["container"], "burner");

    let cpu1 = figure(&first.cpu.as_ref().unwrap().usage_core_nano_seconds);
    let cpu2 = second.cpu.as_ref().unwrap();
    assert!(cpu1 > 0, "{first:?}");
    assert!(
        figure(&cpu2.usage_core_nano_seconds) > cpu1 + 200_000_000,
        "a busy loop for a second uses well over 0.2 s of CPU: {cpu1} then {cpu2:?}"
    );
    assert!(
        figure(&cpu2.usage_nano_cores) > 200_000_000,
        "rate since the last sample: {cpu2:?}"
    );
    let memory = second.memory.as_ref().unwrap();
    assert!(
        figure(&memory.working_set_bytes) > 10_000_000,
        "a 20 MB buffer: {memory:?}"
    );
    assert!(figure(&memory.usage_bytes) >= figure(&memory.working_set_bytes));
    let layer = second.writable_layer.as_ref().unwrap();
    assert!(figure(&layer.used_bytes) >= 2_000_000, "{layer:?}");
    assert!(figure(&layer.inodes_used) >= 2, "{layer:?}");

    // Filters.
    let list = |filter: cri::ContainerStatsFilter| {
        let mut c = c.clone();
        async move {
            c.runtime
                .list_container_stats(cri::ListContainerStatsRequest {
                    filter: Some(filter),
                })
                .await
                .unwrap()
                .into_inner()
                .stats
                .into_iter()
                .map(|s| s.attributes.unwrap().id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(list(Default::default()).await, vec![container.clone()]);
    let by_pod = cri::ContainerStatsFilter {
        pod_sandbox_id: sandbox.clone(),
        ..Default::default()
    };
    assert_eq!(list(by_pod).await, vec![container.clone()]);
    let by_other_id = cri::ContainerStatsFilter {
        id: "0".repeat(64),
        ..Default::default()
    };
    assert!(list(by_other_id).await.is_empty());
    let by_label = cri::ContainerStatsFilter {
        label_selector: [("container".to_owned(), "burner".to_owned())].into(),
        ..Default::default()
    };
    assert_eq!(list(by_label).await, vec![container.clone()]);
    let by_other_label = cri::ContainerStatsFilter {
        label_selector: [("container".to_owned(), "other".to_owned())].into(),
        ..Default::default()
    };
    assert!(list(by_other_label).await.is_empty());

    // The pod: its containers' sums and its processes.
    let pod = c
        .runtime
        .pod_sandbox_stats(cri::PodSandboxStatsRequest {
            pod_sandbox_id: sandbox.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .stats
        .unwrap();
    assert_eq!(pod.attributes.as_ref().unwrap().id, sandbox);
    let linux = pod.linux.as_ref().unwrap();
    assert_eq!(linux.containers.len(), 1);
    assert!(figure(&linux.cpu.as_ref().unwrap().usage_core_nano_seconds) >= cpu1);
    assert!(figure(&linux.memory.as_ref().unwrap().working_set_bytes) > 10_000_000);
    assert!(
        figure(&linux.process.as_ref().unwrap().process_count) >= 2,
        "sh, dd and sleep: {:?}",
        linux.process
    );
    let pods = |selector: &str| {
        let mut c = c.clone();
        let filter = cri::PodSandboxStatsFilter {
            label_selector: [("app".to_owned(), selector.to_owned())].into(),
            ..Default::default()
        };
        async move {
            c.runtime
                .list_pod_sandbox_stats(cri::ListPodSandboxStatsRequest {
                    filter: Some(filter),
                })
                .await
                .unwrap()
                .into_inner()
                .stats
                .len()
        }
    };
    assert_eq!(pods("burner").await, 1);
    assert_eq!(pods("other").await, 0);

    // Unknown ids.
    let err = c
        .runtime
        .container_stats(cri::ContainerStatsRequest {
            container_id: "0".repeat(64),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");
    let err = c
        .runtime
        .pod_sandbox_stats(cri::PodSandboxStatsRequest {
            pod_sandbox_id: "0".repeat(64),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");

    // A stopped container keeps its writable layer figures but has no CPU or memory.
    c.runtime
        .stop_container(cri::StopContainerRequest {
            container_id: container.clone(),
            timeout: 0,
        })
        .await
        .unwrap();
    let stopped = container_stats(&mut c, &container).await;
    assert!(
        stopped.cpu.is_none() && stopped.memory.is_none(),
        "{stopped:?}"
    );
    assert!(figure(&stopped.writable_layer.unwrap().used_bytes) >= 2_000_000);

    daemon.stop().await.unwrap();
}
