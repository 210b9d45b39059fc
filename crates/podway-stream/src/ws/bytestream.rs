//! A WebSocket seen as one byte stream: the payloads of BINARY messages, concatenated (message
//! boundaries carry no meaning). This is how SPDY travels in the port-forward tunnel.
//!
//! It sends a Ping every [`ServerOptions::current`] `ping_interval` while it is being read (the
//! SPDY session inside always is), so that an idle tunnel keeps its connection alive; the idle
//! timeout is the business of the SPDY session inside. Pinging from the client end too is
//! allowed by RFC 6455 and harmless.
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Buf, Bytes};
use futures::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Interval, MissedTickBehavior};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::ServerOptions;
use crate::io::MAX_CHUNK;

/// `AsyncRead + AsyncWrite` over a [`WebSocketStream`]: reads return BINARY payloads in order
/// (EOF on a close frame or the end of the connection, an error on TEXT); each write sends one
/// BINARY message; shutdown sends a close frame with code 1000 and flushes it.
pub struct WsByteStream<S> {
    ws: WebSocketStream<S>,
    pending: Bytes,
    read_done: bool,
    close_sent: bool,
    keepalive: Option<Interval>,
    ping_due: bool,
    ping_unflushed: bool,
}

impl<S> WsByteStream<S> {
    /// Wraps `ws`, with keep-alive pings as [`ServerOptions::current`] says.
    pub fn new(ws: WebSocketStream<S>) -> Self {
        Self::with_ping_interval(ws, ServerOptions::current().ping_interval)
    }

    /// Wraps `ws`, sending a Ping every `every` (`None`: never).
    pub fn with_ping_interval(ws: WebSocketStream<S>, every: Option<Duration>) -> Self {
        let keepalive = every.map(|every| {
            let every = every.max(Duration::from_millis(1));
            let mut interval = tokio::time::interval_at(Instant::now() + every, every);
            interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
            interval
        });
        WsByteStream {
            ws,
            pending: Bytes::new(),
            read_done: false,
            close_sent: false,
            keepalive,
            ping_due: false,
            ping_unflushed: false,
        }
    }
}

impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin> WsByteStream<S> {
    /// Sends a due keep-alive ping and flushes it, without ever blocking the caller: errors are
    /// left for the next read or write to report.
    fn poll_keepalive(&mut self, cx: &mut Context<'_>) {
        let Some(interval) = self.keepalive.as_mut() else {
            return;
        };
        while interval.poll_tick(cx).is_ready() {
            self.ping_due = true;
        }
        if self.close_sent || self.read_done {
            return;
        }
        if self.ping_due {
            match Pin::new(&mut self.ws).poll_ready(cx) {
                Poll::Ready(Ok(())) => {
                    self.ping_due = false;
                    self.ping_unflushed = Pin::new(&mut self.ws)
                        .start_send(Message::Ping(Bytes::new()))
                        .is_ok();
                }
                Poll::Ready(Err(_)) => self.ping_due = false,
                Poll::Pending => {}
            }
        }
        if self.ping_unflushed && Pin::new(&mut self.ws).poll_flush(cx).is_ready() {
            self.ping_unflushed = false;
        }
    }
}

fn to_io(e: tokio_tungstenite::tungstenite::Error) -> io::Error {
    use tokio_tungstenite::tungstenite::Error as E;
    match e {
        E::Io(e) => e,
        E::ConnectionClosed | E::AlreadyClosed => io::Error::new(io::ErrorKind::BrokenPipe, e),
        other => io::Error::other(other),
    }
}

impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin> AsyncRead for WsByteStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.poll_keepalive(cx);
        while self.pending.is_empty() {
            if self.read_done {
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut self.ws).poll_next(cx)) {
                Some(Ok(Message::Binary(b))) => self.pending = b,
                Some(Ok(Message::Text(_))) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "unexpected TEXT message in a binary WebSocket byte stream",
                    )));
                }
                Some(Ok(Message::Close(_))) | None => self.read_done = true,
                Some(Ok(_)) => {} // ping/pong: tungstenite answers pings on the next read
                Some(Err(e)) => {
                    self.read_done = true;
                    return Poll::Ready(Err(to_io(e)));
                }
            }
        }
        let n = self.pending.len().min(buf.remaining());
        buf.put_slice(&self.pending[..n]);
        self.pending.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin> AsyncWrite for WsByteStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        ready!(Pin::new(&mut self.ws).poll_ready(cx)).map_err(to_io)?;
        let n = buf.len().min(MAX_CHUNK);
        Pin::new(&mut self.ws)
            .start_send(Message::Binary(Bytes::copy_from_slice(&buf[..n])))
            .map_err(to_io)?;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.ws).poll_flush(cx).map_err(to_io)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.close_sent {
            ready!(Pin::new(&mut self.ws).poll_ready(cx)).map_err(to_io)?;
            let frame = CloseFrame {
                code: CloseCode::Normal,
                reason: "".into(),
            };
            match Pin::new(&mut self.ws).start_send(Message::Close(Some(frame))) {
                Ok(()) => {}
                Err(e) => {
                    self.close_sent = true;
                    return Poll::Ready(Err(to_io(e)));
                }
            }
            self.close_sent = true;
        }
        match ready!(Pin::new(&mut self.ws).poll_flush(cx)) {
            Ok(()) => Poll::Ready(Ok(())),
            Err(tokio_tungstenite::tungstenite::Error::ConnectionClosed) => Poll::Ready(Ok(())),
            Err(e) => Poll::Ready(Err(to_io(e))),
        }
    }
}
