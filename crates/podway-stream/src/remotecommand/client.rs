//! remotecommand client halves: WebSocket (`v5`, `v4`) and SPDY (`v4`…`v1`), for `podway exec`
//! and tests.
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http::Request;
use serde_json::Value;
use spdy::Headers;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

use super::ws::{ERROR, RESIZE, STDERR, STDIN, STDOUT};
use super::{BoxedReader, BoxedWriter, Outcome, StreamOptions, TerminalSize};
use crate::io::{ChannelReader, ChannelWriter};
use crate::negotiate::{CHANNEL_V1, CHANNEL_V2, CHANNEL_V3, CHANNEL_V4, CHANNEL_V5};
use crate::ws::{self, Encoding, Inbound};
use crate::{Error, client};

/// Which transport a client session uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientTransport {
    /// WebSocket offering `v5.channel.k8s.io,v4.channel.k8s.io`.
    WebSocket,
    /// SPDY/3.1 offering `v4`, `v3`, `v2`, `channel.k8s.io`.
    Spdy,
    /// SPDY/3.1 offering exactly these protocols, in this order (for old servers and tests).
    SpdyProtocols(&'static [&'static str]),
}

/// The client's ends of the standard streams.
pub struct ClientStreams {
    /// Bytes for the process; shut down (or drop) to send end-of-input.
    pub stdin: Option<BoxedWriter>,
    /// The process's stdout, until the server ends it.
    pub stdout: Option<BoxedReader>,
    /// The process's stderr (never with a TTY).
    pub stderr: Option<BoxedReader>,
    /// Terminal sizes to send (TTY only).
    pub resize: Option<mpsc::Sender<TerminalSize>>,
}

/// The end of a client session: the negotiated protocol and the outcome reported by the server.
pub struct Completion {
    protocol: String,
    outcome: oneshot::Receiver<Result<Outcome, Error>>,
}

impl Completion {
    /// The negotiated subprotocol.
    pub fn protocol(&self) -> &str {
        &self.protocol
    }

    /// Waits for the server's status. Read stdout/stderr to their end first (as kubectl does):
    /// the session is closed once the status has arrived.
    pub async fn outcome(self) -> Result<Outcome, Error> {
        self.outcome
            .await
            .unwrap_or_else(|_| Err(Error::Protocol("session ended without a status".into())))
    }
}

/// The outcome of a session whose error stream carried `status`. From v4 on a server always
/// sends a status, success included, so none means the connection ended before the command did:
/// a failure, never exit 0. Before v4 an empty error stream is how success looks.
fn session_outcome(status: &[u8], json_status: bool) -> Outcome {
    if json_status && status.iter().all(u8::is_ascii_whitespace) {
        return Outcome::Error(
            "the connection ended before the command's exit status arrived".into(),
        );
    }
    decode_status(status)
}

/// Decodes the error stream: JSON `metav1.Status` (v4/v5) or v1-style text.
pub fn decode_status(data: &[u8]) -> Outcome {
    if data.iter().all(u8::is_ascii_whitespace) {
        return Outcome::Exited(0);
    }
    let Ok(v) = serde_json::from_slice::<Value>(data) else {
        return Outcome::Error(String::from_utf8_lossy(data).trim().to_string());
    };
    let message = v
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    match v.get("status").and_then(Value::as_str) {
        Some("Success") => Outcome::Exited(0),
        Some("Failure") if v.get("reason").and_then(Value::as_str) == Some("NonZeroExitCode") => {
            let code = v
                .pointer("/details/causes")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .find(|c| c.get("reason").and_then(Value::as_str) == Some("ExitCode"))
                .and_then(|c| c.get("message").and_then(Value::as_str))
                .and_then(|m| m.parse::<u8>().ok());
            match code {
                Some(code) => Outcome::Exited(i32::from(code)),
                None => Outcome::Error(format!(
                    "error stream protocol error: invalid exit code in {message:?}"
                )),
            }
        }
        Some("Failure") => Outcome::Error(message),
        _ => Outcome::Error("error stream protocol error: unknown error".into()),
    }
}

/// Starts an exec/attach session over `io` (already connected, TLS-wrapped if needed) for the
/// request `req` (URI with the query kubectl would send, extra headers such as
/// `Authorization`).
pub async fn connect<IO>(
    io: IO,
    req: &Request<()>,
    options: StreamOptions,
    transport: ClientTransport,
) -> Result<(ClientStreams, Completion), Error>
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let options = StreamOptions {
        stderr: options.stderr && !options.tty,
        ..options
    };
    match transport {
        ClientTransport::WebSocket => connect_ws(io, req, options).await,
        ClientTransport::Spdy => {
            connect_spdy(
                io,
                req,
                options,
                &[CHANNEL_V4, CHANNEL_V3, CHANNEL_V2, CHANNEL_V1],
            )
            .await
        }
        ClientTransport::SpdyProtocols(protocols) => {
            connect_spdy(io, req, options, protocols).await
        }
    }
}

const QUEUE: usize = 16;

async fn connect_ws<IO>(
    io: IO,
    req: &Request<()>,
    options: StreamOptions,
) -> Result<(ClientStreams, Completion), Error>
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (socket, protocol) = client::websocket(io, req, &[CHANNEL_V5, CHANNEL_V4]).await?;
    let v5 = protocol == CHANNEL_V5;
    let (mut sink, mut stream) = socket.split();

    let (stdin_tx, mut stdin_rx) = mpsc::channel::<(u8, Bytes)>(QUEUE);
    let stdin = options
        .stdin
        .then(|| Box::new(ChannelWriter::new(stdin_tx.clone(), STDIN)) as BoxedWriter);
    drop(stdin_tx);
    let (resize_tx, mut resize_rx) = mpsc::channel::<TerminalSize>(8);
    let resize = options.tty.then_some(resize_tx);
    tokio::spawn(async move {
        let (mut stdin_open, mut resize_open) = (true, true);
        while stdin_open || resize_open {
            let msg = tokio::select! {
                item = stdin_rx.recv(), if stdin_open => match item {
                    Some((channel, data)) => ws::encode(Encoding::Binary, channel, &data),
                    None => {
                        stdin_open = false;
                        if !(v5 && options.stdin) {
                            continue;
                        }
                        Message::Binary(Bytes::from_static(&[ws::CLOSE_CHANNEL, STDIN]))
                    }
                },
                size = resize_rx.recv(), if resize_open => match size {
                    Some(size) => ws::encode(Encoding::Binary, RESIZE, &resize_json(size)),
                    None => {
                        resize_open = false;
                        continue;
                    }
                },
            };
            if sink.send(msg).await.is_err() {
                break;
            }
        }
    });

    let (out_tx, out_rx) = mpsc::channel::<Bytes>(QUEUE);
    let (err_tx, err_rx) = mpsc::channel::<Bytes>(QUEUE);
    let stdout = options
        .stdout
        .then(|| Box::new(ChannelReader::new(out_rx)) as BoxedReader);
    let stderr = options
        .stderr
        .then(|| Box::new(ChannelReader::new(err_rx)) as BoxedReader);
    let (done_tx, done_rx) = oneshot::channel();
    tokio::spawn(async move {
        let (mut out_tx, mut err_tx) = (Some(out_tx), Some(err_tx));
        let mut status = Vec::new();
        let mut failure = None;
        while let Some(msg) = stream.next().await {
            let msg = match msg {
                Ok(Message::Text(_)) => {
                    failure = Some(Error::Protocol("unexpected message type: TEXT".into()));
                    break;
                }
                Ok(m) => m,
                Err(e) => {
                    failure = Some(e.into());
                    break;
                }
            };
            // A close frame is answered by tungstenite on the next read; keep reading to the end.
            let Ok(Inbound::Data { channel, payload }) = ws::decode(Encoding::Binary, false, msg)
            else {
                continue;
            };
            let target = match channel {
                STDOUT => &mut out_tx,
                STDERR => &mut err_tx,
                ERROR => {
                    status.extend_from_slice(&payload);
                    continue;
                }
                _ => continue,
            };
            if let Some(tx) = target
                && !payload.is_empty()
                && tx.send(payload).await.is_err()
            {
                *target = None;
            }
        }
        drop((out_tx, err_tx));
        let _ = done_tx.send(match failure {
            Some(e) => Err(e),
            None => Ok(session_outcome(&status, true)),
        });
    });
    Ok((
        ClientStreams {
            stdin,
            stdout,
            stderr,
            resize,
        },
        Completion {
            protocol,
            outcome: done_rx,
        },
    ))
}

/// `{"Width":w,"Height":h}` plus a newline, as Go's `json.Encoder` writes it.
fn resize_json(size: TerminalSize) -> Vec<u8> {
    format!("{{\"Width\":{},\"Height\":{}}}\n", size.width, size.height).into_bytes()
}

fn stream_type(kind: &str) -> Headers {
    let mut h = Headers::new();
    h.insert("streamtype", kind);
    h
}

async fn connect_spdy<IO>(
    io: IO,
    req: &Request<()>,
    options: StreamOptions,
    protocols: &[&str],
) -> Result<(ClientStreams, Completion), Error>
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (io, protocol) = client::spdy(io, req, protocols).await?;
    let version = match protocol.as_str() {
        CHANNEL_V1 => 1,
        CHANNEL_V2 => 2,
        CHANNEL_V3 => 3,
        _ => 4,
    };
    let config = spdy::Config {
        ping_interval: Some(std::time::Duration::from_secs(5)),
        ..spdy::Config::default()
    };
    let (session, mut incoming) = spdy::Session::new(io, spdy::Role::Client, config);
    tokio::spawn(async move {
        while let Some(pending) = incoming.accept().await {
            pending.reject();
        }
    });
    let mut error = session.open(stream_type("error")).await?;
    let mut keep_send = Vec::new();
    let mut keep_recv = Vec::new();
    let stdin = match options.stdin {
        true => {
            let (recv, send) = session.open(stream_type("stdin")).await?.into_split();
            keep_recv.push(recv);
            Some(Box::new(send) as BoxedWriter)
        }
        false => None,
    };
    let mut readers = Vec::new();
    for (kind, wanted) in [("stdout", options.stdout), ("stderr", options.stderr)] {
        if wanted {
            let (recv, send) = session.open(stream_type(kind)).await?.into_split();
            keep_send.push(send);
            readers.push(Some(Box::new(recv) as BoxedReader));
        } else {
            readers.push(None);
        }
    }
    let stderr = readers.pop().flatten();
    let stdout = readers.pop().flatten();
    let resize = if options.tty && version >= 3 {
        let mut stream = session.open(stream_type("resize")).await?;
        let (tx, mut rx) = mpsc::channel::<TerminalSize>(8);
        tokio::spawn(async move {
            while let Some(size) = rx.recv().await {
                if stream.write_all(&resize_json(size)).await.is_err() {
                    break;
                }
            }
            let _ = stream.shutdown().await;
        });
        Some(tx)
    } else {
        None
    };
    let (done_tx, done_rx) = oneshot::channel();
    tokio::spawn(async move {
        let mut status = Vec::new();
        let result = error.read_to_end(&mut status).await;
        let outcome = result.map(|_| session_outcome(&status, version >= 4));
        let _ = done_tx.send(outcome.map_err(Error::from));
        drop((keep_send, keep_recv));
        session.close().await;
    });
    Ok((
        ClientStreams {
            stdin,
            stdout,
            stderr,
            resize,
        },
        Completion {
            protocol,
            outcome: done_rx,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{status_json, status_text};

    #[test]
    fn status_round_trip() {
        let cmd = vec!["sh".to_string()];
        for o in [Outcome::Exited(0), Outcome::Exited(3), Outcome::Exited(255)] {
            assert_eq!(decode_status(&status_json(&o, &cmd)), o);
        }
        let o = Outcome::Error("boom".into());
        assert_eq!(
            decode_status(&status_json(&o, &cmd)),
            Outcome::Error("Internal error occurred: boom".into())
        );
        assert_eq!(decode_status(b""), Outcome::Exited(0));
        assert_eq!(session_outcome(b"", false), Outcome::Exited(0));
        assert!(matches!(session_outcome(b"", true), Outcome::Error(_)));
        let text = status_text(&Outcome::Exited(3), &cmd).unwrap();
        assert!(matches!(decode_status(&text), Outcome::Error(t) if t.ends_with("exit code 3")));
        let bad = br#"{"metadata":{},"status":"Failure","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"300"}]}}"#;
        assert!(matches!(decode_status(bad), Outcome::Error(_)));
    }
}
