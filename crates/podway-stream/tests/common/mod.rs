//! Test harness: a minimal plain-HTTP API server that serves what kubectl needs for exec and
//! port-forward, with exec running real local processes and port-forward dialling 127.0.0.1.
#![allow(dead_code)]

use std::convert::Infallible;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use podway_stream::portforward::{self, Dialer, PortForwardOptions};
use podway_stream::remotecommand::{self, Outcome, ServerStreams, StreamOptions};
use podway_stream::{Body, negotiate};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The fake API server; aborted on drop.
pub struct FakeApi {
    pub port: u16,
    /// "exec websocket v5.channel.k8s.io" style records of each streaming request.
    pub log: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<()>,
    pub dir: tempfile::TempDir,
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("podway_stream=debug")
        .try_init();
}

impl FakeApi {
    pub async fn start() -> FakeApi {
        FakeApi::start_with(None).await
    }

    /// A front server whose exec/portforward requests go through `proxy::upgrade_proxy` to the
    /// server on `backend` (another `FakeApi`).
    pub async fn start_proxy(backend: u16) -> FakeApi {
        FakeApi::start_with(Some(backend)).await
    }

    async fn start_with(backend: Option<u16>) -> FakeApi {
        init_tracing();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let log = Arc::new(Mutex::new(Vec::new()));
        let log2 = log.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let log = log2.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let log = log.clone();
                        async move {
                            let streaming = req.uri().path().ends_with("/exec")
                                || req.uri().path().ends_with("/portforward");
                            match backend {
                                Some(b) if streaming => {
                                    Ok::<_, Infallible>(proxy_to(req, b, log).await)
                                }
                                _ => Ok::<_, Infallible>(route(req, port, log).await),
                            }
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), svc)
                        .with_upgrades()
                        .await;
                });
            }
        });
        let dir = tempfile::tempdir().expect("tempdir");
        let kubeconfig = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://127.0.0.1:{port}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: default\ncurrent-context: fake\nusers:\n- name: fake\n  user: {{}}\n"
        );
        std::fs::write(dir.path().join("kubeconfig"), kubeconfig).expect("write kubeconfig");
        FakeApi {
            port,
            log,
            task,
            dir,
        }
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    /// A kubectl command of version `minor` against this server.
    pub fn kubectl(&self, minor: u32) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(format!(
            "/usr/lib/google-cloud-sdk/bin/kubectl.1.{minor}"
        ));
        cmd.arg("--kubeconfig")
            .arg(self.kubeconfig())
            .arg("--cache-dir")
            .arg(self.dir.path().join("cache"))
            .env("HOME", self.dir.path())
            .kill_on_drop(true);
        cmd
    }

    /// Starts `kubectl port-forward p :remote` (version `minor`; with `spdy`, WebSockets off) and
    /// returns it with the local port it printed and its stderr; stdout is drained in the
    /// background.
    pub async fn kubectl_port_forward(
        &self,
        minor: u32,
        remote: u16,
        spdy: bool,
    ) -> (
        tokio::process::Child,
        u16,
        tokio::io::BufReader<tokio::process::ChildStderr>,
    ) {
        use tokio::io::AsyncBufReadExt;
        let mut cmd = self.kubectl(minor);
        if spdy {
            cmd.env("KUBECTL_PORT_FORWARD_WEBSOCKETS", "false");
        }
        let mut child = cmd
            .args(["port-forward", "p", &format!(":{remote}")])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn kubectl");
        let stdout = child.stdout.take().expect("stdout");
        let stderr = tokio::io::BufReader::new(child.stderr.take().expect("stderr"));
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let local = loop {
            let line = lines
                .next_line()
                .await
                .expect("read kubectl output")
                .expect("kubectl exited early");
            // "Forwarding from 127.0.0.1:41234 -> 8080"
            if let Some(port) = line
                .strip_prefix("Forwarding from 127.0.0.1:")
                .and_then(|rest| rest.split(' ').next())
                .and_then(|p| p.parse().ok())
            {
                break port;
            }
        };
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        (child, local, stderr)
    }

    pub fn records(&self) -> Vec<String> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

fn json(body: String) -> Response<Body> {
    let mut r = Response::new(Body::new(Bytes::from(body)));
    r.headers_mut()
        .insert("content-type", "application/json".parse().expect("static"));
    r
}

fn query_bool(query: Option<&str>, key: &str) -> bool {
    query.unwrap_or("").split('&').any(|p| {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        k == key && !v.eq_ignore_ascii_case("false") && v != "0"
    })
}

fn query_values(query: Option<&str>, key: &str) -> Vec<String> {
    query
        .unwrap_or("")
        .split('&')
        .filter_map(|p| p.split_once('='))
        .filter(|(k, _)| *k == key)
        .map(|(_, v)| percent_decode(v))
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Some(v) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn proxy_to(
    req: Request<Incoming>,
    backend: u16,
    log: Arc<Mutex<Vec<String>>>,
) -> Response<Body> {
    if let Ok(mut l) = log.lock() {
        l.push(format!("proxied {}", req.uri().path()));
    }
    let target: http::Uri = format!(
        "http://127.0.0.1:{backend}{}",
        req.uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
    )
    .parse()
    .expect("target uri");
    match tokio::net::TcpStream::connect(("127.0.0.1", backend)).await {
        Ok(tcp) => podway_stream::proxy::upgrade_proxy(req, tcp, target).await,
        Err(e) => {
            let mut r = Response::new(Body::new(Bytes::from(e.to_string())));
            *r.status_mut() = StatusCode::BAD_GATEWAY;
            r
        }
    }
}

fn describe(req: &Request<Incoming>, what: &str) -> String {
    let h = req.headers();
    match negotiate::transport(h) {
        Some(negotiate::Transport::WebSocket) => format!(
            "{what} websocket {}",
            h.get("sec-websocket-protocol")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
        ),
        Some(negotiate::Transport::Spdy) => format!(
            "{what} spdy {}",
            negotiate::header_list(h, negotiate::STREAM_PROTOCOL_HEADER).join(",")
        ),
        None => format!("{what} none"),
    }
}

async fn route(req: Request<Incoming>, port: u16, log: Arc<Mutex<Vec<String>>>) -> Response<Body> {
    let path = req.uri().path().to_string();
    match path.as_str() {
        "/version" => json(r#"{"major":"1","minor":"32","gitVersion":"v1.32.0","gitCommit":"0","gitTreeState":"clean","buildDate":"2024-01-01T00:00:00Z","goVersion":"go1.23","compiler":"gc","platform":"linux/amd64"}"#.into()),
        "/api" => json(format!(r#"{{"kind":"APIVersions","versions":["v1"],"serverAddressByClientCIDRs":[{{"clientCIDR":"0.0.0.0/0","serverAddress":"127.0.0.1:{port}"}}]}}"#)),
        "/apis" => json(r#"{"kind":"APIGroupList","apiVersion":"v1","groups":[]}"#.into()),
        "/api/v1" => json(r#"{"kind":"APIResourceList","groupVersion":"v1","resources":[{"name":"pods","singularName":"pod","namespaced":true,"kind":"Pod","verbs":["create","delete","get","list","patch","update","watch"],"shortNames":["po"]},{"name":"pods/exec","singularName":"","namespaced":true,"kind":"PodExecOptions","verbs":["create","get"]},{"name":"pods/attach","singularName":"","namespaced":true,"kind":"PodAttachOptions","verbs":["create","get"]},{"name":"pods/portforward","singularName":"","namespaced":true,"kind":"PodPortForwardOptions","verbs":["create","get"]},{"name":"pods/log","singularName":"","namespaced":true,"kind":"Pod","verbs":["get"]}]}"#.into()),
        "/api/v1/namespaces/default/pods/p" => json(r#"{"kind":"Pod","apiVersion":"v1","metadata":{"name":"p","namespace":"default","uid":"11111111-2222-3333-4444-555555555555","resourceVersion":"1"},"spec":{"containers":[{"name":"main","image":"busybox"}],"nodeName":"n"},"status":{"phase":"Running","conditions":[{"type":"Ready","status":"True"}],"containerStatuses":[{"name":"main","ready":true,"restartCount":0,"image":"busybox","imageID":"","state":{"running":{}}}]}}"#.into()),
        "/api/v1/namespaces/default/pods/p/exec" => {
            let entry = describe(&req, "exec");
            if let Ok(mut l) = log.lock() {
                l.push(entry);
            }
            let q = req.uri().query();
            let options = StreamOptions {
                stdin: query_bool(q, "stdin"),
                stdout: query_bool(q, "stdout"),
                stderr: query_bool(q, "stderr"),
                tty: query_bool(q, "tty"),
            };
            let command = query_values(q, "command");
            if command.first().map(String::as_str) == Some("podway-test-wait-closed") {
                return remotecommand::serve(req, options, move |streams| async move {
                    streams.closed.cancelled().await;
                    if let Ok(mut l) = log.lock() {
                        l.push("handler saw the client go".into());
                    }
                    Outcome::Exited(0)
                });
            }
            remotecommand::serve(req, options, move |streams| run_local(command, options, streams))
        }
        "/api/v1/namespaces/default/pods/p/portforward" => {
            let entry = describe(&req, "portforward");
            if let Ok(mut l) = log.lock() {
                l.push(entry);
            }
            let ports = query_values(req.uri().query(), "ports")
                .iter()
                .flat_map(|s| s.split(',').map(str::to_string).collect::<Vec<_>>())
                .filter_map(|s| s.trim().parse().ok())
                .collect();
            let options = PortForwardOptions { pod: "p".into(), uid: String::new(), ports };
            let dialer: Dialer = Arc::new(|port| {
                Box::pin(async move {
                    tokio::net::TcpStream::connect(("127.0.0.1", port)).await.map_err(|e| e.to_string())
                })
            });
            portforward::serve(req, options, dialer)
        }
        _ => {
            let mut r = json(r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"not found","reason":"NotFound","code":404}"#.into());
            *r.status_mut() = StatusCode::NOT_FOUND;
            r
        }
    }
}

/// Runs `command` as a local process wired to the session streams.
async fn run_local(
    command: Vec<String>,
    options: StreamOptions,
    streams: ServerStreams,
) -> Outcome {
    if command.first().map(String::as_str) == Some("podway-test-resize") {
        let count = command.get(1).and_then(|c| c.parse().ok()).unwrap_or(2);
        return report_resizes(streams, count).await;
    }
    let Some((prog, args)) = command.split_first() else {
        return Outcome::Error("no command given".into());
    };
    let pipe = |on: bool| if on { Stdio::piped() } else { Stdio::null() };
    let mut child = match tokio::process::Command::new(prog)
        .args(args)
        .stdin(pipe(options.stdin))
        .stdout(pipe(options.stdout))
        .stderr(pipe(options.stderr))
        .kill_on_drop(true)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return Outcome::Error(format!("error executing command in container: {e}")),
    };
    let mut copies = Vec::new();
    let mut stdin_copy = None;
    if let (Some(mut from), Some(mut to)) = (streams.stdin, child.stdin.take()) {
        stdin_copy = Some(tokio::spawn(async move {
            let _ = tokio::io::copy(&mut from, &mut to).await;
            let _ = to.shutdown().await;
        }));
    }
    if let (Some(mut from), Some(mut to)) = (child.stdout.take(), streams.stdout) {
        copies.push(tokio::spawn(async move {
            let _ = tokio::io::copy(&mut from, &mut to).await;
            let _ = to.shutdown().await;
        }));
    }
    if let (Some(mut from), Some(mut to)) = (child.stderr.take(), streams.stderr) {
        copies.push(tokio::spawn(async move {
            let _ = tokio::io::copy(&mut from, &mut to).await;
            let _ = to.shutdown().await;
        }));
    }
    let status = child.wait().await;
    // stdin copy may never end (client keeps stdin open); output copies end with the pipes.
    for c in copies {
        let _ = c.await;
    }
    if let Some(c) = stdin_copy {
        c.abort();
    }
    match status {
        Ok(s) => Outcome::Exited(s.code().unwrap_or(128 + 9)),
        Err(e) => Outcome::Error(format!("waiting for the command failed: {e}")),
    }
}

/// Test command `podway-test-resize [N]`: writes the first N (default 2) terminal sizes
/// received as "WxH\n" lines to stdout.
async fn report_resizes(streams: ServerStreams, count: usize) -> Outcome {
    let (Some(mut resize), Some(mut out)) = (streams.resize, streams.stdout) else {
        return Outcome::Error("podway-test-resize needs a tty and stdout".into());
    };
    for _ in 0..count {
        let Some(size) = resize.recv().await else {
            break;
        };
        let _ = out
            .write_all(format!("{}x{}\n", size.width, size.height).as_bytes())
            .await;
    }
    Outcome::Exited(0)
}
