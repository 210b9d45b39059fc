//! portforward over SPDY (`portforward.k8s.io`), directly or tunnelled in a WebSocket.
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use hyper::{Request, Response, body::Incoming};
use spdy::Stream;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use super::headers::{StreamHeaders, StreamType, parse_stream_headers};
use super::{Dialer, PortForwardOptions, connection};
use crate::negotiate::{self, PORTFORWARD, TUNNEL_PREFIX};
use crate::spdy_conn::{CREATION_TIMEOUT, server_session, upgraded_session};
use crate::{Body, ws};

/// Numbers sessions in error texts, like the `conn=` of the kubelet's messages.
static SESSIONS: AtomicU64 = AtomicU64::new(1);

/// SPDY handshake, 101, and the session on a spawned task.
pub(super) fn serve(
    mut req: Request<Incoming>,
    options: PortForwardOptions,
    dialer: Dialer,
) -> Response<Body> {
    let protocol = match negotiate::negotiate_spdy(req.headers(), &[PORTFORWARD]) {
        Ok(p) => p,
        Err(refusal) => return refusal.response(),
    };
    tracing::info!(protocol, "negotiated SPDY {:?} for portforward", protocol);
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        match upgraded_session(on_upgrade).await {
            Ok((session, incoming)) => {
                run(incoming, Arc::new(options), dialer).await;
                session.close().await;
            }
            Err(e) => tracing::warn!(error = %e, "SPDY portforward upgrade failed"),
        }
    });
    negotiate::spdy_switching(protocol)
}

/// WebSocket handshake for the tunnel (`SPDY/3.1+portforward.k8s.io`), 101, and the SPDY
/// session over the WebSocket's byte stream on a spawned task.
pub(super) fn serve_tunnel(
    mut req: Request<Incoming>,
    options: PortForwardOptions,
    dialer: Dialer,
) -> Response<Body> {
    let accept = match ws::check_handshake(&req) {
        Ok(a) => a,
        Err(status) => return ws::empty(status),
    };
    let protocol = format!("{TUNNEL_PREFIX}{PORTFORWARD}");
    tracing::info!(
        protocol,
        "negotiated WebSocket {:?} for portforward",
        protocol
    );
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        match ws::server_socket(on_upgrade).await {
            Ok(socket) => {
                let (session, incoming) = server_session(ws::WsByteStream::new(socket));
                run(incoming, Arc::new(options), dialer).await;
                session.close().await;
            }
            Err(e) => tracing::warn!(error = %e, "portforward tunnel upgrade failed"),
        }
    });
    ws::switching(&accept, &protocol)
}

/// Accepts stream pairs until the session ends; each complete pair is forwarded on its own task.
pub(crate) async fn run(
    mut incoming: spdy::Incoming,
    options: Arc<PortForwardOptions>,
    dialer: Dialer,
) {
    let conn = SESSIONS.fetch_add(1, Ordering::Relaxed);
    let mut pairs: HashMap<String, mpsc::Sender<(StreamType, Stream)>> = HashMap::new();
    while let Some(pending) = incoming.accept().await {
        let StreamHeaders {
            stream_type: kind,
            port,
            request,
        } = match parse_stream_headers(pending.headers(), pending.id()) {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(headers = ?pending.headers(), "rejecting port-forward stream: {e}");
                pending.reject();
                continue;
            }
        };
        let stream = pending.accept();
        pairs.retain(|_, tx| !tx.is_closed());
        let unpaired = match pairs.get(&request) {
            Some(tx) => match tx.send((kind, stream)).await {
                Ok(()) => None,
                // The pair just completed or timed out: this stream starts a new one.
                Err(mpsc::error::SendError((_, stream))) => Some(stream),
            },
            None => Some(stream),
        };
        if let Some(stream) = unpaired {
            let (tx, rx) = mpsc::channel(2);
            pairs.insert(request.clone(), tx);
            tokio::spawn(pair(
                conn,
                request,
                port,
                (kind, stream),
                rx,
                options.clone(),
                dialer.clone(),
            ));
        }
    }
    tracing::debug!(conn, "port-forward session ended");
}

/// Waits for the second stream of a pair, then forwards.
async fn pair(
    conn: u64,
    request: String,
    port: u16,
    first: (StreamType, Stream),
    mut rx: mpsc::Receiver<(StreamType, Stream)>,
    options: Arc<PortForwardOptions>,
    dialer: Dialer,
) {
    let (mut error, mut data) = (None, None);
    let assign = |(kind, stream): (StreamType, Stream),
                  error: &mut Option<Stream>,
                  data: &mut Option<Stream>| {
        let slot = if kind == StreamType::Error {
            error
        } else {
            data
        };
        if slot.is_some() {
            tracing::warn!(
                "error processing stream for request {request}: {} stream already assigned",
                kind.as_str()
            );
            stream.reset(spdy::RstStatus::Cancel);
        } else {
            *slot = Some(stream);
        }
    };
    assign(first, &mut error, &mut data);
    let complete = tokio::time::timeout(CREATION_TIMEOUT, async {
        while error.is_none() || data.is_none() {
            match rx.recv().await {
                Some(s) => assign(s, &mut error, &mut data),
                None => return,
            }
        }
    })
    .await;
    drop(rx);
    match (complete, error, data) {
        (Ok(()), Some(error), Some(data)) => forward(port, error, data, &options, &dialer).await,
        (_, error, data) => {
            tracing::warn!(conn, %request, "timed out waiting for port-forward streams");
            if let Some(mut error) = error {
                let text =
                    format!("(conn={conn}, request={request}) timed out waiting for streams");
                let _ = error.write_all(text.as_bytes()).await;
                let _ = error.shutdown().await;
            }
            if let Some(data) = data {
                data.reset(spdy::RstStatus::Cancel);
            }
        }
    }
}

/// Dials the port and forwards; a failed dial is reported on the error stream.
async fn forward(
    port: u16,
    mut error: Stream,
    data: Stream,
    options: &PortForwardOptions,
    dialer: &Dialer,
) {
    match dialer(port).await {
        Ok(tcp) => connection::forward(port, tcp, data, error).await,
        Err(cause) => {
            let text = format!(
                "error forwarding port {port} to pod {}, uid {}: {cause}",
                options.pod, options.uid
            );
            tracing::warn!("{text}");
            let _ = error.write_all(text.as_bytes()).await;
            let _ = error.shutdown().await;
            data.reset(spdy::RstStatus::Cancel);
        }
    }
}
