//! The node agent end to end, in one process: our API server (SQLite store, its scheduler), our
//! CRI runtime (runc) and the agent, each on temp dirs and loopback ports. A user's view: the
//! node registers Ready, a pod runs and reports its container, its log is served by the agent
//! (directly, with a client certificate, and through the API server), exits are reported, and
//! deleting a pod removes it and its sandbox. Needs root, runc, umoci and busybox-static
//! (`scripts/demo-image.sh`) and the `podway` binary (`cargo build -p podway` or `PODWAY_BIN`).

use std::{
    net::{Ipv4Addr, SocketAddr, TcpListener as StdListener},
    path::{Path, PathBuf},
    process::Command,
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use k8s_cri::v1::{
    ListPodSandboxRequest, RemovePodSandboxRequest, StopPodSandboxRequest,
    runtime_service_client::RuntimeServiceClient,
};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::{
    Api, Client,
    api::{DeleteParams, LogParams, PostParams},
    config::{KubeConfigOptions, Kubeconfig},
};
use podway_node::{Config, NodeAgent};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::{TcpStream, UnixStream};
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};

const NODE: &str = "testnode";
const IMAGE: &str = "busybox:1.35";

/// The `podway` binary (shim and pause).
fn podway_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("PODWAY_BIN") {
        return bin.into();
    }
    let exe = std::env::current_exe().expect("test executable path");
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

fn free_port() -> u16 {
    StdListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

async fn cri_client(socket: &Path) -> RuntimeServiceClient<Channel> {
    let socket = socket.to_path_buf();
    let channel = Endpoint::try_from("http://[::]:50051")
        .expect("endpoint")
        .connect_with_connector(tower::service_fn(move |_| {
            let p = socket.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(p).await?)) }
        }))
        .await
        .expect("connecting to the CRI socket");
    RuntimeServiceClient::new(channel)
}

/// Removes every sandbox of the runtime at `socket` (from a thread of its own: works in Drop).
fn remove_sandboxes(socket: &Path) {
    let socket = socket.to_path_buf();
    let _ = std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async move {
            let mut cri = cri_client(&socket).await;
            let Ok(list) = cri
                .list_pod_sandbox(ListPodSandboxRequest { filter: None })
                .await
            else {
                return;
            };
            for s in list.into_inner().items {
                let _ = cri
                    .stop_pod_sandbox(StopPodSandboxRequest {
                        pod_sandbox_id: s.id.clone(),
                    })
                    .await;
                let _ = cri
                    .remove_pod_sandbox(RemovePodSandboxRequest {
                        pod_sandbox_id: s.id,
                    })
                    .await;
            }
        });
    })
    .join();
}

/// All three tiers; dropping it stops them and removes whatever sandboxes are left.
struct Cluster {
    dir: tempfile::TempDir,
    pki: podway_apiserver::pki::Pki,
    cri_socket: PathBuf,
    agent_addr: SocketAddr,
    admin: Client,
    agent_stop: CancellationToken,
    agent: Option<tokio::task::JoinHandle<Result<(), podway_node::Error>>>,
    stop: CancellationToken,
}

impl Cluster {
    async fn start() -> Cluster {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let dir = tempfile::tempdir().expect("temp dir");
        let stop = CancellationToken::new();

        // API server.
        let api_port = free_port();
        let data = dir.path().join("data");
        let pki = podway_apiserver::pki::ensure(&data, NODE, api_port).expect("pki");
        let api = podway_apiserver::ApiServer::bind(podway_apiserver::Config {
            data_dir: data.clone(),
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, api_port)),
            pki: pki.clone(),
            kubelet_port: 10250,
        })
        .await
        .expect("binding the API server");
        tokio::spawn(api.run(stop.clone()));

        // Runtime, with the demo image.
        let archive = dir.path().join("demo.tar");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/demo-image.sh");
        let status = Command::new("bash")
            .arg(&script)
            .arg(&archive)
            .stdout(std::process::Stdio::null())
            .status()
            .expect("running scripts/demo-image.sh");
        assert!(status.success(), "scripts/demo-image.sh failed: {status}");
        let runtime_data = dir.path().join("runtime");
        podway_runtime::images::open_store(&runtime_data)
            .expect("image store")
            .import_archive(&archive, Some(IMAGE))
            .expect("importing the demo image");
        let cri_socket = dir.path().join("run/cri.sock");
        let runtime = podway_runtime::RuntimeConfig {
            data_dir: runtime_data,
            state_dir: dir.path().join("state"),
            oci_runtime: PathBuf::from("runc"),
            podway_bin: podway_bin(),
        };
        let daemon =
            podway_cri::RuntimeDaemon::bind(podway_cri::Config::new(cri_socket.clone(), runtime))
                .await
                .expect("binding the runtime");
        tokio::spawn(daemon.run(stop.clone()));

        // Node agent.
        let agent = NodeAgent::bind(Config {
            node_name: NODE.to_string(),
            kubeconfig: pki.node_kubeconfig.clone(),
            cri_socket: cri_socket.clone(),
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            advertise_address: Ipv4Addr::LOCALHOST.into(),
            tls_cert: pki.node_cert.clone(),
            tls_key: pki.node_key.clone(),
            client_ca: pki.ca_cert.clone(),
            pod_log_dir: dir.path().join("pods"),
            root_dir: dir.path().join("node"),
            enable_debugging_handlers: true,
            log_rotation: podway_node::LogRotation::default(),
            stop_pods_on_exit: true,
        })
        .await
        .expect("binding the node agent");
        let agent_addr = agent.local_addr();
        let agent_stop = CancellationToken::new();
        let agent = tokio::spawn(agent.run(agent_stop.clone()));

        let kubeconfig = Kubeconfig::read_from(&pki.admin_kubeconfig).expect("admin kubeconfig");
        let config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .expect("admin config");
        let admin = Client::try_from(config).expect("admin client");
        Cluster {
            dir,
            pki,
            cri_socket,
            agent_addr,
            admin,
            agent_stop,
            agent: Some(agent),
            stop,
        }
    }

    /// GET `path` on the agent's debugging handlers, with the admin certificate or none.
    async fn agent_get(&self, path: &str, with_cert: bool) -> (u16, String) {
        self.agent_request(hyper::Method::GET, path, with_cert)
            .await
    }

    /// `method` `path` on the agent's debugging handlers.
    async fn agent_request(
        &self,
        method: hyper::Method,
        path: &str,
        with_cert: bool,
    ) -> (u16, String) {
        let mut roots = rustls::RootCertStore::empty();
        for c in pem_certs(&self.pki.ca_cert) {
            roots.add(c).expect("CA cert");
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(roots);
        let config = if with_cert {
            builder
                .with_client_auth_cert(
                    pem_certs(&self.pki.admin_cert),
                    pem_key(&self.pki.admin_key),
                )
                .expect("client cert")
        } else {
            builder.with_no_client_auth()
        };
        let tcp = TcpStream::connect(self.agent_addr)
            .await
            .expect("connect to the agent");
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from("127.0.0.1").expect("name"), tcp)
            .await
            .expect("TLS to the agent");
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .expect("HTTP handshake");
        tokio::spawn(conn);
        let req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", self.agent_addr.to_string())
            .body(Empty::<Bytes>::new())
            .expect("request");
        let resp = sender.send_request(req).await.expect("response");
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    /// Every sandbox the runtime has.
    async fn all_sandboxes(&self) -> Vec<k8s_cri::v1::PodSandbox> {
        let mut cri = cri_client(&self.cri_socket).await;
        cri.list_pod_sandbox(ListPodSandboxRequest { filter: None })
            .await
            .expect("list sandboxes")
            .into_inner()
            .items
    }

    /// How many ready sandboxes the pod with `uid` has.
    async fn ready_sandboxes_of(&self, uid: &str) -> usize {
        let ready = k8s_cri::v1::PodSandboxState::SandboxReady as i32;
        self.all_sandboxes()
            .await
            .iter()
            .filter(|s| s.state == ready && s.metadata.as_ref().is_some_and(|m| m.uid == uid))
            .count()
    }

    async fn sandboxes(&self) -> usize {
        self.all_sandboxes().await.len()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.agent_stop.cancel();
        remove_sandboxes(&self.cri_socket);
        self.stop.cancel();
        let _ = &self.dir;
    }
}

fn pem_certs(path: &Path) -> Vec<CertificateDer<'static>> {
    let pem = std::fs::read(path).expect("read cert");
    rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<_, _>>()
        .expect("PEM certs")
}

fn pem_key(path: &Path) -> PrivateKeyDer<'static> {
    let pem = std::fs::read(path).expect("read key");
    rustls_pemfile::private_key(&mut pem.as_slice())
        .expect("PEM key")
        .expect("a key")
}

/// Polls `f` until it returns `Some`, failing with `what` after `limit` (a hang guard only).
async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(start.elapsed() < limit, "gave up waiting for {what}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn pod(name: &str, restart: &str, script: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": name, "namespace": "default" },
        "spec": {
            "restartPolicy": restart,
            "containers": [{
                "name": "main",
                "image": IMAGE,
                "imagePullPolicy": "IfNotPresent",
                "command": ["sh", "-c", script],
                "env": [{ "name": "GREETING", "value": "hello" }],
            }]
        }
    }))
    .expect("pod manifest")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn runs_reports_serves_logs_and_deletes_pods() {
    let mut cluster = Cluster::start().await;
    let nodes: Api<Node> = Api::all(cluster.admin.clone());
    let pods: Api<Pod> = Api::namespaced(cluster.admin.clone(), "default");

    // The node registers, Ready, with its kubelet port.
    let node = wait_for("the node to be Ready", Duration::from_secs(60), || async {
        let node = nodes.get_opt(NODE).await.ok().flatten()?;
        let status = node.status.clone()?;
        let ready = status
            .conditions?
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        ready.then_some(node)
    })
    .await;
    let status = node.status.expect("node status");
    let port = status
        .daemon_endpoints
        .and_then(|d| d.kubelet_endpoint)
        .map(|e| e.port);
    assert_eq!(port, Some(i32::from(cluster.agent_addr.port())));
    let info = status.node_info.expect("node info");
    assert_eq!(info.kubelet_version, "v1.32.0");
    assert!(
        info.container_runtime_version.starts_with("podway://"),
        "{}",
        info.container_runtime_version
    );

    // A long-running pod runs and reports its container.
    pods.create(
        &PostParams::default(),
        &pod(
            "web",
            "Always",
            "echo $GREETING; echo to-stderr >&2; exec sleep 3600",
        ),
    )
    .await
    .expect("create pod web");
    let web = wait_for("pod web to be Running", Duration::from_secs(90), || async {
        let p = pods.get("web").await.ok()?;
        (p.status.as_ref()?.phase.as_deref() == Some("Running")).then_some(p)
    })
    .await;
    let status = web.status.expect("pod status");
    let cs = &status.container_statuses.expect("container statuses")[0];
    assert!(
        cs.container_id
            .as_deref()
            .is_some_and(|id| id.starts_with("podway://")),
        "{cs:?}"
    );
    assert!(
        cs.state.as_ref().and_then(|s| s.running.as_ref()).is_some(),
        "{cs:?}"
    );
    assert!(cs.ready);
    assert_eq!(status.host_ip.as_deref(), Some("127.0.0.1"));

    // Its log, from the agent with a client certificate …
    let uid = web.metadata.uid.expect("uid");
    let logs = wait_for("the log of web", Duration::from_secs(30), || async {
        let (code, body) = cluster
            .agent_get("/containerLogs/default/web/main", true)
            .await;
        (code == 200 && body.contains("to-stderr")).then_some(body)
    })
    .await;
    assert!(logs.contains("hello\n"), "{logs:?}");
    let (code, body) = cluster
        .agent_get(
            "/containerLogs/default/web/main?tailLines=1&timestamps=true",
            true,
        )
        .await;
    assert_eq!(code, 200);
    assert_eq!(body.lines().count(), 1, "{body:?}");
    // stdout and stderr are separate pipes, so either line may have been logged last.
    let (stamp, text) = body.trim_end().split_once(' ').expect("timestamped line");
    assert!(
        chrono::DateTime::parse_from_rfc3339(stamp).is_ok(),
        "{body:?}"
    );
    assert!(text == "hello" || text == "to-stderr", "{body:?}");
    // … not without one, not for unknown pods or containers …
    assert_eq!(
        cluster
            .agent_get("/containerLogs/default/web/main", false)
            .await,
        (401, "Unauthorized".into())
    );
    assert_eq!(
        cluster
            .agent_get("/containerLogs/default/nope/main", true)
            .await,
        (404, "pod does not exist".into())
    );
    assert_eq!(
        cluster
            .agent_get("/containerLogs/default/web/db", true)
            .await,
        (404, "container not found (\"db\")".into())
    );
    assert_eq!(
        cluster
            .agent_get(&format!("/portForward/default/web/{uid}x"), true)
            .await,
        (404, "pod not found".into())
    );
    // … and through the API server, as kubectl logs gets it.
    let via_api = pods
        .logs("web", &LogParams::default())
        .await
        .expect("pod log via the API server");
    assert!(
        via_api.contains("hello\n") && via_api.contains("to-stderr\n"),
        "{via_api:?}"
    );

    // A pod that exits with 3 under restartPolicy Never fails and says why.
    pods.create(
        &PostParams::default(),
        &pod("oneshot", "Never", "echo done; exit 3"),
    )
    .await
    .expect("create oneshot");
    let failed = wait_for("pod oneshot to fail", Duration::from_secs(90), || async {
        let p = pods.get("oneshot").await.ok()?;
        (p.status.as_ref()?.phase.as_deref() == Some("Failed")).then_some(p)
    })
    .await;
    let cs = &failed
        .status
        .and_then(|s| s.container_statuses)
        .expect("statuses")[0];
    let terminated = cs
        .state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .expect("terminated state");
    assert_eq!(terminated.exit_code, 3);
    assert_eq!(terminated.reason.as_deref(), Some("Error"));
    // A finished pod's sandbox stops (no pause process left); its log stays readable.
    let oneshot_uid = failed.metadata.uid.clone().expect("uid");
    wait_for(
        "the sandbox of oneshot to stop",
        Duration::from_secs(30),
        || async { (cluster.ready_sandboxes_of(&oneshot_uid).await == 0).then_some(()) },
    )
    .await;
    let (code, body) = cluster
        .agent_get("/containerLogs/default/oneshot/main", true)
        .await;
    assert_eq!((code, body.as_str()), (200, "done\n"));

    // Deleting removes the pods and their sandboxes.
    for name in ["web", "oneshot"] {
        pods.delete(
            name,
            &DeleteParams {
                grace_period_seconds: Some(1),
                ..Default::default()
            },
        )
        .await
        .expect("delete pod");
    }
    for name in ["web", "oneshot"] {
        wait_for("the pod to be gone", Duration::from_secs(60), || async {
            matches!(pods.get_opt(name).await, Ok(None)).then_some(())
        })
        .await;
    }
    wait_for(
        "the sandboxes to be removed",
        Duration::from_secs(30),
        || async { (cluster.sandboxes().await == 0).then_some(()) },
    )
    .await;

    // A pod left running is removed when the agent stops.
    pods.create(
        &PostParams::default(),
        &pod("left", "Always", "exec sleep 3600"),
    )
    .await
    .expect("create left");
    wait_for(
        "pod left to be Running",
        Duration::from_secs(90),
        || async {
            let p = pods.get("left").await.ok()?;
            (p.status.as_ref()?.phase.as_deref() == Some("Running")).then_some(())
        },
    )
    .await;
    cluster.agent_stop.cancel();
    let agent = cluster.agent.take().expect("agent task");
    agent.await.expect("agent task").expect("agent run");
    assert_eq!(cluster.sandboxes().await, 0);
}

impl Cluster {
    /// Runs kubectl 1.32 against the API server with the admin kubeconfig (blocking: call it
    /// through `spawn_blocking`).
    fn kubectl(&self, args: &[&str]) -> std::process::Output {
        Command::new("/usr/lib/google-cloud-sdk/bin/kubectl.1.32")
            .arg("--kubeconfig")
            .arg(&self.pki.admin_kubeconfig)
            .args(args)
            .env("HOME", self.dir.path())
            .env("KUBECACHEDIR", self.dir.path().join("kube-cache"))
            .stdin(std::process::Stdio::null())
            .output()
            .expect("running kubectl 1.32")
    }
}

async fn phase_of(pods: &Api<Pod>, name: &str) -> Option<String> {
    pods.get(name).await.ok()?.status?.phase
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restarts_follows_logs_execs_and_reports_image_errors() {
    let cluster = Cluster::start().await;
    let pods: Api<Pod> = Api::namespaced(cluster.admin.clone(), "default");

    // A crashing container is restarted; its previous log stays readable.
    pods.create(
        &PostParams::default(),
        &pod("crash", "Always", "echo attempt; exit 1"),
    )
    .await
    .expect("create crash");
    let cs = wait_for("crash to be restarted", Duration::from_secs(90), || async {
        let p = pods.get("crash").await.ok()?;
        let cs = p.status?.container_statuses?.into_iter().next()?;
        (cs.restart_count >= 1 && cs.last_state.as_ref()?.terminated.is_some()).then_some(cs)
    })
    .await;
    let last = cs
        .last_state
        .and_then(|s| s.terminated)
        .expect("last state");
    assert_eq!(last.exit_code, 1);
    let (code, body) = cluster
        .agent_get("/containerLogs/default/crash/main?previous=true", true)
        .await;
    assert_eq!((code, body.as_str()), (200, "attempt\n"));
    let crash_loop = wait_for(
        "crash to be backing off",
        Duration::from_secs(90),
        || async {
            let p = pods.get("crash").await.ok()?;
            let cs = p.status?.container_statuses?.into_iter().next()?;
            let waiting = cs.state?.waiting?;
            (waiting.reason.as_deref() == Some("CrashLoopBackOff")).then_some(waiting)
        },
    )
    .await;
    assert!(crash_loop.message.is_some_and(|m| m.contains("back-off")));
    assert_eq!(phase_of(&pods, "crash").await.as_deref(), Some("Running"));

    // An image that is absent with pull policy Never is reported as such.
    let mut never = pod("never", "Always", "true");
    if let Some(spec) = never.spec.as_mut() {
        spec.containers[0].image = Some("podway.invalid/absent:1".into());
        spec.containers[0].image_pull_policy = Some("Never".into());
    }
    pods.create(&PostParams::default(), &never)
        .await
        .expect("create never");
    let waiting = wait_for(
        "never to report its image",
        Duration::from_secs(60),
        || async {
            let p = pods.get("never").await.ok()?;
            let cs = p.status?.container_statuses?.into_iter().next()?;
            let w = cs.state?.waiting?;
            (w.reason.as_deref() == Some("ErrImageNeverPull")).then_some(w)
        },
    )
    .await;
    assert!(
        waiting
            .message
            .is_some_and(|m| m.contains("podway.invalid/absent:1"))
    );
    assert_eq!(phase_of(&pods, "never").await.as_deref(), Some("Pending"));

    // Following a log ends when the container exits, with everything it wrote.
    pods.create(
        &PostParams::default(),
        &pod(
            "counter",
            "Never",
            "sleep 1; for i in 1 2 3; do echo line $i; sleep 1; done",
        ),
    )
    .await
    .expect("create counter");
    wait_for("counter to run", Duration::from_secs(60), || async {
        matches!(
            phase_of(&pods, "counter").await.as_deref(),
            Some("Running" | "Succeeded")
        )
        .then_some(())
    })
    .await;
    let (code, body) = cluster
        .agent_get("/containerLogs/default/counter/main?follow=true", true)
        .await;
    assert_eq!((code, body.as_str()), (200, "line 1\nline 2\nline 3\n"));
    wait_for("counter to succeed", Duration::from_secs(60), || async {
        (phase_of(&pods, "counter").await.as_deref() == Some("Succeeded")).then_some(())
    })
    .await;

    // exec through the API server and the agent, as kubectl does it.
    pods.create(
        &PostParams::default(),
        &pod(
            "shell",
            "Always",
            "echo served > /tmp/index.html; httpd -p 127.0.0.1:8080 -h /tmp; exec sleep 3600",
        ),
    )
    .await
    .expect("create shell");
    wait_for("shell to run", Duration::from_secs(60), || async {
        (phase_of(&pods, "shell").await.as_deref() == Some("Running")).then_some(())
    })
    .await;
    let cluster = Arc::new(cluster);
    let c = cluster.clone();
    let out = tokio::task::spawn_blocking(move || {
        c.kubectl(&[
            "exec",
            "shell",
            "--",
            "sh",
            "-c",
            "echo out-$GREETING; echo err >&2; exit 7",
        ])
    })
    .await
    .expect("kubectl task");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out-hello\n");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("err\n"),
        "{out:?}"
    );
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    // run: a synchronous command, output in the body; GET is not allowed.
    let (code, body) = cluster
        .agent_request(
            hyper::Method::POST,
            "/run/default/shell/main?cmd=echo%20ran%20it",
            true,
        )
        .await;
    assert_eq!((code, body.as_str()), (200, "ran it\n"));
    let (code, _) = cluster
        .agent_get("/run/default/shell/main?cmd=echo%20ran", true)
        .await;
    assert_eq!(code, 405);
}
