//! kubectl exec / logs / port-forward through the API server to a kubelet stand-in that serves
//! the kubelet paths over TLS with the node certificate and speaks the real protocols
//! (podway-stream's server halves).

mod common;

use std::convert::Infallible;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use common::{CALL_LIMIT, Cluster};
use futures::StreamExt;
use http::{Request, Response};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use podway_stream::portforward::{self, PortForwardOptions};
use podway_stream::remotecommand::{self, Outcome, StreamOptions};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// What the kubelet stand-in saw: request paths with their queries.
#[derive(Default)]
struct Seen {
    requests: Vec<String>,
}

fn load(dir: &Path, name: &str) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
    let pki = dir.join("data/pki");
    let cert = std::fs::read(pki.join(format!("{name}.crt"))).expect("cert");
    let key = std::fs::read(pki.join(format!("{name}.key"))).expect("key");
    let certs = rustls_pemfile::certs(&mut cert.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .expect("certs");
    let key = rustls_pemfile::private_key(&mut key.as_slice())
        .expect("key pem")
        .expect("a key");
    (certs, key)
}

/// Starts the stand-in; returns its port. Client certificates are required and checked.
async fn kubelet(dir: &Path, echo_port: u16, seen: Arc<Mutex<Seen>>) -> u16 {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    let (ca, _) = load(dir, "ca");
    roots.add(ca[0].clone()).expect("ca");
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .expect("verifier");
    let (certs, key) = load(dir, "node");
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .expect("server config");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind kubelet");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let seen = seen.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = service_fn(move |req| {
                    let seen = seen.clone();
                    async move { Ok::<_, Infallible>(route(req, echo_port, seen)) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .with_upgrades()
                    .await;
            });
        }
    });
    port
}

type TestBody = UnsyncBoxBody<Bytes, Infallible>;

fn full(bytes: &'static [u8]) -> TestBody {
    Full::new(Bytes::from_static(bytes)).boxed_unsync()
}

fn boxed(resp: Response<podway_stream::Body>) -> Response<TestBody> {
    resp.map(|b| b.boxed_unsync())
}

fn route(req: Request<Incoming>, echo_port: u16, seen: Arc<Mutex<Seen>>) -> Response<TestBody> {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or_default().to_string();
    if let Ok(mut seen) = seen.lock() {
        seen.requests.push(format!("{path}?{query}"));
    }
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let has = |k: &str| pairs.iter().any(|(n, v)| n == k && v == "1");
    if path == "/exec/default/web/main" {
        let command: Vec<String> = pairs
            .iter()
            .filter(|(k, _)| k == "command")
            .map(|(_, v)| v.clone())
            .collect();
        let options = StreamOptions {
            stdin: has("input"),
            stdout: has("output"),
            stderr: has("error"),
            tty: has("tty"),
        };
        return boxed(remotecommand::serve(
            req,
            options,
            move |mut streams| async move {
                if let Some(out) = streams.stdout.as_mut() {
                    let _ = out
                        .write_all(format!("{}\n", command.join(" ")).as_bytes())
                        .await;
                    let _ = out.shutdown().await;
                }
                drop(streams);
                Outcome::Exited(if command.iter().any(|a| a == "fail") {
                    3
                } else {
                    0
                })
            },
        ));
    }
    if path == "/portForward/default/web" {
        let dialer: portforward::Dialer = Arc::new(move |_port| {
            Box::pin(async move {
                TcpStream::connect(("127.0.0.1", echo_port))
                    .await
                    .map_err(|e| e.to_string())
            })
        });
        let options = PortForwardOptions {
            pod: "web".into(),
            ..Default::default()
        };
        return boxed(portforward::serve(req, options, dialer));
    }
    if path == "/containerLogs/default/web/main"
        && pairs.iter().any(|(k, v)| k == "follow" && v == "true")
    {
        // The first line, then the stream stays open: it must reach the client before the end.
        let stream = futures::stream::iter([Ok::<_, Infallible>(Frame::data(Bytes::from_static(
            b"first\n",
        )))])
        .chain(futures::stream::pending());
        return Response::new(StreamBody::new(stream).boxed_unsync());
    }
    if path == "/containerLogs/default/web/main" {
        return Response::new(full(b"line1\nline2\n"));
    }
    let mut resp = Response::new(full(b"pod does not exist"));
    *resp.status_mut() = http::StatusCode::NOT_FOUND;
    resp
}

/// A TCP echo server; returns its port.
async fn echo_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind echo");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = conn.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    port
}

const POD: &str = "apiVersion: v1
kind: Pod
metadata:
  name: web
spec:
  containers:
  - name: main
    image: busybox:1.36
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_logs_and_port_forward_reach_the_node() {
    let c = Cluster::start().await;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let echo = echo_server().await;
    let kubelet_port = kubelet(c.dir.path(), echo, seen.clone()).await;

    let node = format!(
        r#"{{"apiVersion":"v1","kind":"Node","metadata":{{"name":"n1"}},"status":{{
            "conditions":[{{"type":"Ready","status":"True"}}],
            "addresses":[{{"type":"InternalIP","address":"127.0.0.1"}},{{"type":"Hostname","address":"n1"}}],
            "daemonEndpoints":{{"kubeletEndpoint":{{"Port":{kubelet_port}}}}}}}}}"#
    );
    let node_file = c.write("node.json", &node);
    c.ok(&["create", "-f", &node_file]).await;
    let pod = c.write("pod.yaml", POD);
    c.ok(&["apply", "-f", &pod]).await;
    c.ok(&[
        "wait",
        "--for=jsonpath={.spec.nodeName}=n1",
        "pod/web",
        "--timeout=60s",
    ])
    .await;
    let running = r#"{"status":{"phase":"Running"}}"#;
    let out = c
        .run_as(
            &c.node_kubeconfig,
            &[
                "patch",
                "pod",
                "web",
                "--subresource=status",
                "--type=merge",
                "-p",
                running,
            ],
        )
        .await;
    assert!(out.ok, "{}", out.stderr);

    assert_eq!(
        c.ok(&["exec", "web", "--", "echo", "hi", "there"]).await,
        "echo hi there\n"
    );
    let out = c.kubectl(&["exec", "web", "--", "fail"]).await;
    assert!(
        !out.ok && out.stderr.contains("command terminated with exit code 3"),
        "{}",
        out.stderr
    );
    let out = c.kubectl(&["exec", "web", "-c", "db", "--", "true"]).await;
    assert!(
        !out.ok && out.stderr.contains("container db is not valid for pod web"),
        "{}",
        out.stderr
    );

    let raw = "/api/v1/namespaces/default/pods/web/exec?command=ls&stdout=true";
    let out = c.kubectl(&["get", "--raw", raw]).await;
    assert!(
        !out.ok && out.stderr.contains("Upgrade request required"),
        "{}",
        out.stderr
    );
    assert_eq!(c.ok(&["logs", "web", "--tail=2"]).await, "line1\nline2\n");
    let mut follow = c
        .command(&c.kubeconfig, &["logs", "-f", "web"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn logs -f");
    let mut follow_out = BufReader::new(follow.stdout.take().expect("stdout")).lines();
    let first = tokio::time::timeout(CALL_LIMIT, follow_out.next_line())
        .await
        .expect("logs -f output");
    let _ = follow.kill().await;
    assert_eq!(first.ok().flatten().as_deref(), Some("first"));

    let mut pf = c
        .command(&c.kubeconfig, &["port-forward", "pod/web", ":8080"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn port-forward");
    let mut lines = BufReader::new(pf.stdout.take().expect("stdout")).lines();
    let forwarded = async {
        let line = lines.next_line().await.ok().flatten().unwrap_or_default();
        // "Forwarding from 127.0.0.1:NNNNN -> 8080"
        let port: u16 = line
            .split_whitespace()
            .nth(2)
            .and_then(|a| a.rsplit(':').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("unexpected port-forward output {line:?}"));
        let mut conn = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect local port");
        conn.write_all(b"ping through the tunnel")
            .await
            .expect("write");
        let mut buf = [0u8; 23];
        conn.read_exact(&mut buf).await.expect("read echo");
        buf
    };
    let echoed = tokio::time::timeout(CALL_LIMIT, forwarded)
        .await
        .expect("port-forward");
    let _ = pf.kill().await;
    assert_eq!(&echoed, b"ping through the tunnel");

    let requests = seen.lock().map(|s| s.requests.clone()).unwrap_or_default();
    assert!(
        requests.iter().any(|r| r
            == "/exec/default/web/main?command=echo&command=hi&command=there&output=1&error=1"),
        "{requests:?}"
    );
    assert!(
        requests
            .iter()
            .any(|r| r == "/containerLogs/default/web/main?tailLines=2"),
        "{requests:?}"
    );
    assert!(
        requests
            .iter()
            .any(|r| r.starts_with("/portForward/default/web")),
        "{requests:?}"
    );
}
