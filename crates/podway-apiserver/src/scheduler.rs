//! Background controllers of the API server: the scheduler (binds pending pods to the Ready node
//! with the fewest pods) and the namespace finalizer (removes a terminating namespace once it has
//! no pods left) and the pod garbage collector (removes terminating pods whose node no longer
//! exists, since no node agent will ever confirm their deletion). All run a pass on every store
//! change and every few seconds.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use podway_store::EventStream;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::error::ApiError;
use crate::object::{self, child, encode, name, path, str_at};
use crate::resource::Kind;
use crate::rest::Rest;
use crate::selector::Selector;

/// The longest time between two passes.
const RESYNC: Duration = Duration::from_secs(5);

/// Runs the controllers until `shutdown`.
pub(crate) async fn run(rest: Rest, shutdown: CancellationToken) {
    let mut events: Option<EventStream> = None;
    loop {
        if events.is_none() {
            let from = rest.store.current_revision().await.unwrap_or_default();
            events = rest.store.watch("/", from).await.ok();
        }
        if let Err(e) = schedule(&rest).await {
            tracing::warn!("scheduler pass failed: {}", e.message);
        }
        if let Err(e) = collect_orphans(&rest).await {
            tracing::warn!("pod garbage collection pass failed: {}", e.message);
        }
        if let Err(e) = finalize_namespaces(&rest).await {
            tracing::warn!("namespace finalizer pass failed: {}", e.message);
        }
        let next_event = async {
            match events.as_mut() {
                Some(stream) => stream.next().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            ev = next_event => {
                if !matches!(ev, Some(Ok(_))) {
                    events = None;
                }
            }
            _ = tokio::time::sleep(RESYNC) => {}
        }
    }
}

fn node_ready(node: &Value) -> bool {
    let ready = path(node, "status.conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c.get("type").and_then(Value::as_str) == Some("Ready")
                    && c.get("status").and_then(Value::as_str) == Some("True")
            })
        });
    ready && path(node, "spec.unschedulable").and_then(Value::as_bool) != Some(true)
}

fn terminated(pod: &Value) -> bool {
    matches!(str_at(pod, "status.phase"), Some("Succeeded" | "Failed"))
}

/// One scheduling pass.
async fn schedule(rest: &Rest) -> Result<(), ApiError> {
    let all = Selector::default();
    let (pods, _) = rest.list(Kind::Pod, None, &all).await?;
    let pending: Vec<&Value> = pods
        .iter()
        .filter(|p| str_at(p, "spec.nodeName").is_none_or(str::is_empty))
        .filter(|p| path(p, "metadata.deletionTimestamp").is_none_or(Value::is_null))
        .filter(|p| {
            str_at(p, "spec.schedulerName").is_none_or(|s| s.is_empty() || s == "default-scheduler")
        })
        .collect();
    if pending.is_empty() {
        return Ok(());
    }
    let (nodes, _) = rest.list(Kind::Node, None, &all).await?;
    let mut load: BTreeMap<String, usize> = nodes
        .iter()
        .filter(|n| node_ready(n))
        .map(|n| (name(n).to_string(), 0))
        .collect();
    for pod in pods.iter().filter(|p| !terminated(p)) {
        if let Some(count) = str_at(pod, "spec.nodeName").and_then(|n| load.get_mut(n)) {
            *count += 1;
        }
    }
    for pod in pending {
        let Some(node) = load
            .iter()
            .min_by_key(|(_, count)| **count)
            .map(|(n, _)| n.clone())
        else {
            return Ok(());
        };
        if bind(rest, pod, &node).await? {
            *load.entry(node).or_default() += 1;
        }
    }
    Ok(())
}

/// Sets `spec.nodeName` and the PodScheduled condition; `false` if the pod changed meanwhile.
async fn bind(rest: &Rest, pod: &Value, node: &str) -> Result<bool, ApiError> {
    let ns = str_at(pod, "metadata.namespace").unwrap_or("default");
    let pod_name = name(pod);
    let Some(rev) = str_at(pod, "metadata.resourceVersion").and_then(|r| r.parse::<u64>().ok())
    else {
        return Ok(false);
    };
    let mut bound = pod.clone();
    child(&mut bound, "spec").insert("nodeName".into(), json!(node));
    let status = child(&mut bound, "status");
    let mut conditions: Vec<Value> = status
        .get("conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    conditions.retain(|c| c.get("type").and_then(Value::as_str) != Some("PodScheduled"));
    conditions.push(json!({"type": "PodScheduled", "status": "True",
                           "lastProbeTime": null, "lastTransitionTime": object::now()}));
    status.insert("conditions".into(), Value::Array(conditions));
    let key = Kind::Pod.key(Some(ns), pod_name);
    match rest.store.update(&key, encode(&bound), Some(rev)).await {
        Ok(_) => {
            tracing::info!("scheduled pod {ns}/{pod_name} to node {node}");
            Ok(true)
        }
        Err(podway_store::Error::Conflict { .. } | podway_store::Error::NotFound { .. }) => {
            Ok(false)
        }
        Err(e) => Err(e.into()),
    }
}

/// Deletes terminating namespaces that have no pods left.
async fn finalize_namespaces(rest: &Rest) -> Result<(), ApiError> {
    let (namespaces, _) = rest
        .list(Kind::Namespace, None, &Selector::default())
        .await?;
    for ns in namespaces
        .iter()
        .filter(|n| path(n, "metadata.deletionTimestamp").is_some_and(|v| !v.is_null()))
    {
        let ns_name = name(ns);
        let pods = rest.store.list(&Kind::Pod.prefix(Some(ns_name))).await?;
        if pods.items.is_empty() {
            match rest
                .store
                .delete(&Kind::Namespace.key(None, ns_name), None)
                .await
            {
                Ok(_) | Err(podway_store::Error::NotFound { .. }) => {
                    tracing::info!("namespace {ns_name} deleted");
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}

/// Deletes terminating pods bound to nodes that do not exist.
async fn collect_orphans(rest: &Rest) -> Result<(), ApiError> {
    let all = Selector::default();
    let (pods, _) = rest.list(Kind::Pod, None, &all).await?;
    let terminating: Vec<&Value> = pods
        .iter()
        .filter(|p| path(p, "metadata.deletionTimestamp").is_some_and(|v| !v.is_null()))
        .collect();
    if terminating.is_empty() {
        return Ok(());
    }
    let (nodes, _) = rest.list(Kind::Node, None, &all).await?;
    for pod in terminating {
        let node = str_at(pod, "spec.nodeName").unwrap_or_default();
        if nodes.iter().any(|n| name(n) == node) {
            continue;
        }
        let ns = str_at(pod, "metadata.namespace").unwrap_or("default");
        let rev = str_at(pod, "metadata.resourceVersion").and_then(|r| r.parse::<u64>().ok());
        match rest
            .store
            .delete(&Kind::Pod.key(Some(ns), name(pod)), rev)
            .await
        {
            Ok(_) => tracing::info!("deleted pod {ns}/{} of missing node {node}", name(pod)),
            Err(podway_store::Error::Conflict { .. } | podway_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
