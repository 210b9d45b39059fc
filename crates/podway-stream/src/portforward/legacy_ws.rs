//! The legacy WebSocket port-forward channel protocol of the CRI streaming server (`""`,
//! `v4.channel.k8s.io`, `v4.base64.channel.k8s.io`): ports fixed at request time, channel 2i
//! carries data for the i-th port and 2i+1 its errors; one TCP connection per port.
use std::sync::Arc;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use hyper::{Request, Response, StatusCode, body::Incoming};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use super::{Dialer, PortForwardOptions};
use crate::idle::{ServerOptions, SessionTimer, Tick};
use crate::io::MAX_CHUNK;
use crate::negotiate::{self, WS_PORTFORWARD, text_response};
use crate::ws::{self, Encoding, Inbound, UpgradedWebSocket};
use crate::{Body, Error};

/// Queue depth per direction.
const QUEUE: usize = 16;

/// Handshake, 101, and the session on a spawned task.
pub(super) fn serve(
    mut req: Request<Incoming>,
    options: PortForwardOptions,
    dialer: Dialer,
) -> Response<Body> {
    let accept = match ws::check_handshake(&req) {
        Ok(a) => a,
        Err(status) => return ws::empty(status),
    };
    let Some(protocol) = negotiate::negotiate_websocket(req.headers(), WS_PORTFORWARD) else {
        return ws::empty(StatusCode::FORBIDDEN);
    };
    if options.ports.is_empty() {
        return text_response(
            StatusCode::BAD_REQUEST,
            "query parameter \"port\" is required".into(),
        );
    }
    tracing::info!(
        protocol,
        "negotiated WebSocket {:?} for portforward",
        protocol
    );
    let encoding = if protocol == negotiate::BASE64_V4 {
        Encoding::Base64
    } else {
        Encoding::Binary
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        match ws::server_socket(on_upgrade).await {
            Ok(socket) => {
                if let Err(e) = run(socket, encoding, Arc::new(options), dialer).await {
                    tracing::debug!(error = %e, "legacy WebSocket port-forward ended with an error");
                }
            }
            Err(e) => tracing::warn!(error = %e, "legacy WebSocket port-forward upgrade failed"),
        }
    });
    ws::switching(&accept, protocol)
}

/// Runs the session until the client goes away.
async fn run(
    socket: UpgradedWebSocket,
    encoding: Encoding,
    options: Arc<PortForwardOptions>,
    dialer: Dialer,
) -> Result<(), Error> {
    let write_end = socket.get_ref().write_end();
    let (mut sink, mut stream) = socket.split();
    for (i, port) in options.ports.iter().enumerate() {
        let data = (2 * i) as u8;
        sink.send(ws::encode(encoding, data, &port.to_le_bytes()))
            .await?;
        sink.send(ws::encode(encoding, data + 1, &port.to_le_bytes()))
            .await?;
    }
    let (out_tx, mut out_rx) = mpsc::channel::<(u8, Bytes)>(QUEUE);
    let mut inputs = Vec::new();
    let mut tasks = Vec::new();
    for (i, port) in options.ports.iter().copied().enumerate() {
        let (tx, rx) = mpsc::channel::<Bytes>(QUEUE);
        inputs.push(tx);
        tasks.push(tokio::spawn(forward_port(
            i,
            port,
            rx,
            out_tx.clone(),
            options.clone(),
            dialer.clone(),
        )));
    }
    drop(out_tx);
    // Keep-alive pings and the idle timeout, as for exec: data in either direction is activity.
    let mut timer = SessionTimer::new(ServerOptions::current());
    let activity = timer.activity();
    let reader = async {
        while let Some(msg) = stream.next().await {
            let msg = match msg {
                Ok(Message::Close(_)) | Err(_) => break,
                Ok(m @ (Message::Binary(_) | Message::Text(_))) => {
                    activity.touch();
                    m
                }
                Ok(m) => m,
            };
            if let Ok(Inbound::Data { channel, payload }) = ws::decode(encoding, false, msg)
                && channel % 2 == 0
                && let Some(tx) = inputs.get(usize::from(channel / 2))
            {
                // A port whose connection is gone just drops its input.
                let _ = tx.send(payload).await;
            }
        }
    };
    // Ends with what stopped the output: the pods' sides ran dry (false) or the idle timeout
    // passed (true); a failed send ends it as dry (the reader then sees the client gone).
    let writer = async {
        loop {
            let message = tokio::select! {
                item = out_rx.recv() => match item {
                    Some((channel, data)) => {
                        activity.touch();
                        ws::encode(encoding, channel, &data)
                    }
                    None => return false,
                },
                tick = timer.next() => match tick {
                    Tick::Ping => Message::Ping(Bytes::new()),
                    Tick::Idle => return true,
                },
            };
            if sink.send(message).await.is_err() {
                return false;
            }
        }
    };
    // The protocol has no half-close, so the end of the WebSocket is how a client learns its
    // connections are over (the Python client closes its local sockets then). Once every port's
    // pod side has ended (the writer runs dry), the server closes, as the kubelet does when its
    // port forwards return; input the client sent meanwhile still reaches the pods until the
    // client answers the close.
    tokio::pin!(reader);
    let (client_gone, idle) = tokio::select! {
        _ = &mut reader => (true, false),
        idle = writer => (false, idle),
    };
    let closed = if idle {
        tracing::info!("legacy WebSocket port-forward idle timeout: closing it");
        ws::send_idle_close(&mut sink, &write_end).await.is_ok()
    } else {
        ws::send_close(&mut sink, &write_end).await.is_ok()
    };
    if closed && !client_gone {
        ws::await_close_answer(reader).await;
    }
    for t in &tasks {
        t.abort();
    }
    Ok(())
}

/// One port: dial once, then copy client input to it and its output to the data channel.
async fn forward_port(
    index: usize,
    port: u16,
    mut input: mpsc::Receiver<Bytes>,
    out: mpsc::Sender<(u8, Bytes)>,
    options: Arc<PortForwardOptions>,
    dialer: Dialer,
) {
    let data = (2 * index) as u8;
    let tcp = match dialer(port).await {
        Ok(t) => t,
        Err(cause) => {
            let text = format!(
                "error forwarding port {port} to pod {}, uid {}: {cause}",
                options.pod, options.uid
            );
            tracing::warn!("{text}");
            let _ = out.send((data + 1, Bytes::from(text))).await;
            return;
        }
    };
    let (mut r, mut w) = tcp.into_split();
    // The protocol has no half-close: each direction just ends on its own.
    let up = async {
        while let Some(chunk) = input.recv().await {
            if w.write_all(&chunk).await.is_err() {
                break;
            }
        }
        // Later input for this port is refused at once rather than queued: a full queue would
        // stall the session's reader, and with it every other port.
        input.close();
        let _ = w.shutdown().await;
    };
    // `out` moves in: this port stops holding the session open once its pod side has ended.
    let down = async move {
        let mut buf = vec![0u8; MAX_CHUNK];
        loop {
            match r.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => {
                    if out
                        .send((data, Bytes::copy_from_slice(&buf[..n])))
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
                Err(e) => {
                    let text = format!(
                        "error forwarding port {port} to pod {}, uid {}: {e}",
                        options.pod, options.uid
                    );
                    let _ = out.send((data + 1, Bytes::from(text))).await;
                    break;
                }
            }
        }
    };
    tokio::join!(up, down);
}
