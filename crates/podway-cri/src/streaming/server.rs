//! The HTTP side of the streaming server: `GET|POST /{exec|attach|portforward}/{token}`.
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use podway_runtime::{ProcessIo, Runtime, WindowSize};
use podway_stream::portforward::{self, DialFuture, Dialer, PortForwardOptions};
use podway_stream::remotecommand::{self, Outcome, ServerStreams, TerminalSize};
use podway_stream::{Body, ServerOptions};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{StreamRequest, Streaming, TokenCache};
use crate::Error;

/// The listening streaming server, not yet serving.
pub(crate) struct StreamServer {
    listener: TcpListener,
    addr: SocketAddr,
    streaming: Arc<Streaming>,
}

impl StreamServer {
    /// Listens on `addr` (port 0 = any free port). `sessions` become the session options of this
    /// process's streaming sessions (they are process-wide, see [`ServerOptions`]).
    pub(crate) async fn bind(
        addr: SocketAddr,
        token_ttl: Duration,
        max_in_flight: usize,
        sessions: ServerOptions,
    ) -> Result<StreamServer, Error> {
        sessions.install();
        let bind_err = |source| Error::StreamBind { addr, source };
        let listener = TcpListener::bind(addr).await.map_err(bind_err)?;
        let addr = listener.local_addr().map_err(bind_err)?;
        let streaming = Arc::new(Streaming {
            cache: TokenCache::new(token_ttl, max_in_flight),
            base_url: format!("http://{addr}"),
        });
        Ok(StreamServer {
            listener,
            addr,
            streaming,
        })
    }

    /// The address it listens on.
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The token cache shared with the gRPC service.
    pub(crate) fn streaming(&self) -> Arc<Streaming> {
        self.streaming.clone()
    }

    /// Accepts connections until `shutdown`; sessions already upgraded run on to their end.
    pub(crate) async fn serve(self, runtime: Runtime, shutdown: CancellationToken) {
        tracing::info!(addr = %self.addr, "streaming server listening");
        loop {
            let (stream, peer) = tokio::select! {
                () = shutdown.cancelled() => break,
                accepted = self.listener.accept() => match accepted {
                    Ok(conn) => {
                        // Streams carry small frames (window updates, keystrokes): no Nagle
                        // delay, as Go's sockets have none.
                        let _ = conn.0.set_nodelay(true);
                        conn
                    }
                    Err(err) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!(%err, "streaming server: accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let streaming = self.streaming.clone();
            let runtime = runtime.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let response = route(req, &streaming, &runtime);
                    async move { Ok::<_, Infallible>(response) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades();
                if let Err(err) = conn.await {
                    tracing::debug!(%peer, %err, "streaming connection ended with an error");
                }
            });
        }
    }
}

fn text(status: StatusCode, message: &str) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(format!("{message}\n"))));
    *response.status_mut() = status;
    response
}

/// Finds the cached request of the URL's token and hands the connection to its protocol.
/// Unknown, expired, reused or wrong-kind tokens get 404 and never reach a container; the stream
/// flags come from the cached request only, never from the query.
fn route(req: Request<Incoming>, streaming: &Streaming, runtime: &Runtime) -> Response<Body> {
    if req.method() != Method::GET && req.method() != Method::POST {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            &format!("method {} not allowed", req.method()),
        );
    }
    let Some((kind, token)) = req
        .uri()
        .path()
        .strip_prefix('/')
        .and_then(|p| p.split_once('/'))
        .filter(|(_, token)| !token.is_empty() && !token.contains('/'))
    else {
        return text(StatusCode::NOT_FOUND, "404 page not found");
    };
    let Some(request) = streaming.cache.take(kind, token) else {
        tracing::debug!(
            kind,
            "streaming request with an unknown, expired or used token"
        );
        return text(
            StatusCode::NOT_FOUND,
            &format!("{kind} token not found or expired"),
        );
    };
    let runtime = runtime.clone();
    match request {
        StreamRequest::Exec {
            container_id,
            cmd,
            options,
        } => remotecommand::serve(req, options, move |streams| async move {
            tracing::debug!(container = %container_id, ?cmd, "exec session");
            let io = process_io(streams);
            match runtime.exec(&container_id, cmd, options.tty, io).await {
                Ok(code) => Outcome::Exited(code),
                Err(err) => Outcome::Error(format!(
                    "error executing command in container {container_id}: {err}"
                )),
            }
        }),
        StreamRequest::Attach {
            container_id,
            options,
        } => remotecommand::serve(req, options, move |streams| async move {
            tracing::debug!(container = %container_id, "attach session");
            match runtime.attach(&container_id, process_io(streams)).await {
                // As the kubelet's streaming library: an attach that ends without error is a
                // success (the main process's exit code is not the attach's).
                Ok(()) => Outcome::Exited(0),
                Err(err) => Outcome::Error(format!(
                    "error attaching to container {container_id}: {err}"
                )),
            }
        }),
        StreamRequest::PortForward { sandbox_id, ports } => {
            let options = PortForwardOptions {
                pod: sandbox_id.clone(),
                uid: String::new(),
                ports,
            };
            portforward::serve(req, options, dialer(runtime, sandbox_id))
        }
    }
}

/// The session's streams as the runtime's process I/O.
fn process_io(streams: ServerStreams) -> ProcessIo {
    ProcessIo {
        stdin: streams.stdin,
        stdout: streams.stdout,
        stderr: streams.stderr,
        resize: streams.resize.map(window_sizes),
    }
}

/// Forwards terminal sizes as the runtime's window sizes; sizes with a zero dimension are dropped
/// (containerd does the same).
fn window_sizes(mut sizes: mpsc::Receiver<TerminalSize>) -> mpsc::Receiver<WindowSize> {
    let (tx, rx) = mpsc::channel(8);
    tokio::spawn(async move {
        while let Some(size) = sizes.recv().await {
            if size.width == 0 || size.height == 0 {
                continue;
            }
            let size = WindowSize {
                cols: size.width,
                rows: size.height,
            };
            if tx.send(size).await.is_err() {
                break;
            }
        }
    });
    rx
}

/// Dials `localhost:port` inside the sandbox's network namespace.
fn dialer(runtime: Runtime, sandbox_id: String) -> Dialer {
    Arc::new(move |port| -> DialFuture {
        let runtime = runtime.clone();
        let sandbox_id = sandbox_id.clone();
        Box::pin(async move {
            runtime
                .port_forward(&sandbox_id, port)
                .await
                .map_err(|err| err.to_string())
        })
    })
}
