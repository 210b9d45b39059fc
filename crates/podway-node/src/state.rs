//! State shared by the pod sync loop and the debugging handlers.
use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{PoisonError, RwLock},
};

use k8s_cri::v1::{
    Container, ContainerFilter, ListContainersRequest, ListPodSandboxRequest, PodSandbox,
    PodSandboxFilter, PodSandboxState, PodSandboxStateValue,
};

use crate::cri::{Cri, labels};

/// What the agent shares between its tasks.
pub(crate) struct Shared {
    /// The CRI clients.
    pub cri: Cri,
    /// The pods bound to this node, by namespace and name.
    pub pods: PodIndex,
    /// Root of the per-pod CRI log directories.
    pub pod_log_dir: PathBuf,
    /// The agent's own files (pod volumes).
    pub root_dir: PathBuf,
    /// Whether exec/attach/port-forward/logs/run are served.
    pub enable_debugging_handlers: bool,
}

/// The pods bound to this node: `(namespace, name)` → uid.
#[derive(Default)]
pub(crate) struct PodIndex(RwLock<HashMap<(String, String), String>>);

impl PodIndex {
    /// Records (or replaces) a pod.
    pub(crate) fn insert(&self, namespace: &str, name: &str, uid: &str) {
        self.0
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert((namespace.to_string(), name.to_string()), uid.to_string());
    }

    /// Forgets a pod, if it still has this uid.
    pub(crate) fn remove(&self, namespace: &str, name: &str, uid: &str) {
        let mut map = self.0.write().unwrap_or_else(PoisonError::into_inner);
        let key = (namespace.to_string(), name.to_string());
        if map.get(&key).is_some_and(|u| u == uid) {
            map.remove(&key);
        }
    }

    /// The uid of pod `namespace/name`.
    pub(crate) fn uid(&self, namespace: &str, name: &str) -> Option<String> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(namespace.to_string(), name.to_string()))
            .cloned()
    }
}

impl Shared {
    /// The ready sandbox of the pod with `uid`, if any.
    pub(crate) async fn ready_sandbox(
        &self,
        uid: &str,
    ) -> Result<Option<PodSandbox>, tonic::Status> {
        self.newest_sandbox(uid, true).await
    }

    /// The newest sandbox of the pod with `uid` (only a ready one if `ready_only`), if any.
    pub(crate) async fn newest_sandbox(
        &self,
        uid: &str,
        ready_only: bool,
    ) -> Result<Option<PodSandbox>, tonic::Status> {
        let filter = PodSandboxFilter {
            state: ready_only.then_some(PodSandboxStateValue {
                state: PodSandboxState::SandboxReady as i32,
            }),
            label_selector: HashMap::from([(labels::POD_UID.to_string(), uid.to_string())]),
            ..Default::default()
        };
        let items = self
            .cri
            .rt()
            .list_pod_sandbox(ListPodSandboxRequest {
                filter: Some(filter),
            })
            .await?
            .into_inner()
            .items;
        Ok(items.into_iter().max_by_key(|s| s.created_at))
    }

    /// Every container of container `name` in the pod with `uid`, newest attempt first.
    pub(crate) async fn containers(
        &self,
        uid: &str,
        name: &str,
    ) -> Result<Vec<Container>, tonic::Status> {
        let filter = ContainerFilter {
            label_selector: HashMap::from([
                (labels::POD_UID.to_string(), uid.to_string()),
                (labels::CONTAINER_NAME.to_string(), name.to_string()),
            ]),
            ..Default::default()
        };
        let mut items = self
            .cri
            .rt()
            .list_containers(ListContainersRequest {
                filter: Some(filter),
            })
            .await?
            .into_inner()
            .containers;
        items.sort_by_key(|c| {
            std::cmp::Reverse((c.metadata.as_ref().map_or(0, |m| m.attempt), c.created_at))
        });
        Ok(items)
    }
}
