//! Pod sync: watches the pods bound to this node and runs one [`worker`] per pod uid.
mod cgroups;
mod linux;
pub(crate) mod quantity;
mod status;
mod volumes;
mod worker;

use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
    sync::Arc,
};

use futures::StreamExt;
use k8s_cri::v1::{
    ListPodSandboxRequest, PodSandbox, RemovePodSandboxRequest, StopPodSandboxRequest,
};
use k8s_openapi::api::core::v1::Pod;
use kube::{
    Api, Client,
    runtime::{WatchStreamExt, watcher},
};
use tokio::{sync::watch, task::JoinHandle};
use tokio_util::sync::CancellationToken;

use crate::{
    cri::{Cri, labels},
    state::Shared,
};

/// The pod sync loop's inputs.
pub(crate) struct Sync {
    /// API client (node credentials).
    pub client: Client,
    /// CRI clients and the pod index.
    pub shared: Arc<Shared>,
    /// Pods with `spec.nodeName` = this are ours.
    pub node_name: String,
    /// `status.hostIP` of our pods.
    pub host_ip: IpAddr,
}

/// A running pod worker.
struct Handle {
    pod: watch::Sender<Pod>,
    gone: CancellationToken,
    stop: CancellationToken,
    task: JoinHandle<()>,
    namespace: String,
    name: String,
}

/// Stops and removes sandbox `id` of pod `pod_uid`, then the pod's cgroup folders (errors are
/// logged: the sandbox may already be gone).
pub(crate) async fn teardown_sandbox(shared: &Shared, id: &str, pod_uid: &str) {
    let mut rt = shared.cri.rt();
    if let Err(e) = rt
        .stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: id.to_string(),
        })
        .await
    {
        tracing::warn!(sandbox = id, error = %e.message(), "stopping the pod sandbox failed");
    }
    if let Err(e) = rt
        .remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: id.to_string(),
        })
        .await
    {
        tracing::warn!(sandbox = id, error = %e.message(), "removing the pod sandbox failed");
    }
    if !pod_uid.is_empty() {
        cgroups::remove_pod_cgroups(pod_uid);
        volumes::remove(&shared.root_dir, pod_uid);
    }
}

/// Every sandbox carrying our pod labels.
async fn pod_sandboxes(cri: &Cri) -> Result<Vec<PodSandbox>, tonic::Status> {
    Ok(cri
        .rt()
        .list_pod_sandbox(ListPodSandboxRequest { filter: None })
        .await?
        .into_inner()
        .items
        .into_iter()
        .filter(|s| s.labels.contains_key(labels::POD_UID))
        .collect())
}

/// Stops and removes every pod sandbox the runtime has for pods (agent shutdown).
pub(crate) async fn remove_all_sandboxes(shared: &Shared) {
    match pod_sandboxes(&shared.cri).await {
        Ok(sandboxes) => {
            for s in sandboxes {
                tracing::info!(sandbox = %s.id, "removing pod sandbox on shutdown");
                let uid = s.labels.get(labels::POD_UID).map_or("", String::as_str);
                teardown_sandbox(shared, &s.id, uid).await;
            }
        }
        Err(e) => tracing::warn!(error = %e.message(), "listing pod sandboxes on shutdown failed"),
    }
}

/// Removes sandboxes whose pod uid is not in `known` (pods deleted while the agent was away).
async fn remove_orphans(shared: &Shared, known: &HashSet<String>) {
    match pod_sandboxes(&shared.cri).await {
        Ok(sandboxes) => {
            for s in sandboxes {
                let uid = s.labels.get(labels::POD_UID).cloned().unwrap_or_default();
                if !known.contains(&uid) {
                    tracing::info!(sandbox = %s.id, %uid, "removing the sandbox of a pod that no longer exists");
                    teardown_sandbox(shared, &s.id, &uid).await;
                }
            }
        }
        Err(e) => tracing::warn!(error = %e.message(), "listing pod sandboxes failed"),
    }
}

impl Sync {
    /// Watches our pods until `shutdown`, then stops the workers (leaving containers running
    /// for the caller to remove).
    pub(crate) async fn run(self, shutdown: CancellationToken) {
        let api: Api<Pod> = Api::all(self.client.clone());
        let config =
            watcher::Config::default().fields(&format!("spec.nodeName={}", self.node_name));
        let mut events = watcher(api, config).default_backoff().boxed();
        let mut workers: HashMap<String, Handle> = HashMap::new();
        let mut listing: Option<HashSet<String>> = None;
        let mut cleaned = false;
        loop {
            let event = tokio::select! {
                _ = shutdown.cancelled() => break,
                e = events.next() => e,
            };
            match event {
                None => break,
                Some(Err(e)) => tracing::warn!(error = %e, "watching pods failed"),
                Some(Ok(watcher::Event::Init)) => listing = Some(HashSet::new()),
                Some(Ok(watcher::Event::InitApply(pod))) => {
                    if let (Some(seen), Some(uid)) = (listing.as_mut(), pod.metadata.uid.clone()) {
                        seen.insert(uid);
                    }
                    self.apply(&mut workers, pod, &shutdown);
                }
                Some(Ok(watcher::Event::InitDone)) => {
                    let seen = listing.take().unwrap_or_default();
                    let stale: Vec<String> = workers
                        .keys()
                        .filter(|u| !seen.contains(*u))
                        .cloned()
                        .collect();
                    for uid in stale {
                        self.forget(&mut workers, &uid);
                    }
                    if !cleaned {
                        remove_orphans(&self.shared, &seen).await;
                        cleaned = true;
                    }
                }
                Some(Ok(watcher::Event::Apply(pod))) => self.apply(&mut workers, pod, &shutdown),
                Some(Ok(watcher::Event::Delete(pod))) => {
                    if let Some(uid) = pod.metadata.uid.as_deref() {
                        self.forget(&mut workers, uid);
                    }
                }
            }
            workers.retain(|_, w| !w.task.is_finished());
        }
        for w in workers.values() {
            w.stop.cancel();
        }
        for (_, w) in workers {
            let _ = w.task.await;
        }
    }

    /// Hands the newest version of `pod` to its worker, starting one for a new uid.
    fn apply(&self, workers: &mut HashMap<String, Handle>, pod: Pod, shutdown: &CancellationToken) {
        let (Some(uid), Some(namespace), Some(name)) = (
            pod.metadata.uid.clone(),
            pod.metadata.namespace.clone(),
            pod.metadata.name.clone(),
        ) else {
            return;
        };
        if let Some(w) = workers.get(&uid) {
            w.pod.send_replace(pod);
            return;
        }
        self.shared.pods.insert(&namespace, &name, &uid);
        let (tx, rx) = watch::channel(pod);
        let gone = CancellationToken::new();
        let stop = shutdown.child_token();
        let worker = worker::Worker {
            shared: self.shared.clone(),
            api: Api::namespaced(self.client.clone(), &namespace),
            host_ip: self.host_ip,
            pod: rx,
            gone: gone.clone(),
            stop: stop.clone(),
        };
        tracing::info!(pod = %format!("{namespace}/{name}"), %uid, "syncing pod");
        let task = tokio::spawn(worker.run());
        workers.insert(
            uid,
            Handle {
                pod: tx,
                gone,
                stop,
                task,
                namespace,
                name,
            },
        );
    }

    /// The pod with `uid` left the API server: its worker tears it down.
    fn forget(&self, workers: &mut HashMap<String, Handle>, uid: &str) {
        if let Some(w) = workers.remove(uid) {
            self.shared.pods.remove(&w.namespace, &w.name, uid);
            w.gone.cancel();
        }
    }
}
