//! The runtime's public types and the [`Runtime`] handle.
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

use crate::images::ImageStore;

/// Errors of the runtime; each names the object and the cause.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No such image, sandbox or container (the text names which).
    #[error("{0} not found")]
    NotFound(String),
    /// The object exists already (e.g. a sandbox with the same name/namespace/uid/attempt).
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// The request is malformed (empty command, bad port, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A registry refused the credentials given (or asked for some and got none).
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    /// The object is in the wrong state (exec into a stopped container, remove an image in use).
    #[error("failed precondition: {0}")]
    FailedPrecondition(String),
    /// The OCI runtime or another command failed.
    #[error("{0}")]
    Command(String),
    /// An I/O error with context.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// Result alias of the runtime.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where the runtime keeps its files and which programs it runs.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Persistent data: `images/` (blobs, index), `snapshots/`, `containers/`, `sandboxes/`.
    pub data_dir: PathBuf,
    /// Volatile state (sockets, runc root): `/run/podway` by default.
    pub state_dir: PathBuf,
    /// The OCI runtime binary (runc; crun and youki are CLI-compatible).
    pub oci_runtime: PathBuf,
    /// The podway binary, re-executed as `podway shim …` and `podway pause`.
    pub podway_bin: PathBuf,
}

/// A terminal size for a TTY process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowSize {
    /// Columns.
    pub cols: u16,
    /// Rows.
    pub rows: u16,
}

/// The client side of a process's standard streams.
#[derive(Default)]
pub struct ProcessIo {
    /// Bytes for the process's stdin; EOF closes the process's stdin.
    pub stdin: Option<Box<dyn AsyncRead + Send + Unpin>>,
    /// Receives the process's stdout (with a tty: the terminal output).
    pub stdout: Option<Box<dyn AsyncWrite + Send + Unpin>>,
    /// Receives the process's stderr (never with a tty).
    pub stderr: Option<Box<dyn AsyncWrite + Send + Unpin>>,
    /// Terminal size changes (tty only).
    pub resize: Option<mpsc::Receiver<WindowSize>>,
}

/// What a pod sandbox is asked to be.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct SandboxSpec {
    /// Pod name.
    pub name: String,
    /// Pod namespace.
    pub namespace: String,
    /// Pod uid.
    pub uid: String,
    /// Attempt number (CRI metadata).
    pub attempt: u32,
    /// Hostname inside the pod's UTS namespace.
    pub hostname: String,
    /// Folder of the pod's container log files.
    pub log_directory: Option<PathBuf>,
    /// CRI labels.
    pub labels: BTreeMap<String, String>,
    /// CRI annotations.
    pub annotations: BTreeMap<String, String>,
    /// Which namespaces the pod shares with the host or among its containers.
    #[serde(default)]
    pub namespaces: PodNamespaces,
}

/// A pod's namespace choices (the CRI's `NamespaceOption`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PodNamespaces {
    /// The pod uses the host's network (and UTS) namespace (`hostNetwork`).
    #[serde(default)]
    pub host_network: bool,
    /// The pod uses the host's IPC namespace (`hostIPC`).
    #[serde(default)]
    pub host_ipc: bool,
    /// Where the containers' processes live.
    #[serde(default)]
    pub pid: PidNamespace,
}

/// The PID namespace of a pod's containers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum PidNamespace {
    /// Each container has its own, its process is PID 1.
    #[default]
    Container,
    /// The containers share one (`shareProcessNamespace`), whose PID 1 is the pause process.
    Pod,
    /// The host's (`hostPID`).
    Host,
}

/// Sandbox state as the CRI sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SandboxState {
    /// The pause process holds the namespaces.
    Ready,
    /// Stopped (or its pause process is gone).
    NotReady,
}

/// A pod sandbox as it is now.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SandboxInfo {
    /// Sandbox id (64 hex characters).
    pub id: String,
    /// What it was created from.
    pub spec: SandboxSpec,
    /// Ready or not.
    pub state: SandboxState,
    /// Creation time, nanoseconds since the Unix epoch.
    pub created_at: i64,
    /// Path of its network namespace (e.g. a pinned bind mount or `/proc/PID/ns/net`).
    pub netns_path: PathBuf,
    /// Pid of the pause process (0 when stopped).
    pub pid: u32,
}

/// A bind mount into a container.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct MountSpec {
    /// Source on the host.
    pub host_path: PathBuf,
    /// Destination inside the container.
    pub container_path: PathBuf,
    /// Mounted read-only.
    pub readonly: bool,
}

/// What a container is asked to be.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct ContainerSpec {
    /// Container name within the pod.
    pub name: String,
    /// Attempt (restart count).
    pub attempt: u32,
    /// Image reference (name or id) as given by the client.
    pub image: String,
    /// Entrypoint override (Kubernetes `command`); empty = the image's Entrypoint.
    pub command: Vec<String>,
    /// Arguments (Kubernetes `args`); empty with empty `command` = the image's Cmd.
    pub args: Vec<String>,
    /// Environment, added to the image's.
    pub env: Vec<(String, String)>,
    /// Working directory; `None` = the image's.
    pub working_dir: Option<String>,
    /// Run on a terminal.
    pub tty: bool,
    /// Keep stdin open for attach.
    pub stdin: bool,
    /// Close stdin after the first attach ends.
    pub stdin_once: bool,
    /// Absolute path of the CRI log file.
    pub log_path: Option<PathBuf>,
    /// Bind mounts.
    pub mounts: Vec<MountSpec>,
    /// CRI labels.
    pub labels: BTreeMap<String, String>,
    /// CRI annotations.
    pub annotations: BTreeMap<String, String>,
    /// User, capabilities and other privileges of its process.
    #[serde(default)]
    pub security: SecuritySpec,
    /// cgroup limits.
    #[serde(default)]
    pub resources: ResourceSpec,
}

/// The user and privileges of a container's process (the CRI's Linux security context).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SecuritySpec {
    /// Numeric user id; overrides the image's user.
    pub run_as_user: Option<u32>,
    /// User name, looked up in the image's `/etc/passwd`; overrides the image's user.
    pub run_as_username: Option<String>,
    /// Primary group id (only with `run_as_user` or `run_as_username`).
    pub run_as_group: Option<u32>,
    /// Extra group ids, added to the user's groups from the image's `/etc/group`.
    pub supplemental_groups: Vec<u32>,
    /// The root filesystem is mounted read-only.
    pub readonly_rootfs: bool,
    /// Every capability, no masked or read-only paths, every device allowed.
    pub privileged: bool,
    /// Capabilities added to the default set (`NET_ADMIN` or `CAP_NET_ADMIN`; `ALL`).
    pub add_capabilities: Vec<String>,
    /// Capabilities dropped from the default set (`ALL` drops every one before the adds).
    pub drop_capabilities: Vec<String>,
    /// Sets `no_new_privs`: setuid binaries and file capabilities grant nothing.
    pub no_new_privs: bool,
    /// Paths masked inside the container; `None` = the default set.
    pub masked_paths: Option<Vec<String>>,
    /// Paths mounted read-only inside the container; `None` = the default set.
    pub readonly_paths: Option<Vec<String>>,
    /// The system-call filter (none for a privileged container, whatever is asked).
    #[serde(default)]
    pub seccomp: SeccompProfile,
}

/// A container's seccomp profile (the CRI's `SecurityProfile`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SeccompProfile {
    /// No filter.
    #[default]
    Unconfined,
    /// podway's default filter: system calls that reach past the container (kernel modules,
    /// reboot, clocks, keyrings, mounts, new user namespaces, BPF, io_uring…) fail with EPERM.
    RuntimeDefault,
    /// An OCI seccomp profile (JSON, as in `config.json`'s `linux.seccomp`) read from this file
    /// on the host.
    Localhost(std::path::PathBuf),
}

/// cgroup limits of a container (the CRI's `LinuxContainerResources`); `None` = not limited.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ResourceSpec {
    /// CPU shares (relative weight, `cpu.shares`).
    pub cpu_shares: Option<u64>,
    /// CPU time per period in microseconds (`cpu.cfs_quota_us`).
    pub cpu_quota: Option<i64>,
    /// The CFS period in microseconds (`cpu.cfs_period_us`).
    pub cpu_period: Option<u64>,
    /// Memory limit in bytes (`memory.limit_in_bytes`).
    pub memory_limit_bytes: Option<i64>,
    /// Memory plus swap limit in bytes (`memory.memsw.limit_in_bytes`).
    pub memory_swap_limit_bytes: Option<i64>,
    /// CPUs the container may use (`cpuset.cpus`, e.g. `0-1`).
    pub cpuset_cpus: Option<String>,
    /// Memory nodes the container may use (`cpuset.mems`).
    pub cpuset_mems: Option<String>,
    /// Most tasks at once (`pids.max`).
    pub pids_limit: Option<i64>,
    /// The OOM killer's score adjustment of the process (applied at start only).
    pub oom_score_adj: Option<i32>,
}

/// Container state as the CRI sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ContainerState {
    /// Created, not started.
    Created,
    /// Its process runs.
    Running,
    /// Its process has exited.
    Exited,
    /// The runtime cannot tell.
    Unknown,
}

/// A container as it is now.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ContainerInfo {
    /// Container id (64 hex characters).
    pub id: String,
    /// Its sandbox.
    pub sandbox_id: String,
    /// What it was created from.
    pub spec: ContainerSpec,
    /// Resolved image id (`sha256:…` of the image config).
    pub image_id: String,
    /// State.
    pub state: ContainerState,
    /// Nanoseconds since the epoch (0 = not yet).
    pub created_at: i64,
    /// Nanoseconds since the epoch (0 = not yet).
    pub started_at: i64,
    /// Nanoseconds since the epoch (0 = not yet).
    pub finished_at: i64,
    /// Exit code once exited.
    pub exit_code: i32,
    /// Short reason once exited (`Completed`, `Error`, `OOMKilled`).
    pub reason: String,
    /// Longer message (e.g. why it failed to start).
    pub message: String,
    /// Pid of the main process while running (0 otherwise).
    pub pid: u32,
}

/// Output of [`Runtime::exec_sync`] (each stream capped at 16 MiB).
#[derive(Debug, Clone, Default)]
pub struct ExecSyncOutput {
    /// Captured stdout.
    pub stdout: Vec<u8>,
    /// Captured stderr.
    pub stderr: Vec<u8>,
    /// Exit code (-1 when killed by the timeout).
    pub exit_code: i32,
}

/// The runtime handle; cheap to clone, safe to share between tasks.
#[derive(Clone)]
pub struct Runtime {
    inner: std::sync::Arc<crate::api::Inner>,
}

#[doc(hidden)]
pub struct Inner {
    pub(crate) config: RuntimeConfig,
    pub(crate) images: ImageStore,
    /// Every container record, as on disk (kept in step by every write).
    pub(crate) containers: crate::index::Index<crate::container::ContainerEntry>,
    /// Every sandbox record, as on disk.
    pub(crate) sandboxes: crate::index::Index<crate::sandbox::SandboxRecord>,
    /// Held while a pod monitor is looked up or started (one per pod, even under races).
    pub(crate) shim_lock: std::sync::Mutex<()>,
}

impl Runtime {
    /// Opens (or creates) the runtime's folders and finds sandboxes and containers left by an
    /// earlier run (their monitors kept them running).
    pub async fn open(config: RuntimeConfig) -> Result<Runtime> {
        for dir in [
            config.data_dir.join("sandboxes"),
            config.data_dir.join("containers"),
            config.state_dir.join("runc"),
            config.state_dir.join("exec"),
            config.state_dir.join("attach"),
            config.state_dir.join("shims"),
        ] {
            crate::util::create_dir_all(&dir)?;
        }
        let images = crate::images::open_store(&config.data_dir)?;
        let inner = Inner {
            config,
            images,
            containers: crate::index::Index::default(),
            sandboxes: crate::index::Index::default(),
            shim_lock: std::sync::Mutex::new(()),
        };
        crate::sandbox::load(&inner)?;
        crate::container::load(&inner)?;
        let sandboxes = crate::sandbox::list(&inner)?;
        let containers = crate::container::list(&inner)?;
        tracing::info!(
            data_dir = %inner.config.data_dir.display(),
            sandboxes = sandboxes.len(),
            containers = containers.len(),
            "runtime opened"
        );
        Ok(Runtime {
            inner: std::sync::Arc::new(inner),
        })
    }
    /// The image store.
    pub fn images(&self) -> &ImageStore {
        &self.inner.images
    }
    /// Pulls `reference` from its registry into the image store (see [`crate::pull::pull`]).
    pub async fn pull_image(
        &self,
        reference: &str,
        options: &crate::pull::PullOptions,
    ) -> Result<crate::images::Image> {
        crate::pull::pull(&self.inner.images, reference, options).await
    }
    /// [`Runtime::pull_image`] with credentials for the image's registry.
    pub async fn pull_image_with_credentials(
        &self,
        reference: &str,
        options: &crate::pull::PullOptions,
        credentials: &crate::pull::RegistryCredentials,
    ) -> Result<crate::images::Image> {
        crate::pull::pull_with_credentials(&self.inner.images, reference, options, credentials)
            .await
    }
    /// Starts a sandbox: its namespaces, held by a `podway pause` process; loopback up, hostname set.
    pub async fn run_sandbox(&self, spec: SandboxSpec) -> Result<SandboxInfo> {
        crate::sandbox::run(&self.inner, spec).await
    }
    /// Stops every container of the sandbox and its pause process (idempotent).
    pub async fn stop_sandbox(&self, id: &str) -> Result<()> {
        crate::sandbox::stop(&self.inner, id).await
    }
    /// Removes a stopped sandbox and its containers, leaving no mount, process or folder (idempotent).
    pub async fn remove_sandbox(&self, id: &str) -> Result<()> {
        crate::sandbox::remove(&self.inner, id).await
    }
    /// One sandbox.
    pub async fn sandbox(&self, id: &str) -> Result<SandboxInfo> {
        crate::sandbox::get(&self.inner, id)
    }
    /// Every sandbox.
    pub async fn list_sandboxes(&self) -> Result<Vec<SandboxInfo>> {
        crate::sandbox::list(&self.inner)
    }
    /// Creates a container in a sandbox (rootfs, OCI bundle); returns its id.
    pub async fn create_container(&self, sandbox_id: &str, spec: ContainerSpec) -> Result<String> {
        crate::container::create(&self.inner, sandbox_id, spec).await
    }
    /// Starts a created container's process under the pod's monitor.
    pub async fn start_container(&self, id: &str) -> Result<()> {
        crate::container::start(&self.inner, id).await
    }
    /// SIGTERM, then SIGKILL after `grace` (idempotent).
    pub async fn stop_container(&self, id: &str, grace: Duration) -> Result<()> {
        crate::container::stop(&self.inner, id, grace).await
    }
    /// Removes a container (stopping it first), its rootfs mount and bundle (idempotent).
    pub async fn remove_container(&self, id: &str) -> Result<()> {
        crate::container::remove(&self.inner, id).await
    }
    /// One container.
    pub async fn container(&self, id: &str) -> Result<ContainerInfo> {
        crate::container::get(&self.inner, id)
    }
    /// Every container.
    pub async fn list_containers(&self) -> Result<Vec<ContainerInfo>> {
        crate::container::list(&self.inner)
    }
    /// Changes the cgroup limits of a created or running container (`runc update` when it
    /// runs); the fields set in `resources` replace the container's, the others stay.
    pub async fn update_container_resources(
        &self,
        id: &str,
        resources: ResourceSpec,
    ) -> Result<()> {
        crate::resources::update(&self.inner, id, resources).await
    }
    /// Runs `cmd` in a running container with `io`; returns the exit code.
    pub async fn exec(&self, id: &str, cmd: Vec<String>, tty: bool, io: ProcessIo) -> Result<i32> {
        crate::exec::exec(&self.inner, id, cmd, tty, io, None).await
    }
    /// Runs `cmd` and captures its output, killed after `timeout` (None = no limit).
    pub async fn exec_sync(
        &self,
        id: &str,
        cmd: Vec<String>,
        timeout: Option<Duration>,
    ) -> Result<ExecSyncOutput> {
        crate::exec::exec_sync(&self.inner, id, cmd, timeout).await
    }
    /// Attaches `io` to the container's main process; returns when the client or the process ends.
    pub async fn attach(&self, id: &str, io: ProcessIo) -> Result<()> {
        crate::attach::attach(&self.inner, id, io).await
    }
    /// Makes the container's monitor reopen its log file at the same path (after rotation).
    pub async fn reopen_container_log(&self, id: &str) -> Result<()> {
        crate::attach::reopen_log(&self.inner, id).await
    }
    /// Connects to `localhost:port` inside the sandbox's network namespace.
    pub async fn port_forward(&self, sandbox_id: &str, port: u16) -> Result<tokio::net::TcpStream> {
        let fail = |cause: String| {
            Error::Command(format!(
                "failed to connect to localhost:{port} inside the network namespace of sandbox {sandbox_id}: {cause}"
            ))
        };
        let sandbox = crate::sandbox::get(&self.inner, sandbox_id)?;
        if sandbox.state != SandboxState::Ready {
            return Err(fail("the sandbox is not ready".into()));
        }
        let netns = sandbox.netns_path.clone();
        let stream = tokio::task::spawn_blocking(move || crate::netns::connect_in(&netns, port))
            .await
            .map_err(|e| fail(e.to_string()))?
            .map_err(|e| fail(e.to_string()))?;
        stream
            .set_nonblocking(true)
            .map_err(|e| fail(e.to_string()))?;
        tokio::net::TcpStream::from_std(stream).map_err(|e| fail(e.to_string()))
    }
}
