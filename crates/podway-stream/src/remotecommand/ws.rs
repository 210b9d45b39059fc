//! remotecommand over WebSocket, server half (channel protocols v1, base64, v4, v4.base64, v5).
use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use hyper::{Request, Response, StatusCode, body::Incoming};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use super::{BoxedReader, BoxedWriter, Outcome, ServerStreams, StreamOptions, TerminalSize};
use crate::idle::{Activity, SessionTimer, Tick};
use crate::io::{ChannelReader, ChannelWriter};
use crate::negotiate::{self, BASE64_V1, BASE64_V4, CHANNEL_V4, CHANNEL_V5, WS_REMOTECOMMAND};
use crate::resize::ResizeDecoder;
use crate::status::{status_json, status_text};
use crate::ws::{self, Encoding, Inbound, UpgradedWebSocket};
use crate::{Body, Error, ServerOptions};

/// Channel numbers of the remotecommand protocol.
pub(crate) const STDIN: u8 = 0;
pub(crate) const STDOUT: u8 = 1;
pub(crate) const STDERR: u8 = 2;
pub(crate) const ERROR: u8 = 3;
pub(crate) const RESIZE: u8 = 4;

/// What a negotiated subprotocol means for the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WsProtocol {
    pub(crate) encoding: Encoding,
    /// The client may send `FF <channel>` close signals.
    pub(crate) v5: bool,
    /// The status is a JSON `metav1.Status`, always written (else text on failure only).
    pub(crate) json_status: bool,
}

impl WsProtocol {
    /// The behaviour of subprotocol `name`.
    pub(crate) fn of(name: &str) -> WsProtocol {
        let json_status = matches!(name, CHANNEL_V5 | CHANNEL_V4 | BASE64_V4);
        let encoding = if matches!(name, BASE64_V1 | BASE64_V4) {
            Encoding::Base64
        } else {
            Encoding::Binary
        };
        WsProtocol {
            encoding,
            v5: name == CHANNEL_V5,
            json_status,
        }
    }
}

/// Queue depths between the socket and the handler.
const QUEUE: usize = 16;

/// How long after the upgrade the first output waits. kubectl (client-go `websocket.go`) starts
/// its reader before it registers its streams, and drops a message for a stream it does not know
/// yet ("Unknown stream id 1, discarding message"). The kubelet gets away with that because a
/// process takes tens of milliseconds to start; a faster one (or a busy client) lost its first
/// output. Output that is ready later is not delayed at all, nor is output after the client's
/// first message (stdin or a terminal size): client-go sends only once its streams exist.
/// kubectl registers its streams microseconds after it starts reading, unless its thread is
/// descheduled in between: 12 ms is one CFS scheduling period on two CPUs (6 ms × (1 + log2 2)).
/// Every exec whose status comes sooner pays the rest of it (`kubectl exec -- true`).
const CLIENT_SETUP_GRACE: Duration = Duration::from_millis(12);

/// Waits until the client has surely registered its streams: its first message, or the grace.
async fn client_ready(deadline: Instant, client_spoke: &CancellationToken) {
    tokio::select! {
        _ = tokio::time::sleep_until(deadline) => {}
        _ = client_spoke.cancelled() => {}
    }
}

/// Handshake, 101, and the session on a spawned task.
pub(super) fn serve<F, Fut>(
    mut req: Request<Incoming>,
    options: StreamOptions,
    command: Vec<String>,
    handler: F,
) -> Response<Body>
where
    F: FnOnce(ServerStreams) -> Fut + Send + 'static,
    Fut: Future<Output = Outcome> + Send + 'static,
{
    let accept = match ws::check_handshake(&req) {
        Ok(a) => a,
        Err(status) => return ws::empty(status),
    };
    let Some(protocol) = negotiate::negotiate_websocket(req.headers(), WS_REMOTECOMMAND) else {
        return ws::empty(StatusCode::FORBIDDEN);
    };
    tracing::info!(protocol, "negotiated WebSocket {:?} for exec", protocol);
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        match ws::server_socket(on_upgrade).await {
            Ok(socket) => {
                if let Err(e) =
                    run(socket, WsProtocol::of(protocol), options, command, handler).await
                {
                    tracing::debug!(error = %e, "WebSocket remotecommand session ended with an error");
                }
            }
            Err(e) => tracing::warn!(error = %e, "WebSocket remotecommand upgrade failed"),
        }
    });
    ws::switching(&accept, protocol)
}

/// Runs one session on an upgraded socket.
pub(crate) async fn run<F, Fut>(
    socket: UpgradedWebSocket,
    proto: WsProtocol,
    options: StreamOptions,
    command: Vec<String>,
    handler: F,
) -> Result<(), Error>
where
    F: FnOnce(ServerStreams) -> Fut + Send + 'static,
    Fut: Future<Output = Outcome> + Send + 'static,
{
    let write_end = socket.get_ref().write_end();
    let (mut sink, stream) = socket.split();
    let first = if options.stdout {
        STDOUT
    } else if options.stderr {
        STDERR
    } else {
        ERROR
    };
    sink.send(ws::encode(proto.encoding, first, b"")).await?;
    let grace_end = Instant::now() + CLIENT_SETUP_GRACE;
    let client_spoke = CancellationToken::new();

    let (out_tx, mut out_rx) = mpsc::channel::<(u8, Bytes)>(QUEUE);
    let writer = |channel| -> BoxedWriter { Box::new(ChannelWriter::new(out_tx.clone(), channel)) };
    let stdout = options.stdout.then(|| writer(STDOUT));
    let stderr = options.stderr.then(|| writer(STDERR));
    drop(out_tx);
    let (stdin_tx, stdin) = if options.stdin {
        let (tx, rx) = mpsc::channel(QUEUE);
        (
            Some(tx),
            Some(Box::new(ChannelReader::new(rx)) as BoxedReader),
        )
    } else {
        (None, None)
    };
    let (resize_tx, resize) = if options.tty {
        let (tx, rx) = mpsc::channel(8);
        (Some(tx), Some(rx))
    } else {
        (None, None)
    };

    let mut timer = SessionTimer::new(ServerOptions::current());
    let activity = timer.activity();
    let closed = CancellationToken::new();
    let reader = tokio::spawn(read_loop(
        stream,
        proto,
        stdin_tx,
        resize_tx,
        closed.clone(),
        activity.clone(),
        client_spoke.clone(),
    ));
    let handler = tokio::spawn(handler(ServerStreams {
        stdin,
        stdout,
        stderr,
        resize,
        closed,
    }));

    // Output in order until every writer is gone; on a dead socket, stop and let writers fail.
    let mut end = OutputEnd::Done;
    let mut first_output = true;
    loop {
        let message = tokio::select! {
            item = out_rx.recv() => match item {
                Some((channel, data)) => {
                    if std::mem::take(&mut first_output) {
                        client_ready(grace_end, &client_spoke).await;
                    }
                    activity.touch();
                    ws::encode(proto.encoding, channel, &data)
                }
                None => break,
            },
            tick = timer.next() => match tick {
                Tick::Ping => Message::Ping(Bytes::new()),
                Tick::Idle => {
                    end = OutputEnd::Idle;
                    break;
                }
            },
        };
        if let Err(e) = sink.send(message).await {
            tracing::debug!(error = %e, "client went away while writing output");
            end = OutputEnd::ClientGone;
            break;
        }
    }
    drop(out_rx);
    if end == OutputEnd::Idle {
        // Nobody will read this session's output any more: close it as abandoned, end stdin (the
        // reader stops at the client's answer) and drop the handler, which for an exec kills its
        // process (no orphan), as containerd kills an exec whose stream context ended.
        tracing::info!("WebSocket exec/attach session idle timeout: closing it");
        handler.abort();
        if ws::send_idle_close(&mut sink, &write_end).await.is_ok() {
            ws::await_close_answer(reader).await;
        } else {
            reader.abort();
        }
        return Ok(());
    }
    let outcome = handler
        .await
        .unwrap_or_else(|e| Outcome::Error(format!("exec handler failed: {e}")));
    tracing::debug!(?outcome, "remotecommand handler finished");
    if end == OutputEnd::Done {
        let status = if proto.json_status {
            Some(status_json(&outcome, &command))
        } else {
            status_text(&outcome, &command)
        };
        if let Some(status) = status {
            client_ready(grace_end, &client_spoke).await;
            sink.send(ws::encode(proto.encoding, ERROR, &status))
                .await?;
        }
        ws::send_close(&mut sink, &write_end).await?;
    }
    // The reader ends when the client echoes the close (or the connection drops).
    ws::await_close_answer(reader).await;
    Ok(())
}

/// Why the output loop of a session stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OutputEnd {
    /// Every output writer is gone: report the outcome.
    Done,
    /// Writing to the client failed.
    ClientGone,
    /// The idle timeout passed.
    Idle,
}

/// Routes client messages: stdin, v5 close, resize; everything else is dropped.
async fn read_loop(
    mut stream: futures::stream::SplitStream<UpgradedWebSocket>,
    proto: WsProtocol,
    mut stdin: Option<mpsc::Sender<Bytes>>,
    resize: Option<mpsc::Sender<TerminalSize>>,
    closed: CancellationToken,
    activity: Activity,
    client_spoke: CancellationToken,
) {
    let _cancel_on_end = closed.drop_guard();
    let mut decoder = ResizeDecoder::default();
    while let Some(msg) = stream.next().await {
        let msg = match msg {
            Ok(Message::Close(_)) => break,
            Ok(m @ (Message::Binary(_) | Message::Text(_))) => {
                activity.touch();
                client_spoke.cancel();
                m
            }
            Ok(m) => m,
            Err(e) => {
                tracing::debug!(error = %e, "WebSocket read failed");
                break;
            }
        };
        match ws::decode(proto.encoding, proto.v5, msg) {
            Ok(Inbound::Data {
                channel: STDIN,
                payload,
            }) => {
                if let Some(tx) = &stdin
                    && tx.send(payload).await.is_err()
                {
                    stdin = None;
                }
            }
            Ok(Inbound::Data {
                channel: RESIZE,
                payload,
            }) => {
                for size in decoder.feed(&payload) {
                    if let Some(tx) = &resize {
                        // Sizes are latest-wins: drop when the handler is behind.
                        let _ = tx.try_send(size);
                    }
                }
            }
            Ok(Inbound::Data { channel, .. }) => {
                tracing::debug!(channel, "ignoring data on channel")
            }
            Ok(Inbound::Close { channel }) => {
                if channel == STDIN {
                    stdin = None;
                }
            }
            Ok(Inbound::Ignored) => {}
            Err(e) => {
                tracing::debug!(error = %e, "ending session");
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_table() {
        let p = WsProtocol::of(CHANNEL_V5);
        assert_eq!(
            (p.encoding, p.v5, p.json_status),
            (Encoding::Binary, true, true)
        );
        let p = WsProtocol::of(CHANNEL_V4);
        assert_eq!(
            (p.encoding, p.v5, p.json_status),
            (Encoding::Binary, false, true)
        );
        let p = WsProtocol::of(BASE64_V4);
        assert_eq!(
            (p.encoding, p.v5, p.json_status),
            (Encoding::Base64, false, true)
        );
        let p = WsProtocol::of(BASE64_V1);
        assert_eq!(
            (p.encoding, p.v5, p.json_status),
            (Encoding::Base64, false, false)
        );
        let p = WsProtocol::of("");
        assert_eq!(
            (p.encoding, p.v5, p.json_status),
            (Encoding::Binary, false, false)
        );
    }
}
