//! `meta.k8s.io/v1` Table output, with the columns kubectl prints for each kind.

use chrono::Utc;
use serde_json::{Value, json};

use crate::object::{parse_time, path, str_at};
use crate::resource::Kind;

/// Whether an `Accept` header asks for a Table.
pub(crate) fn wants_table(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| {
        a.split(',').any(|part| {
            let params: Vec<&str> = part.split(';').map(str::trim).collect();
            params.contains(&"as=Table") && params.contains(&"g=meta.k8s.io")
        })
    })
}

fn column(name: &str, ty: &str, format: &str, priority: u8, description: &str) -> Value {
    json!({"name": name, "type": ty, "format": format, "description": description,
           "priority": priority})
}

fn columns(kind: Kind) -> Vec<Value> {
    let name = column(
        "Name",
        "string",
        "name",
        0,
        "Name must be unique within a namespace.",
    );
    let age = column(
        "Age",
        "string",
        "",
        0,
        "CreationTimestamp is a timestamp representing the server time when this object was created.",
    );
    match kind {
        Kind::Pod => vec![
            name,
            column(
                "Ready",
                "string",
                "",
                0,
                "The aggregate readiness state of this pod for accepting traffic.",
            ),
            column(
                "Status",
                "string",
                "",
                0,
                "The aggregate status of the containers in this pod.",
            ),
            column(
                "Restarts",
                "string",
                "",
                0,
                "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
            ),
            age,
            column(
                "IP",
                "string",
                "",
                1,
                "IP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated.",
            ),
            column(
                "Node",
                "string",
                "",
                1,
                "NodeName is a request to schedule this pod onto a specific node.",
            ),
        ],
        Kind::Node => vec![
            name,
            column("Status", "string", "", 0, "The status of the node"),
            column("Roles", "string", "", 0, "The roles of the node"),
            age,
            column(
                "Version",
                "string",
                "",
                0,
                "Kubelet Version reported by the node.",
            ),
            column(
                "Internal-IP",
                "string",
                "",
                1,
                "List of addresses reachable to the node. Queried from cloud provider, if available.",
            ),
            column(
                "OS-Image",
                "string",
                "",
                1,
                "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).",
            ),
            column(
                "Kernel-Version",
                "string",
                "",
                1,
                "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).",
            ),
            column(
                "Container-Runtime",
                "string",
                "",
                1,
                "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).",
            ),
        ],
        Kind::Namespace => vec![
            name,
            column("Status", "string", "", 0, "The status of the namespace"),
            age,
        ],
    }
}

fn cells(kind: Kind, obj: &Value) -> Vec<Value> {
    let name = json!(str_at(obj, "metadata.name").unwrap_or_default());
    let age = json!(age(str_at(obj, "metadata.creationTimestamp")));
    let s = |p: &str| json!(str_at(obj, p).unwrap_or_default());
    match kind {
        Kind::Pod => {
            let (ready, total, restarts) = pod_counts(obj);
            let restarts = match last_restart(obj) {
                Some(ago) if restarts > 0 => format!("{restarts} ({ago} ago)"),
                _ => restarts.to_string(),
            };
            let ip = str_at(obj, "status.podIP").unwrap_or("<none>");
            let node = str_at(obj, "spec.nodeName").unwrap_or("<none>");
            vec![
                name,
                json!(format!("{ready}/{total}")),
                json!(pod_status(obj)),
                json!(restarts),
                age,
                json!(ip),
                json!(node),
            ]
        }
        Kind::Node => {
            let internal_ip = path(obj, "status.addresses")
                .and_then(Value::as_array)
                .and_then(|a| {
                    a.iter()
                        .find(|a| a.get("type").and_then(Value::as_str) == Some("InternalIP"))
                })
                .and_then(|a| a.get("address").and_then(Value::as_str))
                .unwrap_or("<none>");
            vec![
                name,
                json!(node_status(obj)),
                json!(node_roles(obj)),
                age,
                s("status.nodeInfo.kubeletVersion"),
                json!(internal_ip),
                s("status.nodeInfo.osImage"),
                s("status.nodeInfo.kernelVersion"),
                s("status.nodeInfo.containerRuntimeVersion"),
            ]
        }
        Kind::Namespace => vec![name, s("status.phase"), age],
    }
}

/// The row's embedded object: the metadata only, as kube-apiserver sends by default.
fn partial(obj: &Value) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
           "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({}))})
}

/// A Table of `objects`.
pub(crate) fn table(kind: Kind, objects: &[Value], revision: Option<u64>) -> Value {
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| json!({"cells": cells(kind, o), "object": partial(o)}))
        .collect();
    let mut metadata = json!({});
    if let Some(rev) = revision {
        metadata["resourceVersion"] = json!(rev.to_string());
    }
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": metadata,
           "columnDefinitions": columns(kind), "rows": rows})
}

fn pod_counts(pod: &Value) -> (usize, usize, i64) {
    let total = path(pod, "spec.containers")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let statuses = path(pod, "status.containerStatuses")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let ready = statuses
        .iter()
        .filter(|s| s.get("ready").and_then(Value::as_bool) == Some(true))
        .count();
    let restarts = statuses
        .iter()
        .filter_map(|s| s.get("restartCount").and_then(Value::as_i64))
        .sum();
    (ready, total, restarts)
}

/// How long ago the most recent container restart finished (from `lastState.terminated`).
fn last_restart(pod: &Value) -> Option<String> {
    path(pod, "status.containerStatuses")
        .and_then(Value::as_array)?
        .iter()
        .filter_map(|s| str_at(s, "lastState.terminated.finishedAt").and_then(parse_time))
        .max()
        .map(|t| human_duration((Utc::now() - t).num_seconds()))
}

/// The STATUS column as kubectl shows it.
pub(crate) fn pod_status(pod: &Value) -> String {
    let mut reason = str_at(pod, "status.reason")
        .or_else(|| str_at(pod, "status.phase"))
        .unwrap_or("Pending")
        .to_string();
    let init_total = path(pod, "spec.initContainers")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let mut initializing = false;
    let init_statuses = path(pod, "status.initContainerStatuses")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    for (i, s) in init_statuses.iter().enumerate() {
        let state = s.get("state");
        let terminated = state.and_then(|st| st.get("terminated"));
        let exit = terminated
            .and_then(|t| t.get("exitCode"))
            .and_then(Value::as_i64);
        if exit == Some(0) {
            continue;
        }
        initializing = true;
        reason = if let Some(t) = terminated {
            match t.get("reason").and_then(Value::as_str) {
                Some(r) if !r.is_empty() => format!("Init:{r}"),
                _ => format!("Init:ExitCode:{}", exit.unwrap_or_default()),
            }
        } else if let Some(r) = state
            .and_then(|st| st.get("waiting"))
            .and_then(|w| w.get("reason"))
            .and_then(Value::as_str)
            .filter(|r| !r.is_empty() && *r != "PodInitializing")
        {
            format!("Init:{r}")
        } else {
            format!("Init:{i}/{init_total}")
        };
        break;
    }
    if !initializing {
        let statuses = path(pod, "status.containerStatuses")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let mut has_running = false;
        for s in statuses.iter().rev() {
            let state = s.get("state");
            let waiting = state
                .and_then(|st| st.get("waiting"))
                .and_then(|w| w.get("reason"))
                .and_then(Value::as_str)
                .filter(|r| !r.is_empty());
            let terminated = state.and_then(|st| st.get("terminated"));
            if let Some(r) = waiting {
                reason = r.to_string();
            } else if let Some(t) = terminated {
                reason = match t.get("reason").and_then(Value::as_str) {
                    Some(r) if !r.is_empty() => r.to_string(),
                    _ => match t.get("signal").and_then(Value::as_i64).filter(|s| *s != 0) {
                        Some(sig) => format!("Signal:{sig}"),
                        None => format!(
                            "ExitCode:{}",
                            t.get("exitCode")
                                .and_then(Value::as_i64)
                                .unwrap_or_default()
                        ),
                    },
                };
            } else if state.and_then(|st| st.get("running")).is_some()
                && s.get("ready").and_then(Value::as_bool) == Some(true)
            {
                has_running = true;
            }
        }
        if reason == "Completed" && has_running {
            reason = "Running".into();
        }
    }
    if path(pod, "metadata.deletionTimestamp").is_some_and(|v| !v.is_null()) {
        reason = if str_at(pod, "status.reason") == Some("NodeLost") {
            "Unknown".into()
        } else {
            "Terminating".into()
        };
    }
    reason
}

fn node_status(node: &Value) -> String {
    let ready = path(node, "status.conditions")
        .and_then(Value::as_array)
        .and_then(|cs| {
            cs.iter()
                .find(|c| c.get("type").and_then(Value::as_str) == Some("Ready"))
        })
        .and_then(|c| c.get("status").and_then(Value::as_str));
    let mut status = match ready {
        Some("True") => "Ready",
        Some("False") => "NotReady",
        _ => "Unknown",
    }
    .to_string();
    if path(node, "spec.unschedulable").and_then(Value::as_bool) == Some(true) {
        status.push_str(",SchedulingDisabled");
    }
    status
}

fn node_roles(node: &Value) -> String {
    let mut roles: Vec<String> = crate::object::labels(node)
        .into_iter()
        .filter_map(|(k, _)| k.strip_prefix("node-role.kubernetes.io/"))
        .filter(|r| !r.is_empty())
        .map(str::to_string)
        .collect();
    roles.sort();
    if roles.is_empty() {
        "<none>".into()
    } else {
        roles.join(",")
    }
}

fn age(created: Option<&str>) -> String {
    match created.and_then(parse_time) {
        None => "<unknown>".into(),
        Some(t) => human_duration((Utc::now() - t).num_seconds()),
    }
}

/// kubectl's short human form of a duration in seconds (`45s`, `3m12s`, `2d4h`).
pub(crate) fn human_duration(secs: i64) -> String {
    if secs < -1 {
        return "<invalid>".into();
    }
    let secs = secs.max(0);
    let (minutes, hours) = (secs / 60, secs / 3600);
    if secs < 120 {
        format!("{secs}s")
    } else if minutes < 10 {
        match secs % 60 {
            0 => format!("{minutes}m"),
            s => format!("{minutes}m{s}s"),
        }
    } else if minutes < 180 {
        format!("{minutes}m")
    } else if hours < 8 {
        match minutes % 60 {
            0 => format!("{hours}h"),
            m => format!("{hours}h{m}m"),
        }
    } else if hours < 48 {
        format!("{hours}h")
    } else if hours < 24 * 8 {
        match hours % 24 {
            0 => format!("{}d", hours / 24),
            h => format!("{}d{h}h", hours / 24),
        }
    } else if hours < 24 * 365 * 2 {
        format!("{}d", hours / 24)
    } else if hours < 24 * 365 * 8 {
        let days = hours / 24;
        match days % 365 {
            0 => format!("{}y", days / 365),
            d => format!("{}y{d}d", days / 365),
        }
    } else {
        format!("{}y", hours / 24 / 365)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_kubectl() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(192), "3m12s");
        assert_eq!(human_duration(3600 * 2 + 60 * 5), "125m");
        assert_eq!(human_duration(3600 * 5 + 60), "5h1m");
        assert_eq!(human_duration(3600 * 24 * 3 + 3600 * 4), "3d4h");
    }

    #[test]
    fn pod_status_column() {
        let waiting = json!({"status": {"phase": "Pending", "containerStatuses": [
            {"name": "main", "ready": false, "state": {"waiting": {"reason": "ErrImagePull"}}}]}});
        assert_eq!(pod_status(&waiting), "ErrImagePull");
        let deleting = json!({"metadata": {"deletionTimestamp": "2024-01-01T00:00:00Z"},
                              "status": {"phase": "Running"}});
        assert_eq!(pod_status(&deleting), "Terminating");
        assert_eq!(
            pod_status(&json!({"status": {"phase": "Pending"}})),
            "Pending"
        );
        assert!(wants_table(Some(
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
        )));
        assert!(!wants_table(Some("application/json")));
    }
}
