//! The Node object: registration and the status heartbeat.
use std::{net::IpAddr, path::Path, time::Duration};

use chrono::{SecondsFormat, Utc};
use k8s_cri::v1::{StatusRequest, VersionRequest};
use k8s_openapi::api::core::v1::Node;
use kube::{
    Api, Client,
    api::{Patch, PatchParams, PostParams},
    config::{KubeConfigOptions, Kubeconfig},
};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::{Error, cri::Cri};

/// How often the node status is posted.
const HEARTBEAT: Duration = Duration::from_secs(10);

/// The kubelet version the agent reports.
pub(crate) const KUBELET_VERSION: &str = "v1.32.0";

/// An API client from the kubeconfig at `path`.
pub(crate) async fn client(path: &Path) -> Result<Client, Error> {
    let err = |message: String| Error::Kubeconfig {
        path: path.to_path_buf(),
        message,
    };
    let kubeconfig = Kubeconfig::read_from(path).map_err(|e| err(e.to_string()))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|e| err(e.to_string()))?;
    Client::try_from(config).map_err(|e| err(e.to_string()))
}

/// Reads a small system file, trimmed; empty when unreadable.
fn system_file(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Total memory from `/proc/meminfo`, in bytes (0 when unreadable).
pub(crate) fn memory_capacity_bytes() -> i64 {
    let meminfo = system_file("/proc/meminfo");
    let kib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse::<i64>().ok())
        .unwrap_or(0);
    kib.saturating_mul(1024)
}

/// Total memory, as a quantity (`…Ki`).
fn memory_quantity() -> String {
    format!("{}Ki", memory_capacity_bytes() / 1024)
}

/// The `PRETTY_NAME` of `/etc/os-release`.
fn os_image() -> String {
    system_file("/etc/os-release")
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_else(|| "Linux".to_string())
}

/// Go's name for the machine architecture.
fn architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    }
}

/// Registers the Node and keeps its status fresh.
pub(crate) struct NodeStatus {
    /// The API client (node credentials).
    pub client: Client,
    /// The runtime whose readiness decides Ready.
    pub cri: Cri,
    /// The Node's name.
    pub name: String,
    /// InternalIP.
    pub address: IpAddr,
    /// The debugging-handler port.
    pub port: u16,
}

/// What the runtime said about itself.
struct RuntimeInfo {
    version: String,
    ready: bool,
    message: String,
}

impl NodeStatus {
    /// Posts the status every [`HEARTBEAT`] until `stop`.
    pub(crate) async fn run(self, stop: CancellationToken) {
        let api: Api<Node> = Api::all(self.client.clone());
        let mut registered = false;
        let mut last_transition: Option<(bool, String)> = None;
        loop {
            if !registered {
                match self.register(&api).await {
                    Ok(()) => registered = true,
                    Err(e) => {
                        tracing::warn!(node = %self.name, error = %e, "registering the node failed")
                    }
                }
            }
            if registered {
                let info = self.runtime_info().await;
                let now = Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true);
                let transition = match &last_transition {
                    Some((ready, at)) if *ready == info.ready => at.clone(),
                    _ => now.clone(),
                };
                let patch = self.status(&info, &now, &transition);
                match api
                    .patch_status(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    Ok(_) => last_transition = Some((info.ready, transition)),
                    Err(kube::Error::Api(e)) if e.code == 404 => registered = false,
                    Err(e) => {
                        tracing::warn!(node = %self.name, error = %e, "updating the node status failed")
                    }
                }
            }
            let wait = if registered {
                HEARTBEAT
            } else {
                Duration::from_secs(1)
            };
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Creates the Node unless it exists.
    async fn register(&self, api: &Api<Node>) -> Result<(), kube::Error> {
        if api.get_opt(&self.name).await?.is_some() {
            return Ok(());
        }
        let node: Node = serde_json::from_value(json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.name,
                "labels": {
                    "kubernetes.io/hostname": self.name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": architecture(),
                }
            }
        }))
        .map_err(kube::Error::SerdeError)?;
        match api.create(&PostParams::default(), &node).await {
            Ok(_) => {
                tracing::info!(node = %self.name, "registered the node");
                Ok(())
            }
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn runtime_info(&self) -> RuntimeInfo {
        let mut rt = self.cri.rt();
        let version = match rt
            .version(VersionRequest {
                version: "v1".to_string(),
            })
            .await
        {
            Ok(v) => {
                let v = v.into_inner();
                format!("{}://{}", v.runtime_name, v.runtime_version)
            }
            Err(e) => {
                return RuntimeInfo {
                    version: String::new(),
                    ready: false,
                    message: format!("container runtime is down: {}", e.message()),
                };
            }
        };
        match rt.status(StatusRequest { verbose: false }).await {
            Ok(s) => {
                let conditions = s
                    .into_inner()
                    .status
                    .map(|s| s.conditions)
                    .unwrap_or_default();
                let runtime = conditions.iter().find(|c| c.r#type == "RuntimeReady");
                match runtime {
                    Some(c) if c.status => RuntimeInfo {
                        version,
                        ready: true,
                        message: "podway node agent is posting ready status".to_string(),
                    },
                    Some(c) => RuntimeInfo {
                        version,
                        ready: false,
                        message: format!(
                            "container runtime not ready: {}: {}",
                            c.reason, c.message
                        ),
                    },
                    None => RuntimeInfo {
                        version,
                        ready: false,
                        message: "container runtime reports no RuntimeReady condition".to_string(),
                    },
                }
            }
            Err(e) => RuntimeInfo {
                version,
                ready: false,
                message: format!("container runtime status check failed: {}", e.message()),
            },
        }
    }

    fn status(&self, info: &RuntimeInfo, now: &str, transition: &str) -> Value {
        let cpu = std::thread::available_parallelism().map_or(1, |n| n.get());
        let resources =
            json!({ "cpu": cpu.to_string(), "memory": memory_quantity(), "pods": "110" });
        let kernel = system_file("/proc/sys/kernel/osrelease");
        json!({
            "status": {
                "capacity": resources,
                "allocatable": resources,
                "conditions": [{
                    "type": "Ready",
                    "status": if info.ready { "True" } else { "False" },
                    "reason": if info.ready { "KubeletReady" } else { "KubeletNotReady" },
                    "message": info.message,
                    "lastHeartbeatTime": now,
                    "lastTransitionTime": transition,
                }],
                "addresses": [
                    { "type": "InternalIP", "address": self.address.to_string() },
                    { "type": "Hostname", "address": self.name },
                ],
                "daemonEndpoints": { "kubeletEndpoint": { "Port": self.port } },
                "nodeInfo": {
                    "machineID": system_file("/etc/machine-id"),
                    "systemUUID": system_file("/sys/class/dmi/id/product_uuid"),
                    "bootID": system_file("/proc/sys/kernel/random/boot_id"),
                    "kernelVersion": kernel,
                    "osImage": os_image(),
                    "containerRuntimeVersion": info.version,
                    "kubeletVersion": KUBELET_VERSION,
                    "kubeProxyVersion": "",
                    "operatingSystem": "linux",
                    "architecture": architecture(),
                }
            }
        })
    }
}
