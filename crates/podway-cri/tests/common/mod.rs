//! Test fixture: a real CRI daemon (podway runtime, runc) on a unix socket in a temp dir, with the
//! demo busybox image imported, and a gRPC client connected through that socket.
#![allow(dead_code)] // each test binary uses a different part of the fixture

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use futures::StreamExt;
use hyper_util::rt::TokioIo;
use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use podway_cri::{Config, RuntimeDaemon};
use podway_runtime::RuntimeConfig;
use tokio::net::UnixStream;
use tokio_tungstenite::tungstenite::{self, Message, client::IntoClientRequest};
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint, Uri};

/// The image the tests run.
pub const IMAGE: &str = "busybox:1.35";

/// The `podway` binary (shim and pause): `PODWAY_BIN`, else `target/debug/podway` next to the
/// test executable (`cargo build -p podway` first).
fn podway_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("PODWAY_BIN") {
        return bin.into();
    }
    let exe = std::env::current_exe().expect("test executable path");
    // target/debug/deps/TEST → target/debug/podway
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable lives in target/debug/deps")
        .join("podway");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p podway` or set PODWAY_BIN",
        bin.display()
    );
    bin
}

fn oci_runtime() -> PathBuf {
    [
        "/usr/sbin/runc",
        "/usr/bin/runc",
        "/usr/local/sbin/runc",
        "/usr/local/bin/runc",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
    .expect("runc is installed")
}

/// The demo image archive, built with `scripts/demo-image.sh` into cargo's scratch folder for
/// tests (`target/tmp`), once for every test binary: a temp dir held by a static would never be
/// removed, since statics are not dropped.
pub fn demo_archive() -> &'static Path {
    static ARCHIVE: OnceLock<PathBuf> = OnceLock::new();
    ARCHIVE.get_or_init(|| {
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("podway-cri-demo.tar");
        if out.exists() {
            return out;
        }
        // Built beside it and renamed: test binaries running at once never see half a file.
        let partial = out.with_extension(format!("tar.{}", std::process::id()));
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/demo-image.sh");
        let status = Command::new("bash")
            .arg(&script)
            .arg(&partial)
            .stdout(std::process::Stdio::null())
            .status()
            .expect("running scripts/demo-image.sh");
        assert!(status.success(), "scripts/demo-image.sh failed: {status}");
        std::fs::rename(&partial, &out).expect("placing the demo image");
        out
    })
}

/// Whether a live (not zombie) process runs exactly `argv`, anywhere on the host.
pub fn running(argv: &[&str]) -> bool {
    let want: Vec<u8> = argv
        .iter()
        .flat_map(|a| [a.as_bytes(), b"\0"].concat())
        .collect();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return false;
    };
    procs.flatten().any(|p| {
        let dir = p.path();
        std::fs::read(dir.join("cmdline")).is_ok_and(|c| c == want) && !zombie(&dir)
    })
}

/// Whether the process of `/proc/PID` folder `proc_dir` is a zombie.
fn zombie(proc_dir: &Path) -> bool {
    std::fs::read_to_string(proc_dir.join("stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
    })
}

/// A CRI client pair over a unix socket.
#[derive(Clone)]
pub struct Clients {
    pub runtime: RuntimeServiceClient<Channel>,
    pub images: ImageServiceClient<Channel>,
}

impl Clients {
    /// ContainerStatus of container `id` (the test fails if the runtime refuses).
    pub async fn container_status(&mut self, id: &str) -> cri::ContainerStatus {
        self.runtime
            .container_status(cri::ContainerStatusRequest {
                container_id: id.to_owned(),
                verbose: false,
            })
            .await
            .expect("ContainerStatus")
            .into_inner()
            .status
            .expect("a status")
    }
}

/// Connects to the CRI socket at `path`.
pub async fn connect(path: &Path) -> Clients {
    let path = path.to_path_buf();
    let channel = Endpoint::try_from("http://[::]:50051")
        .expect("endpoint")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
        }))
        .await
        .expect("connecting to the CRI socket");
    Clients {
        runtime: RuntimeServiceClient::new(channel.clone()),
        images: ImageServiceClient::new(channel),
    }
}

/// A running daemon in its own temp dir; dropping it removes every sandbox it made and stops it.
pub struct Daemon {
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub stream_addr: std::net::SocketAddr,
    pub clients: Clients,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<Result<(), podway_cri::Error>>>,
}

impl Daemon {
    /// Starts a daemon with the demo image imported; `adjust` may change the config.
    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> Daemon {
        let dir = tempfile::tempdir().expect("temp dir");
        let data_dir = dir.path().join("data");
        let archive = demo_archive();
        podway_runtime::images::open_store(&data_dir)
            .expect("opening the image store")
            .import_archive(archive, Some(IMAGE))
            .expect("importing the demo image");
        let runtime = RuntimeConfig {
            data_dir,
            state_dir: dir.path().join("state"),
            oci_runtime: oci_runtime(),
            podway_bin: podway_bin(),
        };
        // A socket folder that does not exist yet: bind creates it.
        let socket = dir.path().join("run/cri.sock");
        let mut config = Config::new(socket.clone(), runtime);
        adjust(&mut config);
        let daemon = RuntimeDaemon::bind(config)
            .await
            .expect("binding the daemon");
        let stream_addr = daemon.stream_addr();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(daemon.run(shutdown.clone()));
        let clients = connect(&socket).await;
        Daemon {
            dir,
            socket,
            stream_addr,
            clients,
            shutdown,
            task: Some(task),
        }
    }

    /// Starts a daemon with the default config.
    pub async fn start() -> Daemon {
        Daemon::start_with(|_| {}).await
    }

    /// Stops the daemon and waits until `run` returned.
    pub async fn stop(mut self) -> Result<(), podway_cri::Error> {
        self.cleanup();
        self.shutdown.cancel();
        let task = self.task.take().expect("daemon task");
        task.await.expect("daemon task panicked")
    }

    /// Removes every sandbox through a fresh connection on a thread of its own (works from Drop,
    /// also while a test unwinds), then kills and unmounts whatever that left (a test that
    /// failed half-way can leave a container its runtime cannot stop).
    fn cleanup(&self) {
        let socket = self.socket.clone();
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("cleanup runtime");
            rt.block_on(async move {
                let mut clients = connect(&socket).await;
                let Ok(list) = clients
                    .runtime
                    .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
                    .await
                else {
                    return;
                };
                for sandbox in list.into_inner().items {
                    let id = sandbox.id;
                    let _ = clients
                        .runtime
                        .stop_pod_sandbox(cri::StopPodSandboxRequest {
                            pod_sandbox_id: id.clone(),
                        })
                        .await;
                    let _ = clients
                        .runtime
                        .remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: id })
                        .await;
                }
            });
        });
        let _ = done.join();
        let (data, state) = (self.dir.path().join("data"), self.dir.path().join("state"));
        podway_runtime::killall::killall(&data, &state, &oci_runtime());
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.task.is_some() {
            self.cleanup();
            self.shutdown.cancel();
        }
    }
}

/// A sandbox config for pod `name` in namespace `test`, logging under `log_dir`.
pub fn sandbox_config(name: &str, log_dir: &Path) -> cri::PodSandboxConfig {
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: name.to_owned(),
            uid: format!("uid-{name}"),
            namespace: "test".to_owned(),
            attempt: 0,
        }),
        hostname: name.to_owned(),
        log_directory: log_dir.to_string_lossy().into_owned(),
        labels: [("app".to_owned(), name.to_owned())].into(),
        ..Default::default()
    }
}

/// A container config running `command` in the demo image, logging to `NAME/0.log`.
pub fn container_config(name: &str, command: &[&str]) -> cri::ContainerConfig {
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: name.to_owned(),
            attempt: 0,
        }),
        image: Some(cri::ImageSpec {
            image: IMAGE.to_owned(),
            ..Default::default()
        }),
        command: command.iter().map(|s| (*s).to_owned()).collect(),
        log_path: format!("{name}/0.log"),
        labels: [("container".to_owned(), name.to_owned())].into(),
        ..Default::default()
    }
}

/// Runs a sandbox and one started container in it; returns (sandbox id, container id).
pub async fn run_pod(
    clients: &mut Clients,
    name: &str,
    log_dir: &Path,
    command: &[&str],
) -> (String, String) {
    let sandbox = clients
        .runtime
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(sandbox_config(name, log_dir)),
            runtime_handler: String::new(),
        })
        .await
        .expect("RunPodSandbox")
        .into_inner()
        .pod_sandbox_id;
    let container = clients
        .runtime
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: sandbox.clone(),
            config: Some(container_config(name, command)),
            sandbox_config: Some(sandbox_config(name, log_dir)),
        })
        .await
        .expect("CreateContainer")
        .into_inner()
        .container_id;
    clients
        .runtime
        .start_container(cri::StartContainerRequest {
            container_id: container.clone(),
        })
        .await
        .expect("StartContainer");
    (sandbox, container)
}

/// Waits (bounded) until `check` holds; panics with `what` otherwise.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..300 {
        if check().await {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("gave up waiting: {what}");
}

/// A client WebSocket.
pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens a WebSocket to a streaming URL offering `protocol`.
pub async fn websocket(url: &str, protocol: &str) -> Result<Ws, tungstenite::Error> {
    let url = url.replacen("http://", "ws://", 1);
    let mut request = url.into_client_request()?;
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        protocol.parse().expect("header value"),
    );
    let (ws, response) = tokio_tungstenite::connect_async(request).await?;
    assert_eq!(
        response
            .headers()
            .get("Sec-WebSocket-Protocol")
            .and_then(|v| v.to_str().ok()),
        Some(protocol)
    );
    Ok(ws)
}

/// Reads a channel-protocol session to its end: bytes per channel.
pub async fn channels(ws: &mut Ws) -> BTreeMap<u8, Vec<u8>> {
    let mut out: BTreeMap<u8, Vec<u8>> = BTreeMap::new();
    while let Some(msg) = ws.next().await {
        match msg {
            Ok(Message::Binary(data)) => {
                if let Some((&ch, rest)) = data.split_first() {
                    out.entry(ch).or_default().extend_from_slice(rest);
                }
            }
            Ok(Message::Close(_)) => break,
            Ok(_) => {}
            Err(tungstenite::Error::ConnectionClosed) => break,
            Err(err) => panic!("websocket error: {err}"),
        }
    }
    out
}

/// The status JSON of channel 3.
pub fn status_of(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|e| panic!("status JSON {:?}: {e}", String::from_utf8_lossy(bytes)))
}

/// Runs a pod whose container serves `/var/www` with busybox httpd on its localhost:8080 and
/// waits until it answers (probed from inside the pod with ExecSync); returns (sandbox, container).
pub async fn run_httpd_pod(c: &mut Clients, name: &str, log_dir: &Path) -> (String, String) {
    let (sandbox, container) = run_pod(
        c,
        name,
        log_dir,
        &["httpd", "-f", "-p", "8080", "-h", "/var/www"],
    )
    .await;
    let probe = c.clone();
    eventually("httpd answering inside the pod", || {
        let mut probe = probe.clone();
        let container = container.clone();
        async move {
            probe
                .runtime
                .exec_sync(cri::ExecSyncRequest {
                    container_id: container,
                    cmd: vec![
                        "wget".into(),
                        "-q".into(),
                        "-O-".into(),
                        "http://127.0.0.1:8080/".into(),
                    ],
                    timeout: 5,
                })
                .await
                .is_ok_and(|r| r.into_inner().exit_code == 0)
        }
    })
    .await;
    (sandbox, container)
}
