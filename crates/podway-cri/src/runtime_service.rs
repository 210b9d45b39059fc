//! `runtime.v1.RuntimeService` over [`podway_runtime::Runtime`].
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_cri::v1 as cri;
use k8s_cri::v1::runtime_service_server::RuntimeService;
use podway_runtime::{ContainerInfo, ContainerState, Runtime, SandboxInfo, SandboxState};
use podway_stream::remotecommand::StreamOptions;
use tonic::{Request, Response, Status};

use crate::convert;
use crate::error::{is_not_found, status};
use crate::stats::{self, StatsReader};
use crate::streaming::{StreamRequest, Streaming};

/// Name reported by `Version`.
const RUNTIME_NAME: &str = "podway";
/// CRI API version served.
const RUNTIME_API_VERSION: &str = "v1";

type Reply<T> = Result<Response<T>, Status>;

/// The RuntimeService: sandboxes, containers, exec/attach/port-forward URLs.
pub(crate) struct CriRuntime {
    runtime: Runtime,
    streaming: Arc<Streaming>,
    stats: Arc<StatsReader>,
}

impl CriRuntime {
    /// A service over `runtime` (whose data folder is `data_dir`) whose streaming URLs are
    /// served by `streaming`'s server.
    pub(crate) fn new(
        runtime: Runtime,
        streaming: Arc<Streaming>,
        data_dir: std::path::PathBuf,
    ) -> CriRuntime {
        CriRuntime {
            runtime,
            streaming,
            stats: Arc::new(StatsReader::new(data_dir)),
        }
    }

    /// Stats of `containers`, read off the async threads.
    async fn container_stats_of(
        &self,
        containers: Vec<ContainerInfo>,
    ) -> Result<Vec<cri::ContainerStats>, Status> {
        let reader = Arc::clone(&self.stats);
        tokio::task::spawn_blocking(move || {
            let now = now_ns();
            containers
                .iter()
                .map(|c| reader.container(c, now))
                .collect()
        })
        .await
        .map_err(|e| Status::internal(format!("stats task failed: {e}")))
    }

    /// Stats of `sandboxes`, with their running containers among `containers`.
    async fn sandbox_stats_of(
        &self,
        sandboxes: Vec<SandboxInfo>,
    ) -> Result<Vec<cri::PodSandboxStats>, Status> {
        let containers = self.runtime.list_containers().await.map_err(status)?;
        let reader = Arc::clone(&self.stats);
        tokio::task::spawn_blocking(move || {
            let now = now_ns();
            sandboxes
                .iter()
                .map(|s| reader.sandbox(s, &containers, now))
                .collect()
        })
        .await
        .map_err(|e| Status::internal(format!("stats task failed: {e}")))
    }

    /// Image references by image id (first repo digest, else the id), read once per call.
    async fn image_refs(&self) -> HashMap<String, String> {
        let runtime = self.runtime.clone();
        match tokio::task::spawn_blocking(move || runtime.images().list()).await {
            Ok(Ok(images)) => images
                .iter()
                .map(|i| (i.id.clone(), convert::image_ref(i)))
                .collect(),
            Ok(Err(err)) => {
                tracing::warn!(%err, "listing images for container image references");
                HashMap::new()
            }
            Err(err) => {
                tracing::warn!(%err, "image listing task failed");
                HashMap::new()
            }
        }
    }

    /// The container, which must be running (exec, attach).
    async fn running_container(&self, id: &str) -> Result<ContainerInfo, Status> {
        require("container_id", id)?;
        let info = self.runtime.container(id).await.map_err(status)?;
        if info.state != ContainerState::Running {
            return Err(Status::failed_precondition(format!(
                "container {id} is not running (state {:?})",
                info.state
            )));
        }
        Ok(info)
    }
}

/// The image reference of a container's image (its id when the image is gone).
fn image_ref(refs: &HashMap<String, String>, info: &ContainerInfo) -> String {
    refs.get(&info.image_id)
        .cloned()
        .unwrap_or_else(|| info.image_id.clone())
}

fn unimplemented(method: &str) -> Status {
    Status::unimplemented(format!("{method} is not implemented by podway yet"))
}

fn require(field: &str, value: &str) -> Result<(), Status> {
    if value.is_empty() {
        Err(Status::invalid_argument(format!(
            "{field} must not be empty"
        )))
    } else {
        Ok(())
    }
}

/// Checks the stream flags of an exec/attach request as the kubelet's streaming library does.
fn stream_options(
    stdin: bool,
    stdout: bool,
    stderr: bool,
    tty: bool,
) -> Result<StreamOptions, Status> {
    if tty && stderr {
        return Err(Status::invalid_argument(
            "tty and stderr cannot both be true",
        ));
    }
    if !(stdin || stdout || stderr) {
        return Err(Status::invalid_argument(
            "one of stdin, stdout, or stderr must be set",
        ));
    }
    Ok(StreamOptions {
        stdin,
        stdout,
        stderr,
        tty,
    })
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

fn condition(kind: &str) -> cri::RuntimeCondition {
    cri::RuntimeCondition {
        r#type: kind.to_owned(),
        status: true,
        reason: String::new(),
        message: String::new(),
    }
}

#[tonic::async_trait]
impl RuntimeService for CriRuntime {
    async fn version(&self, _request: Request<cri::VersionRequest>) -> Reply<cri::VersionResponse> {
        Ok(Response::new(cri::VersionResponse {
            // The kubelet's API version field (0.1.0 for every CRI so far).
            version: "0.1.0".to_owned(),
            runtime_name: RUNTIME_NAME.to_owned(),
            runtime_version: env!("CARGO_PKG_VERSION").to_owned(),
            runtime_api_version: RUNTIME_API_VERSION.to_owned(),
        }))
    }

    async fn status(&self, _request: Request<cri::StatusRequest>) -> Reply<cri::StatusResponse> {
        Ok(Response::new(cri::StatusResponse {
            status: Some(cri::RuntimeStatus {
                conditions: vec![condition("RuntimeReady"), condition("NetworkReady")],
            }),
            ..Default::default()
        }))
    }

    async fn run_pod_sandbox(
        &self,
        request: Request<cri::RunPodSandboxRequest>,
    ) -> Reply<cri::RunPodSandboxResponse> {
        let request = request.into_inner();
        if !request.runtime_handler.is_empty() {
            return Err(Status::invalid_argument(format!(
                "runtime handler {:?} is not supported (podway has only the default one)",
                request.runtime_handler
            )));
        }
        let config = request
            .config
            .ok_or_else(|| Status::invalid_argument("RunPodSandbox needs a config"))?;
        let spec = convert::sandbox_spec(config)?;
        tracing::info!(pod = %format!("{}/{}", spec.namespace, spec.name), "running pod sandbox");
        let info = self.runtime.run_sandbox(spec).await.map_err(status)?;
        Ok(Response::new(cri::RunPodSandboxResponse {
            pod_sandbox_id: info.id,
        }))
    }

    async fn stop_pod_sandbox(
        &self,
        request: Request<cri::StopPodSandboxRequest>,
    ) -> Reply<cri::StopPodSandboxResponse> {
        let id = request.into_inner().pod_sandbox_id;
        require("pod_sandbox_id", &id)?;
        match self.runtime.stop_sandbox(&id).await {
            // The CRI says StopPodSandbox must not fail once everything is reclaimed: a sandbox
            // that is gone counts as stopped.
            Err(err) if !is_not_found(&err) => Err(status(err)),
            _ => Ok(Response::new(cri::StopPodSandboxResponse {})),
        }
    }

    async fn remove_pod_sandbox(
        &self,
        request: Request<cri::RemovePodSandboxRequest>,
    ) -> Reply<cri::RemovePodSandboxResponse> {
        let id = request.into_inner().pod_sandbox_id;
        require("pod_sandbox_id", &id)?;
        match self.runtime.remove_sandbox(&id).await {
            // As containerd: removing a sandbox that does not exist succeeds.
            Err(err) if !is_not_found(&err) => Err(status(err)),
            _ => Ok(Response::new(cri::RemovePodSandboxResponse {})),
        }
    }

    async fn pod_sandbox_status(
        &self,
        request: Request<cri::PodSandboxStatusRequest>,
    ) -> Reply<cri::PodSandboxStatusResponse> {
        let id = request.into_inner().pod_sandbox_id;
        require("pod_sandbox_id", &id)?;
        let info = self.runtime.sandbox(&id).await.map_err(status)?;
        Ok(Response::new(cri::PodSandboxStatusResponse {
            status: Some(convert::pod_sandbox_status(&info)),
            timestamp: now_ns(),
            ..Default::default()
        }))
    }

    async fn list_pod_sandbox(
        &self,
        request: Request<cri::ListPodSandboxRequest>,
    ) -> Reply<cri::ListPodSandboxResponse> {
        let filter = request.into_inner().filter.unwrap_or_default();
        let items = self
            .runtime
            .list_sandboxes()
            .await
            .map_err(status)?
            .iter()
            .filter(|s| convert::sandbox_matches(&filter, s))
            .map(convert::pod_sandbox)
            .collect();
        Ok(Response::new(cri::ListPodSandboxResponse { items }))
    }

    async fn create_container(
        &self,
        request: Request<cri::CreateContainerRequest>,
    ) -> Reply<cri::CreateContainerResponse> {
        let request = request.into_inner();
        require("pod_sandbox_id", &request.pod_sandbox_id)?;
        let config = request
            .config
            .ok_or_else(|| Status::invalid_argument("CreateContainer needs a config"))?;
        let sandbox = self
            .runtime
            .sandbox(&request.pod_sandbox_id)
            .await
            .map_err(status)?;
        // The log folder is the sandbox's own (as containerd); the request's copy of the sandbox
        // config is only a fallback.
        let log_directory = sandbox.spec.log_directory.or_else(|| {
            request
                .sandbox_config
                .and_then(|c| convert::non_empty(c.log_directory))
                .map(Into::into)
        });
        let spec = convert::container_spec(config, log_directory.as_deref())?;
        tracing::info!(sandbox = %sandbox.id, container = %spec.name, "creating container");
        let container_id = self
            .runtime
            .create_container(&sandbox.id, spec)
            .await
            .map_err(status)?;
        Ok(Response::new(cri::CreateContainerResponse { container_id }))
    }

    async fn start_container(
        &self,
        request: Request<cri::StartContainerRequest>,
    ) -> Reply<cri::StartContainerResponse> {
        let id = request.into_inner().container_id;
        require("container_id", &id)?;
        self.runtime.start_container(&id).await.map_err(status)?;
        Ok(Response::new(cri::StartContainerResponse {}))
    }

    async fn stop_container(
        &self,
        request: Request<cri::StopContainerRequest>,
    ) -> Reply<cri::StopContainerResponse> {
        let request = request.into_inner();
        require("container_id", &request.container_id)?;
        let grace = Duration::from_secs(u64::try_from(request.timeout).unwrap_or(0));
        // Stopping a stopped container succeeds (the runtime is idempotent); an unknown one is
        // NotFound, as containerd answers.
        self.runtime
            .stop_container(&request.container_id, grace)
            .await
            .map_err(status)?;
        Ok(Response::new(cri::StopContainerResponse {}))
    }

    async fn remove_container(
        &self,
        request: Request<cri::RemoveContainerRequest>,
    ) -> Reply<cri::RemoveContainerResponse> {
        let id = request.into_inner().container_id;
        require("container_id", &id)?;
        match self.runtime.remove_container(&id).await {
            // As containerd: removing a container that does not exist succeeds.
            Err(err) if !is_not_found(&err) => Err(status(err)),
            _ => Ok(Response::new(cri::RemoveContainerResponse {})),
        }
    }

    async fn list_containers(
        &self,
        request: Request<cri::ListContainersRequest>,
    ) -> Reply<cri::ListContainersResponse> {
        let filter = request.into_inner().filter.unwrap_or_default();
        let refs = self.image_refs().await;
        let containers = self
            .runtime
            .list_containers()
            .await
            .map_err(status)?
            .iter()
            .filter(|c| convert::container_matches(&filter, c))
            .map(|c| convert::container(c, image_ref(&refs, c)))
            .collect();
        Ok(Response::new(cri::ListContainersResponse { containers }))
    }

    async fn container_status(
        &self,
        request: Request<cri::ContainerStatusRequest>,
    ) -> Reply<cri::ContainerStatusResponse> {
        let id = request.into_inner().container_id;
        require("container_id", &id)?;
        let info = self.runtime.container(&id).await.map_err(status)?;
        Ok(Response::new(cri::ContainerStatusResponse {
            status: Some(convert::container_status(
                &info,
                image_ref(&self.image_refs().await, &info),
            )),
            ..Default::default()
        }))
    }

    async fn update_container_resources(
        &self,
        request: Request<cri::UpdateContainerResourcesRequest>,
    ) -> Reply<cri::UpdateContainerResourcesResponse> {
        let request = request.into_inner();
        require("container_id", &request.container_id)?;
        // As containerd: the fields set replace the container's; no Linux part changes nothing
        // (but the container must exist).
        let resources = match &request.linux {
            Some(linux) => convert::resource_spec(linux)?,
            None => Default::default(),
        };
        self.runtime
            .update_container_resources(&request.container_id, resources)
            .await
            .map_err(status)?;
        Ok(Response::new(cri::UpdateContainerResourcesResponse {}))
    }

    async fn reopen_container_log(
        &self,
        request: Request<cri::ReopenContainerLogRequest>,
    ) -> Reply<cri::ReopenContainerLogResponse> {
        let id = request.into_inner().container_id;
        // As containerd: NotFound for an unknown container, FailedPrecondition when it does not
        // run (there is no writer to reopen).
        self.running_container(&id).await?;
        // The container's monitor holds the log file open and reopens it at the same path.
        self.runtime
            .reopen_container_log(&id)
            .await
            .map_err(status)?;
        Ok(Response::new(cri::ReopenContainerLogResponse {}))
    }

    async fn exec_sync(
        &self,
        request: Request<cri::ExecSyncRequest>,
    ) -> Reply<cri::ExecSyncResponse> {
        let request = request.into_inner();
        require("container_id", &request.container_id)?;
        if request.cmd.is_empty() {
            return Err(Status::invalid_argument("cmd must not be empty"));
        }
        let timeout = u64::try_from(request.timeout)
            .ok()
            .filter(|&s| s > 0)
            .map(Duration::from_secs);
        let output = self
            .runtime
            .exec_sync(&request.container_id, request.cmd, timeout)
            .await
            .map_err(status)?;
        Ok(Response::new(cri::ExecSyncResponse {
            stdout: output.stdout,
            stderr: output.stderr,
            exit_code: output.exit_code,
        }))
    }

    async fn exec(&self, request: Request<cri::ExecRequest>) -> Reply<cri::ExecResponse> {
        let r = request.into_inner();
        require("container_id", &r.container_id)?;
        if r.cmd.is_empty() {
            return Err(Status::invalid_argument("cmd must not be empty"));
        }
        let options = stream_options(r.stdin, r.stdout, r.stderr, r.tty)?;
        self.running_container(&r.container_id).await?;
        let url = self.streaming.url_for(StreamRequest::Exec {
            container_id: r.container_id,
            cmd: r.cmd,
            options,
        })?;
        Ok(Response::new(cri::ExecResponse { url }))
    }

    async fn attach(&self, request: Request<cri::AttachRequest>) -> Reply<cri::AttachResponse> {
        let r = request.into_inner();
        require("container_id", &r.container_id)?;
        let options = stream_options(r.stdin, r.stdout, r.stderr, r.tty)?;
        self.running_container(&r.container_id).await?;
        let url = self.streaming.url_for(StreamRequest::Attach {
            container_id: r.container_id,
            options,
        })?;
        Ok(Response::new(cri::AttachResponse { url }))
    }

    async fn port_forward(
        &self,
        request: Request<cri::PortForwardRequest>,
    ) -> Reply<cri::PortForwardResponse> {
        let r = request.into_inner();
        require("pod_sandbox_id", &r.pod_sandbox_id)?;
        let ports =
            r.port
                .iter()
                .map(|&p| {
                    u16::try_from(p).ok().filter(|&p| p > 0).ok_or_else(|| {
                        Status::invalid_argument(format!("port {p} is not in 1..65535"))
                    })
                })
                .collect::<Result<Vec<u16>, Status>>()?;
        let sandbox = self
            .runtime
            .sandbox(&r.pod_sandbox_id)
            .await
            .map_err(status)?;
        if sandbox.state != SandboxState::Ready {
            return Err(Status::failed_precondition(format!(
                "pod sandbox {} is not ready",
                sandbox.id
            )));
        }
        let url = self.streaming.url_for(StreamRequest::PortForward {
            sandbox_id: sandbox.id,
            ports,
        })?;
        Ok(Response::new(cri::PortForwardResponse { url }))
    }

    async fn container_stats(
        &self,
        request: Request<cri::ContainerStatsRequest>,
    ) -> Reply<cri::ContainerStatsResponse> {
        let id = request.into_inner().container_id;
        require("container_id", &id)?;
        let info = self.runtime.container(&id).await.map_err(status)?;
        let stats = self.container_stats_of(vec![info]).await?.pop();
        Ok(Response::new(cri::ContainerStatsResponse { stats }))
    }

    async fn list_container_stats(
        &self,
        request: Request<cri::ListContainerStatsRequest>,
    ) -> Reply<cri::ListContainerStatsResponse> {
        let filter = request.into_inner().filter.unwrap_or_default();
        // Every matching container, as ListContainers lists them; only running ones carry CPU
        // and memory figures (a stopped container has no cgroup).
        let containers = self
            .runtime
            .list_containers()
            .await
            .map_err(status)?
            .into_iter()
            .filter(|c| stats::container_matches(&filter, c))
            .collect();
        let stats = self.container_stats_of(containers).await?;
        Ok(Response::new(cri::ListContainerStatsResponse { stats }))
    }

    async fn pod_sandbox_stats(
        &self,
        request: Request<cri::PodSandboxStatsRequest>,
    ) -> Reply<cri::PodSandboxStatsResponse> {
        let id = request.into_inner().pod_sandbox_id;
        require("pod_sandbox_id", &id)?;
        let sandbox = self.runtime.sandbox(&id).await.map_err(status)?;
        let stats = self.sandbox_stats_of(vec![sandbox]).await?.pop();
        Ok(Response::new(cri::PodSandboxStatsResponse { stats }))
    }

    async fn list_pod_sandbox_stats(
        &self,
        request: Request<cri::ListPodSandboxStatsRequest>,
    ) -> Reply<cri::ListPodSandboxStatsResponse> {
        let filter = request.into_inner().filter.unwrap_or_default();
        let sandboxes = self
            .runtime
            .list_sandboxes()
            .await
            .map_err(status)?
            .into_iter()
            .filter(|s| stats::sandbox_matches(&filter, s))
            .collect();
        let stats = self.sandbox_stats_of(sandboxes).await?;
        Ok(Response::new(cri::ListPodSandboxStatsResponse { stats }))
    }

    async fn update_runtime_config(
        &self,
        _request: Request<cri::UpdateRuntimeConfigRequest>,
    ) -> Reply<cri::UpdateRuntimeConfigResponse> {
        // The kubelet sends the pod CIDR here; with loopback-only pods there is nothing to
        // configure, and containerd also accepts it without a CNI change. Accept it.
        Ok(Response::new(cri::UpdateRuntimeConfigResponse {}))
    }

    async fn checkpoint_container(
        &self,
        _request: Request<cri::CheckpointContainerRequest>,
    ) -> Reply<cri::CheckpointContainerResponse> {
        Err(unimplemented("CheckpointContainer"))
    }

    type GetContainerEventsStream =
        tokio_stream::Empty<Result<cri::ContainerEventResponse, Status>>;

    async fn get_container_events(
        &self,
        _request: Request<cri::GetEventsRequest>,
    ) -> Reply<Self::GetContainerEventsStream> {
        Err(unimplemented("GetContainerEvents"))
    }

    async fn list_metric_descriptors(
        &self,
        _request: Request<cri::ListMetricDescriptorsRequest>,
    ) -> Reply<cri::ListMetricDescriptorsResponse> {
        Err(unimplemented("ListMetricDescriptors"))
    }

    async fn list_pod_sandbox_metrics(
        &self,
        _request: Request<cri::ListPodSandboxMetricsRequest>,
    ) -> Reply<cri::ListPodSandboxMetricsResponse> {
        Err(unimplemented("ListPodSandboxMetrics"))
    }

    async fn runtime_config(
        &self,
        _request: Request<cri::RuntimeConfigRequest>,
    ) -> Reply<cri::RuntimeConfigResponse> {
        Ok(Response::new(cri::RuntimeConfigResponse {
            linux: Some(cri::LinuxRuntimeConfiguration {
                cgroup_driver: cri::CgroupDriver::Cgroupfs as i32,
            }),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_flags_are_validated_like_the_kubelet() {
        assert_eq!(
            stream_options(false, true, true, true).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
        assert_eq!(
            stream_options(false, false, false, false)
                .unwrap_err()
                .code(),
            tonic::Code::InvalidArgument
        );
        let opts = stream_options(true, true, false, true).unwrap();
        assert!(opts.stdin && opts.stdout && !opts.stderr && opts.tty);
    }
}
