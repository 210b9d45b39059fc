//! remotecommand over SPDY/3.1, server half (`channel.k8s.io` v1 … v5; v5 behaves as v4).
use std::future::Future;

use hyper::{Request, Response, body::Incoming};
use spdy::{RecvStream, SendStream, Stream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{BoxedReader, BoxedWriter, Outcome, ServerStreams, StreamOptions, TerminalSize};
use crate::io::{GuardedWriter, done_pair};
use crate::negotiate::{self, CHANNEL_V1, CHANNEL_V2, SPDY_REMOTECOMMAND};
use crate::resize::ResizeDecoder;
use crate::spdy_conn::{CREATION_TIMEOUT, upgraded_session};
use crate::status::{status_json, status_text};
use crate::{Body, Error};

/// Protocol version number of a negotiated token (1..=5).
fn version(protocol: &str) -> u8 {
    match protocol {
        CHANNEL_V1 => 1,
        CHANNEL_V2 => 2,
        negotiate::CHANNEL_V3 => 3,
        negotiate::CHANNEL_V4 => 4,
        _ => 5,
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
    let protocol = match negotiate::negotiate_spdy(req.headers(), SPDY_REMOTECOMMAND) {
        Ok(p) => p,
        Err(refusal) => return refusal.response(),
    };
    tracing::info!(protocol, "negotiated SPDY {:?} for exec", protocol);
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        match upgraded_session(on_upgrade).await {
            Ok((session, incoming)) => {
                if let Err(e) = run(
                    &session,
                    incoming,
                    version(protocol),
                    options,
                    command,
                    handler,
                )
                .await
                {
                    tracing::warn!(error = %e, "SPDY remotecommand session failed");
                }
                // The client closes once it has read the status. Resetting its streams and sending
                // GOAWAY at once races with Go's spdystream, which may tear the error stream down
                // before delivering the status (kubectl would then report exit 0): let it go first.
                let _ = tokio::time::timeout(CLIENT_CLOSE_GRACE, session.closed()).await;
                session.close().await;
            }
            Err(e) => tracing::warn!(error = %e, "SPDY remotecommand upgrade failed"),
        }
    });
    negotiate::spdy_switching(protocol)
}

/// How long the server waits, after the status, for the client to close the connection itself.
const CLIENT_CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// The client's streams, as they arrived.
#[derive(Default)]
struct Streams {
    error: Option<Stream>,
    stdin: Option<Stream>,
    stdout: Option<Stream>,
    stderr: Option<Stream>,
    resize: Option<Stream>,
    /// Streams of unknown type, kept open until the end.
    other: Vec<Stream>,
}

impl Streams {
    fn complete(&self, options: StreamOptions, version: u8) -> bool {
        self.error.is_some()
            && (!options.stdin || self.stdin.is_some())
            && (!options.stdout || self.stdout.is_some())
            && (!options.stderr || self.stderr.is_some())
            && (!(options.tty && version >= 3) || self.resize.is_some())
    }
}

/// Accepts streams until the expected set is there (or the creation timeout passes).
async fn wait_for_streams(
    incoming: &mut spdy::Incoming,
    options: StreamOptions,
    version: u8,
) -> Result<Streams, Error> {
    let mut streams = Streams::default();
    let accept_all = async {
        while !streams.complete(options, version) {
            let Some(pending) = incoming.accept().await else {
                return Err(Error::Protocol(
                    "connection closed before all streams were created".into(),
                ));
            };
            let kind = pending
                .headers()
                .get("streamtype")
                .unwrap_or("")
                .to_ascii_lowercase();
            let slot = match kind.as_str() {
                "error" => &mut streams.error,
                "stdin" => &mut streams.stdin,
                "stdout" => &mut streams.stdout,
                "stderr" => &mut streams.stderr,
                "resize" => &mut streams.resize,
                _ => {
                    tracing::warn!(stream_type = %kind, "unexpected stream type");
                    streams.other.push(pending.accept());
                    continue;
                }
            };
            if slot.is_some() {
                tracing::warn!(stream_type = %kind, "duplicate stream rejected");
                pending.reject();
            } else {
                *slot = Some(pending.accept());
            }
        }
        Ok(())
    };
    match tokio::time::timeout(CREATION_TIMEOUT, accept_all).await {
        Ok(Ok(())) => Ok(streams),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(Error::StreamCreationTimeout),
    }
}

/// Runs one session: streams, handler, status, end sequence (the caller closes the session).
async fn run<F, Fut>(
    session: &spdy::Session,
    mut incoming: spdy::Incoming,
    version: u8,
    options: StreamOptions,
    command: Vec<String>,
    handler: F,
) -> Result<(), Error>
where
    F: FnOnce(ServerStreams) -> Fut + Send + 'static,
    Fut: Future<Output = Outcome> + Send + 'static,
{
    let mut streams = wait_for_streams(&mut incoming, options, version).await?;
    // Later streams are not part of the session: refuse them.
    tokio::spawn(async move {
        while let Some(pending) = incoming.accept().await {
            pending.reject();
        }
    });

    let mut error = streams.error.take();
    // Halves kept alive until the end so that nothing is reset early.
    let mut keep_recv: Vec<RecvStream> = Vec::new();
    let mut keep_send: Vec<SendStream> = Vec::new();
    if version == 1 {
        // v1 compatibility: the client never receives error text.
        if let Some(e) = error.take() {
            e.reset(spdy::RstStatus::Cancel);
        }
    }
    let stdin = streams.stdin.take().map(|s| {
        let (recv, mut send) = s.into_split();
        if version == 1 {
            tokio::spawn(async move {
                let _ = send.shutdown().await;
            });
        } else {
            keep_send.push(send);
        }
        Box::new(recv) as BoxedReader
    });
    let (guard, waiter) = done_pair();
    let mut writer = |s: Stream| -> BoxedWriter {
        let (recv, send) = s.into_split();
        keep_recv.push(recv);
        Box::new(GuardedWriter::new(send, guard.clone()))
    };
    let stdout = streams.stdout.take().map(&mut writer);
    let stderr = streams.stderr.take().map(&mut writer);
    drop(guard);
    let resize = if options.tty {
        streams.resize.take().map(forward_resize)
    } else {
        None
    };

    let closed = CancellationToken::new();
    let watch = {
        let (session, closed) = (session.clone(), closed.clone());
        tokio::spawn(async move {
            session.closed().await;
            closed.cancel();
        })
    };
    let session_ended = closed.clone();
    let mut handler = tokio::spawn(handler(ServerStreams {
        stdin,
        stdout,
        stderr,
        resize,
        closed,
    }));
    let outcome = tokio::select! {
        biased;
        result = &mut handler => {
            result.unwrap_or_else(|e| Outcome::Error(format!("exec handler failed: {e}")))
        }
        () = session_ended.cancelled() => {
            // The client vanished or the idle timeout closed the session: nobody can read the
            // outcome. Dropping the handler ends an exec's process (no orphan), as the
            // WebSocket server does and as containerd does when a stream's context ends.
            tracing::info!("SPDY exec/attach session ended before its command: stopping it");
            handler.abort();
            return Ok(());
        }
    };
    waiter.wait().await;
    watch.abort();
    tracing::debug!(?outcome, "remotecommand handler finished");

    if let Some(mut error) = error {
        let status = if version >= 4 {
            Some(status_json(&outcome, &command))
        } else {
            status_text(&outcome, &command)
        };
        if let Some(status) = status {
            error.write_all(&status).await?;
        }
        error.shutdown().await?;
    }
    drop(keep_recv);
    drop(keep_send);
    drop(streams);
    Ok(())
}

/// Decodes the resize stream into terminal sizes.
fn forward_resize(stream: Stream) -> mpsc::Receiver<TerminalSize> {
    let (tx, rx) = mpsc::channel(8);
    tokio::spawn(async move {
        let mut stream = stream;
        let mut decoder = ResizeDecoder::default();
        let mut buf = [0u8; 1024];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    for size in decoder.feed(&buf[..n]) {
                        // Latest wins: drop sizes while the handler is behind.
                        let _ = tx.try_send(size);
                    }
                }
            }
        }
    });
    rx
}
