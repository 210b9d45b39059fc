//! One task per pod: runs its sandbox and containers through CRI, restarts, reports status,
//! and tears everything down on deletion.
use std::{
    collections::HashMap,
    net::IpAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use chrono::{DateTime, SecondsFormat, Utc};
use k8s_cri::v1::{
    ContainerConfig, ContainerMetadata, ContainerState, ContainerStatusRequest,
    CreateContainerRequest, ImageSpec, ImageStatusRequest, KeyValue, LinuxPodSandboxConfig,
    LinuxSandboxSecurityContext, PodSandboxConfig, PodSandboxMetadata, PodSandboxStatusRequest,
    PullImageRequest, RemoveContainerRequest, RunPodSandboxRequest, StartContainerRequest,
    StopContainerRequest, StopPodSandboxRequest, VersionRequest,
};
use k8s_openapi::api::core::v1::{Container, Pod};
use kube::{
    Api,
    api::{DeleteParams, Patch, PatchParams, Preconditions},
};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{linux, status, teardown_sandbox, volumes};
use crate::{cri::labels, state::Shared};

/// How often a pod is re-synced without news from the API server.
const RESYNC: Duration = Duration::from_secs(2);
/// First crash-loop back-off.
const BACKOFF_START: Duration = Duration::from_secs(10);
/// Longest crash-loop back-off.
const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// The back-off after `failures` consecutive failures (the first retry is immediate).
fn backoff(failures: u32) -> Duration {
    match failures {
        0 => Duration::ZERO,
        n => BACKOFF_START
            .saturating_mul(1 << (n - 1).min(10))
            .min(BACKOFF_MAX),
    }
}

/// RFC 3339 (seconds) from CRI nanoseconds; `None` for 0.
fn cri_time(nanos: i64) -> Option<String> {
    (nanos > 0).then(|| {
        DateTime::<Utc>::from_timestamp_nanos(nanos).to_rfc3339_opts(SecondsFormat::Secs, true)
    })
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// What the agent knows about one spec container.
#[derive(Default)]
struct Track {
    /// CRI id of the current instance.
    id: Option<String>,
    /// Attempt number of the current instance (= restart count).
    restarts: u32,
    /// The resolved image of the current instance.
    image_ref: String,
    /// Why it is not running (set when creating/pulling failed).
    waiting: Option<(String, String)>,
    /// Consecutive failures, for the back-off.
    failures: u32,
    /// Not before this instant may it be (re)created.
    not_before: Option<Instant>,
    /// The previous instance's end.
    last_terminated: Option<status::Terminated>,
    /// The current instance's state as last observed.
    observed: Option<status::State>,
}

/// The sync state of one pod.
pub(super) struct Worker {
    pub shared: Arc<Shared>,
    pub api: Api<Pod>,
    pub host_ip: IpAddr,
    pub pod: watch::Receiver<Pod>,
    /// Cancelled when the pod is gone from the API server: tear down and end.
    pub gone: CancellationToken,
    /// Cancelled when the agent stops: end without touching the containers.
    pub stop: CancellationToken,
}

struct Run {
    w: Worker,
    uid: String,
    namespace: String,
    name: String,
    runtime_name: Option<String>,
    sandbox: Option<String>,
    pod_ip: Option<String>,
    tracks: HashMap<String, Track>,
    adopted: bool,
    start_time: String,
    transitions: HashMap<&'static str, (bool, String)>,
    reported: Option<Value>,
    terminal: Option<&'static str>,
    /// The sandbox of a finished pod has been stopped.
    sandbox_stopped: bool,
    deleted: bool,
}

impl Worker {
    /// Runs until the pod is gone or the agent stops.
    pub(super) async fn run(self) {
        let pod = self.pod.borrow().clone();
        let start_time = pod
            .status
            .as_ref()
            .and_then(|s| s.start_time.as_ref())
            .map(|t| t.0.to_string())
            .and_then(|t| t.parse::<DateTime<Utc>>().ok())
            .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
            .unwrap_or_else(now);
        let mut run = Run {
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            name: pod.metadata.name.clone().unwrap_or_default(),
            w: self,
            runtime_name: None,
            sandbox: None,
            pod_ip: None,
            tracks: HashMap::new(),
            adopted: false,
            start_time,
            transitions: HashMap::new(),
            reported: None,
            terminal: None,
            sandbox_stopped: false,
            deleted: false,
        };
        run.main().await;
    }
}

impl Run {
    fn pod(&self) -> Pod {
        self.w.pod.borrow().clone()
    }

    fn label(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    async fn main(&mut self) {
        loop {
            let pod = self.pod();
            if pod.metadata.deletion_timestamp.is_some() {
                if !self.deleted {
                    self.delete(&pod).await;
                }
            } else {
                self.sync(&pod).await;
            }
            // Biased: when the pod leaves the API server its handle (and so the sender of
            // `pod`) is dropped right after `gone` is cancelled, and that must tear down.
            tokio::select! {
                biased;
                _ = self.w.stop.cancelled() => return,
                _ = self.w.gone.cancelled() => {
                    tracing::info!(pod = %self.label(), "pod is gone, removing its sandbox");
                    self.remove_sandbox(Duration::from_secs(2)).await;
                    return;
                }
                changed = self.w.pod.changed() => if changed.is_err() {
                    // The sender went away: the agent is stopping.
                    return;
                },
                _ = tokio::time::sleep(RESYNC) => {}
            }
        }
    }

    /// Graceful deletion: stop everything, remove the sandbox, then delete the API object.
    async fn delete(&mut self, pod: &Pod) {
        let grace = pod
            .metadata
            .deletion_grace_period_seconds
            .unwrap_or(30)
            .max(0);
        tracing::info!(pod = %self.label(), grace, "pod is being deleted, stopping it");
        self.remove_sandbox(Duration::from_secs(grace as u64)).await;
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(self.uid.clone()),
                resource_version: None,
            }),
            ..Default::default()
        };
        match self.w.api.delete(&self.name, &params).await {
            Ok(_) => self.deleted = true,
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => self.deleted = true,
            Err(e) => tracing::warn!(pod = %self.label(), error = %e, "deleting the pod failed"),
        }
    }

    /// Stops the containers (with `grace`), then stops and removes the sandbox.
    async fn remove_sandbox(&mut self, grace: Duration) {
        // All at once, as the kubelet does: each gets the whole grace period.
        let stops = self.tracks.values().filter_map(|track| {
            let id = track.id.as_ref()?;
            if !matches!(track.observed, Some(status::State::Running { .. })) {
                return None;
            }
            let mut rt = self.w.shared.cri.rt();
            let req = StopContainerRequest {
                container_id: id.clone(),
                timeout: grace.as_secs() as i64,
            };
            let label = self.label();
            Some(async move {
                if let Err(e) = rt.stop_container(req).await {
                    tracing::warn!(pod = %label, error = %e.message(), "stopping a container failed");
                }
            })
        });
        futures::future::join_all(stops).await;
        // Also whatever a previous agent left for this uid.
        let sandbox = match self.sandbox.take() {
            Some(id) => Some(id),
            None => self
                .w
                .shared
                .newest_sandbox(&self.uid, false)
                .await
                .ok()
                .flatten()
                .map(|s| s.id),
        };
        if let Some(id) = sandbox {
            teardown_sandbox(&self.w.shared, &id, &self.uid).await;
        }
        self.tracks.clear();
    }

    fn sandbox_config(&self, pod: &Pod) -> PodSandboxConfig {
        let mut sandbox_labels: HashMap<String, String> = pod
            .metadata
            .labels
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect();
        sandbox_labels.insert(labels::POD_NAME.into(), self.name.clone());
        sandbox_labels.insert(labels::POD_NAMESPACE.into(), self.namespace.clone());
        sandbox_labels.insert(labels::POD_UID.into(), self.uid.clone());
        let hostname = pod
            .spec
            .as_ref()
            .and_then(|s| s.hostname.clone())
            .unwrap_or_else(|| self.name.clone());
        PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: self.name.clone(),
                uid: self.uid.clone(),
                namespace: self.namespace.clone(),
                attempt: 0,
            }),
            hostname,
            log_directory: self.log_dir().to_string_lossy().into_owned(),
            labels: sandbox_labels,
            annotations: pod
                .metadata
                .annotations
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect(),
            linux: Some(LinuxPodSandboxConfig {
                cgroup_parent: super::cgroups::pod_cgroup_parent(pod, &self.uid),
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(linux::namespace_options(pod)),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn log_dir(&self) -> std::path::PathBuf {
        self.w
            .shared
            .pod_log_dir
            .join(format!("{}_{}_{}", self.namespace, self.name, self.uid))
    }

    /// Finds what a previous agent run left for this pod. A pod the API server already shows
    /// as finished stays finished: its (stopped) sandbox and exited containers are adopted,
    /// never run again.
    async fn adopt(&mut self, pod: &Pod) {
        self.adopted = true;
        self.terminal = match pod.status.as_ref().and_then(|s| s.phase.as_deref()) {
            Some("Succeeded") => Some("Succeeded"),
            Some("Failed") => Some("Failed"),
            _ => None,
        };
        let ready_only = self.terminal.is_none();
        let Ok(Some(sandbox)) = self.w.shared.newest_sandbox(&self.uid, ready_only).await else {
            return;
        };
        tracing::info!(pod = %self.label(), sandbox = %sandbox.id, "adopting an existing sandbox");
        self.sandbox = Some(sandbox.id);
        for c in pod.spec.iter().flat_map(|s| s.containers.iter()) {
            if let Ok(found) = self.w.shared.containers(&self.uid, &c.name).await
                && let Some(newest) = found.into_iter().next()
            {
                let track = self.tracks.entry(c.name.clone()).or_default();
                track.restarts = newest.metadata.map_or(0, |m| m.attempt);
                track.image_ref = newest.image_ref;
                track.id = Some(newest.id);
            }
        }
    }

    async fn ensure_runtime_name(&mut self) {
        if self.runtime_name.is_none()
            && let Ok(v) = self
                .w
                .shared
                .cri
                .rt()
                .version(VersionRequest {
                    version: "v1".into(),
                })
                .await
        {
            self.runtime_name = Some(v.into_inner().runtime_name);
        }
    }

    async fn ensure_sandbox(&mut self, pod: &Pod) -> Option<String> {
        if let Some(id) = &self.sandbox {
            return Some(id.clone());
        }
        let config = self.sandbox_config(pod);
        if let Err(e) = tokio::fs::create_dir_all(self.log_dir()).await {
            tracing::warn!(pod = %self.label(), error = %e, "creating the pod log directory failed");
        }
        let mut rt = self.w.shared.cri.rt();
        let id = match rt
            .run_pod_sandbox(RunPodSandboxRequest {
                config: Some(config),
                runtime_handler: String::new(),
            })
            .await
        {
            Ok(r) => r.into_inner().pod_sandbox_id,
            Err(e) => {
                tracing::warn!(pod = %self.label(), error = %e.message(), "creating the pod sandbox failed");
                return None;
            }
        };
        tracing::info!(pod = %self.label(), sandbox = %id, "pod sandbox running");
        if let Ok(s) = rt
            .pod_sandbox_status(PodSandboxStatusRequest {
                pod_sandbox_id: id.clone(),
                verbose: false,
            })
            .await
        {
            self.pod_ip = s
                .into_inner()
                .status
                .and_then(|s| s.network)
                .map(|n| n.ip)
                .filter(|ip| !ip.is_empty());
        }
        self.sandbox = Some(id.clone());
        Some(id)
    }

    async fn sync(&mut self, pod: &Pod) {
        if !self.adopted {
            self.adopt(pod).await;
        }
        self.ensure_runtime_name().await;
        let spec_containers: Vec<Container> = pod
            .spec
            .as_ref()
            .map(|s| s.containers.clone())
            .unwrap_or_default();
        let policy = pod
            .spec
            .as_ref()
            .and_then(|s| s.restart_policy.clone())
            .unwrap_or_else(|| "Always".into());
        if self.terminal.is_none() {
            if let Some(sandbox) = self.ensure_sandbox(pod).await {
                for c in &spec_containers {
                    self.observe(&c.name).await;
                    self.sync_container(pod, &sandbox, c, &policy).await;
                }
            }
        } else {
            for c in &spec_containers {
                self.observe(&c.name).await;
            }
        }
        self.report(&spec_containers, &policy).await;
        self.stop_finished_sandbox().await;
    }

    /// A finished pod keeps its exited containers (their logs stay readable) but not its
    /// sandbox's processes: like the kubelet, stop the sandbox once.
    async fn stop_finished_sandbox(&mut self) {
        if self.terminal.is_none() || self.sandbox_stopped {
            return;
        }
        let Some(id) = self.sandbox.clone() else {
            return;
        };
        let request = StopPodSandboxRequest {
            pod_sandbox_id: id.clone(),
        };
        match self.w.shared.cri.rt().stop_pod_sandbox(request).await {
            Ok(_) => {
                tracing::info!(pod = %self.label(), sandbox = %id, "pod finished, sandbox stopped");
                self.sandbox_stopped = true;
            }
            Err(e) => {
                tracing::warn!(pod = %self.label(), error = %e.message(), "stopping the sandbox of a finished pod failed")
            }
        }
    }

    /// Refreshes the observed state of the current instance of container `name`.
    async fn observe(&mut self, name: &str) {
        let Some(id) = self.tracks.get(name).and_then(|t| t.id.clone()) else {
            return;
        };
        let result = self
            .w
            .shared
            .cri
            .rt()
            .container_status(ContainerStatusRequest {
                container_id: id.clone(),
                verbose: false,
            })
            .await;
        let full_id = self.full_id(&id);
        let label = self.label();
        let track = self.tracks.entry(name.to_string()).or_default();
        match result {
            Ok(r) => {
                let Some(s) = r.into_inner().status else {
                    return;
                };
                if !s.image_ref.is_empty() {
                    track.image_ref = s.image_ref.clone();
                }
                track.observed = Some(match ContainerState::try_from(s.state) {
                    Ok(ContainerState::ContainerRunning) => status::State::Running {
                        started_at: cri_time(s.started_at),
                    },
                    Ok(ContainerState::ContainerExited) => {
                        status::State::Terminated(status::Terminated {
                            exit_code: s.exit_code,
                            reason: if !s.reason.is_empty() {
                                s.reason
                            } else if s.exit_code == 0 {
                                "Completed".into()
                            } else {
                                "Error".into()
                            },
                            message: s.message,
                            started_at: cri_time(s.started_at),
                            finished_at: cri_time(s.finished_at),
                            container_id: full_id,
                        })
                    }
                    _ => status::State::Waiting {
                        reason: "ContainerCreating".into(),
                        message: String::new(),
                    },
                });
            }
            Err(e) if e.code() == tonic::Code::NotFound => {
                tracing::warn!(pod = %label, container = name, "container vanished from the runtime");
                track.id = None;
                track.observed = None;
            }
            Err(e) => {
                tracing::warn!(pod = %label, container = name, error = %e.message(), "container status failed")
            }
        }
    }

    fn full_id(&self, id: &str) -> String {
        format!("{}://{id}", self.runtime_name.as_deref().unwrap_or("cri"))
    }

    async fn sync_container(&mut self, pod: &Pod, sandbox: &str, c: &Container, policy: &str) {
        let label = self.label();
        let track = self.tracks.entry(c.name.clone()).or_default();
        let restart = match (&track.id, &track.observed) {
            (None, _) => false,
            (Some(_), Some(status::State::Terminated(t))) => {
                let wanted = policy == "Always" || (policy == "OnFailure" && t.exit_code != 0);
                if !wanted {
                    return;
                }
                true
            }
            (Some(_), _) => return,
        };
        let now = Instant::now();
        if restart && track.not_before.is_none() {
            // A fresh crash: schedule the restart after the back-off.
            track.not_before = Some(now + backoff(track.failures));
            track.failures += 1;
        }
        if track.not_before.is_some_and(|t| t > now) {
            if restart {
                track.waiting = Some((
                    "CrashLoopBackOff".into(),
                    format!(
                        "back-off {}s restarting failed container={} pod={}_{}({})",
                        backoff(track.failures.saturating_sub(1)).as_secs(),
                        c.name,
                        self.name,
                        self.namespace,
                        self.uid
                    ),
                ));
            }
            return;
        }
        track.not_before = None;
        let attempt = if restart {
            if let Some(status::State::Terminated(t)) = track.observed.take() {
                track.last_terminated = Some(t);
            }
            track.id = None;
            track.restarts += 1;
            track.restarts
        } else {
            track.restarts
        };
        match self.start_container(pod, sandbox, c, attempt).await {
            Ok((id, image_ref)) => {
                tracing::info!(pod = %label, container = %c.name, attempt, "container started");
                let track = self.tracks.entry(c.name.clone()).or_default();
                track.id = Some(id);
                track.image_ref = image_ref;
                track.waiting = None;
                track.observed = None;
                if !restart {
                    track.failures = 0;
                }
                self.remove_old_instances(&c.name, attempt).await;
                self.observe(&c.name).await;
            }
            Err((reason, message)) => {
                tracing::warn!(pod = %label, container = %c.name, %reason, %message, "starting the container failed");
                let track = self.tracks.entry(c.name.clone()).or_default();
                track.waiting = Some((reason, message));
                track.not_before = Some(Instant::now() + backoff(track.failures.max(1)));
                track.failures += 1;
            }
        }
    }

    /// Removes instances older than the previous one (which stays for `previous` logs).
    async fn remove_old_instances(&self, name: &str, attempt: u32) {
        let Ok(found) = self.w.shared.containers(&self.uid, name).await else {
            return;
        };
        let mut rt = self.w.shared.cri.rt();
        for old in found {
            if old
                .metadata
                .as_ref()
                .is_some_and(|m| m.attempt + 1 < attempt)
            {
                let _ = rt
                    .remove_container(RemoveContainerRequest {
                        container_id: old.id,
                    })
                    .await;
            }
        }
    }

    /// The user `image_ref` runs as, from the runtime's image status (unset when unknown).
    async fn image_user(&self, image_ref: &str) -> linux::ImageUser {
        let status = self
            .w
            .shared
            .cri
            .img()
            .image_status(ImageStatusRequest {
                image: Some(ImageSpec {
                    image: image_ref.to_string(),
                    ..Default::default()
                }),
                verbose: false,
            })
            .await;
        match status.ok().and_then(|r| r.into_inner().image) {
            Some(image) => match (image.uid, image.username) {
                (Some(uid), _) => linux::ImageUser::Uid(uid.value),
                (None, name) if !name.is_empty() => linux::ImageUser::Name(name),
                _ => linux::ImageUser::Unset,
            },
            None => linux::ImageUser::Unset,
        }
    }

    /// Makes the image present per the pull policy; `Err((reason, message))` for the status.
    async fn ensure_image(&self, c: &Container) -> Result<String, (String, String)> {
        let image = c.image.clone().unwrap_or_default();
        let policy = c.image_pull_policy.clone().unwrap_or_else(|| {
            let tagged = image
                .rsplit('/')
                .next()
                .is_some_and(|last| last.contains(':') || last.contains('@'));
            if !tagged || image.ends_with(":latest") {
                "Always".into()
            } else {
                "IfNotPresent".into()
            }
        });
        let spec = ImageSpec {
            image: image.clone(),
            ..Default::default()
        };
        let mut img = self.w.shared.cri.img();
        if policy != "Always" {
            match img
                .image_status(ImageStatusRequest {
                    image: Some(spec.clone()),
                    verbose: false,
                })
                .await
            {
                Ok(r) => {
                    if let Some(found) = r.into_inner().image {
                        return Ok(found.id);
                    }
                }
                Err(e) => {
                    return Err((
                        "ErrImageInspect".into(),
                        format!("Failed to inspect image {image:?}: {}", e.message()),
                    ));
                }
            }
            if policy == "Never" {
                return Err((
                    "ErrImageNeverPull".into(),
                    format!("Container image {image:?} is not present with pull policy of Never"),
                ));
            }
        }
        match img
            .pull_image(PullImageRequest {
                image: Some(spec),
                auth: None,
                sandbox_config: Some(self.sandbox_config(&self.pod())),
            })
            .await
        {
            Ok(r) => Ok(r.into_inner().image_ref),
            Err(e) => Err((
                "ErrImagePull".into(),
                format!("Failed to pull image {image:?}: {}", e.message()),
            )),
        }
    }

    /// Pulls (per policy), creates and starts one container instance.
    async fn start_container(
        &self,
        pod: &Pod,
        sandbox: &str,
        c: &Container,
        attempt: u32,
    ) -> Result<(String, String), (String, String)> {
        let image_ref = self.ensure_image(c).await?;
        let config_error = |message: String| ("CreateContainerConfigError".to_string(), message);
        let linux = linux::container_config(pod, c, crate::node::memory_capacity_bytes())
            .map_err(config_error)?;
        let mounts = volumes::prepare(&self.w.shared.root_dir, &self.uid, pod)
            .and_then(|ready| volumes::container_mounts(c, &ready))
            .map_err(config_error)?;
        if linux::check_run_as_non_root(pod, c, &linux::ImageUser::Unset).is_err() {
            let user = self.image_user(&image_ref).await;
            linux::check_run_as_non_root(pod, c, &user).map_err(config_error)?;
        }
        let dir = self.log_dir().join(&c.name);
        if let Err(e) = tokio::fs::create_dir_all(&dir).await {
            return Err((
                "CreateContainerError".into(),
                format!("creating log directory {}: {e}", dir.display()),
            ));
        }
        let labels = HashMap::from([
            (labels::CONTAINER_NAME.to_string(), c.name.clone()),
            (labels::POD_NAME.to_string(), self.name.clone()),
            (labels::POD_NAMESPACE.to_string(), self.namespace.clone()),
            (labels::POD_UID.to_string(), self.uid.clone()),
        ]);
        let envs = c
            .env
            .iter()
            .flatten()
            .filter_map(|e| {
                e.value.as_ref().map(|v| KeyValue {
                    key: e.name.clone(),
                    value: v.clone(),
                })
            })
            .collect();
        let config = ContainerConfig {
            metadata: Some(ContainerMetadata {
                name: c.name.clone(),
                attempt,
            }),
            image: Some(ImageSpec {
                image: image_ref.clone(),
                user_specified_image: c.image.clone().unwrap_or_default(),
                ..Default::default()
            }),
            command: c.command.clone().unwrap_or_default(),
            args: c.args.clone().unwrap_or_default(),
            working_dir: c.working_dir.clone().unwrap_or_default(),
            envs,
            labels,
            annotations: HashMap::from([(
                "io.kubernetes.container.restartCount".to_string(),
                attempt.to_string(),
            )]),
            log_path: format!("{}/{attempt}.log", c.name),
            stdin: c.stdin.unwrap_or(false),
            stdin_once: c.stdin_once.unwrap_or(false),
            tty: c.tty.unwrap_or(false),
            linux: Some(linux),
            mounts,
            ..Default::default()
        };
        let mut rt = self.w.shared.cri.rt();
        let id = rt
            .create_container(CreateContainerRequest {
                pod_sandbox_id: sandbox.to_string(),
                config: Some(config),
                sandbox_config: Some(self.sandbox_config(pod)),
            })
            .await
            .map_err(|e| ("CreateContainerError".to_string(), e.message().to_string()))?
            .into_inner()
            .container_id;
        if let Err(e) = rt
            .start_container(StartContainerRequest {
                container_id: id.clone(),
            })
            .await
        {
            let _ = rt
                .remove_container(RemoveContainerRequest {
                    container_id: id.clone(),
                })
                .await;
            return Err(("RunContainerError".into(), e.message().to_string()));
        }
        Ok((id, image_ref))
    }

    fn views(&self, spec_containers: &[Container]) -> Vec<status::ContainerView> {
        spec_containers
            .iter()
            .map(|c| {
                let track = self.tracks.get(&c.name);
                let waiting = |reason: &str, message: &str| status::State::Waiting {
                    reason: reason.into(),
                    message: message.into(),
                };
                let state = match track {
                    None => waiting("ContainerCreating", ""),
                    Some(t) => match (&t.waiting, &t.observed) {
                        (_, Some(status::State::Running { started_at })) => {
                            status::State::Running {
                                started_at: started_at.clone(),
                            }
                        }
                        (Some((reason, message)), _) => waiting(reason, message),
                        (None, Some(s)) => s.clone(),
                        (None, None) => waiting("ContainerCreating", ""),
                    },
                };
                status::ContainerView {
                    name: c.name.clone(),
                    image: c.image.clone().unwrap_or_default(),
                    image_id: track.map(|t| t.image_ref.clone()).unwrap_or_default(),
                    container_id: track.and_then(|t| t.id.as_ref()).map(|id| self.full_id(id)),
                    restart_count: track.map_or(0, |t| t.restarts),
                    state,
                    last_terminated: track.and_then(|t| t.last_terminated.clone()),
                }
            })
            .collect()
    }

    fn condition(&mut self, kind: &'static str, value: bool, reason: Option<&str>) -> Value {
        let at = match self.transitions.get(kind) {
            Some((v, at)) if *v == value => at.clone(),
            _ => {
                let at = now();
                self.transitions.insert(kind, (value, at.clone()));
                at
            }
        };
        let mut c = json!({
            "type": kind,
            "status": if value { "True" } else { "False" },
            "lastProbeTime": null,
            "lastTransitionTime": at,
        });
        if let Some(r) = reason {
            c["reason"] = json!(r);
        }
        c
    }

    async fn report(&mut self, spec_containers: &[Container], policy: &str) {
        // A pod that finished before this agent started, whose containers are gone (e.g.
        // removed with the sandbox at the last shutdown): its recorded status is all there is.
        if self.terminal.is_some() && self.tracks.values().all(|t| t.id.is_none()) {
            return;
        }
        let views = self.views(spec_containers);
        let phase = match self.terminal {
            Some(p) => p,
            None => status::phase(policy, &views),
        };
        if matches!(phase, "Succeeded" | "Failed") {
            self.terminal = Some(phase);
        }
        let ready = status::all_ready(&views) && phase == "Running";
        let not_ready = (!ready).then_some(if phase == "Succeeded" || phase == "Failed" {
            "PodCompleted"
        } else {
            "ContainersNotReady"
        });
        let conditions = vec![
            self.condition("PodReadyToStartContainers", self.sandbox.is_some(), None),
            self.condition("Initialized", true, None),
            self.condition("Ready", ready, not_ready),
            self.condition("ContainersReady", ready, not_ready),
            self.condition("PodScheduled", true, None),
        ];
        let host_ip = self.w.host_ip.to_string();
        let mut status = json!({
            "phase": phase,
            "conditions": conditions,
            "hostIP": host_ip,
            "hostIPs": [{ "ip": host_ip }],
            "startTime": self.start_time,
            // qosClass is the API server's (set at creation, never changed): not reported here.
            "containerStatuses": views.iter().map(status::container_json).collect::<Vec<_>>(),
        });
        if let Some(ip) = &self.pod_ip {
            status["podIP"] = json!(ip);
            status["podIPs"] = json!([{ "ip": ip }]);
        }
        let status = json!({ "status": status });
        if self.reported.as_ref() == Some(&status) {
            return;
        }
        match self
            .w
            .api
            .patch_status(&self.name, &PatchParams::default(), &Patch::Merge(&status))
            .await
        {
            Ok(_) => {
                tracing::debug!(pod = %self.label(), phase, "pod status updated");
                self.reported = Some(status);
            }
            Err(e) => {
                tracing::warn!(pod = %self.label(), error = %e, "updating the pod status failed")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_five_minutes() {
        assert_eq!(backoff(0), Duration::ZERO);
        assert_eq!(backoff(1), Duration::from_secs(10));
        assert_eq!(backoff(2), Duration::from_secs(20));
        assert_eq!(backoff(6), Duration::from_secs(300));
        assert_eq!(backoff(60), Duration::from_secs(300));
    }

    #[test]
    fn cri_times() {
        assert_eq!(cri_time(0), None);
        assert_eq!(
            cri_time(1_700_000_000_500_000_000).as_deref(),
            Some("2023-11-14T22:13:20Z")
        );
    }
}
