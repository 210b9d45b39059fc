//! Idle timeout and keep-alive pings of the server halves' sessions.
//!
//! What counts as activity (and so keeps a session from idling out), as the kubelet's streaming
//! server does it:
//! - WebSocket (remotecommand, the legacy port-forward protocol): any data message, TEXT or
//!   BINARY, in either direction. Pings, pongs and close frames do not count, so the server's own
//!   keep-alive pings never keep an idle session alive.
//! - SPDY (and SPDY inside the WebSocket tunnel): any frame read or written, PING included, as in
//!   Go's spdystream (`idleAwareFramer`). This is why SPDY sessions never send keep-alive pings of
//!   their own: they would make the idle timeout unreachable. A client's pings are answered.
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use tokio::time::{Instant, Interval, MissedTickBehavior};

/// The kubelet's and containerd's default `StreamIdleTimeout`.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(4 * 60 * 60);

/// Default keep-alive ping interval of WebSocket sessions. Neither the kubelet nor containerd
/// pings from the server, but a silent interactive shell then depends on every middlebox on the
/// path keeping an idle TCP connection: proxies commonly cut them after 60 s without data from
/// the server (nginx's `proxy_read_timeout`, cloud load balancers). A ping every 30 s stays under
/// that, costs 2 bytes each way per session, and makes a vanished client's connection fail (and
/// its process's stdin end) within a TCP retransmission timeout instead of at the idle timeout.
/// Every WebSocket client answers pings (RFC 6455 §5.5.2; kubectl, client-go, the Python client).
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(30);

/// Session timeouts of every server half of this crate: remotecommand over SPDY and WebSocket,
/// port-forward over SPDY, the SPDY-over-WebSocket tunnel and the legacy WebSocket protocol.
///
/// They are a property of the streaming server process, like the kubelet's
/// `--streaming-connection-idle-timeout`: [`ServerOptions::install`] sets them, and each session
/// reads [`ServerOptions::current`] when it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerOptions {
    /// Close a session after this long without activity (see the module docs); `None`: never.
    pub idle_timeout: Option<Duration>,
    /// Send a WebSocket Ping this often on WebSocket sessions (the tunnel included); `None`:
    /// never. SPDY sessions do not ping (see the module docs).
    pub ping_interval: Option<Duration>,
}

impl ServerOptions {
    /// The defaults: [`DEFAULT_IDLE_TIMEOUT`] and [`DEFAULT_PING_INTERVAL`].
    pub const DEFAULT: ServerOptions = ServerOptions {
        idle_timeout: Some(DEFAULT_IDLE_TIMEOUT),
        ping_interval: Some(DEFAULT_PING_INTERVAL),
    };

    /// Makes these the options of every session started from now on in this process.
    pub fn install(self) {
        *CURRENT.write().unwrap_or_else(PoisonError::into_inner) = self;
    }

    /// The options sessions start with now ([`ServerOptions::DEFAULT`] until one is installed).
    pub fn current() -> ServerOptions {
        *CURRENT.read().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions::DEFAULT
    }
}

static CURRENT: RwLock<ServerOptions> = RwLock::new(ServerOptions::DEFAULT);

/// When a session last carried data; cheap to clone, shared by a session's reader and writer.
#[derive(Debug, Clone)]
pub(crate) struct Activity {
    epoch: Instant,
    /// Milliseconds from `epoch` to the last activity.
    last_ms: Arc<AtomicU64>,
}

impl Activity {
    /// A clock whose last activity is now.
    pub(crate) fn new() -> Activity {
        Activity {
            epoch: Instant::now(),
            last_ms: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Records activity now.
    pub(crate) fn touch(&self) {
        let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.fetch_max(ms, Ordering::Relaxed);
    }

    /// When the last activity was.
    pub(crate) fn last(&self) -> Instant {
        self.epoch + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

/// What a session should do next, from [`SessionTimer::next`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tick {
    /// Send a keep-alive ping.
    Ping,
    /// The idle timeout passed without activity: close the session.
    Idle,
}

/// Drives a WebSocket session's keep-alive pings and idle timeout; poll [`SessionTimer::next`] in
/// the session's `select!` loop (it is cancel-safe) and [`Activity::touch`] on every data message.
pub(crate) struct SessionTimer {
    activity: Activity,
    idle_timeout: Option<Duration>,
    ping: Option<Interval>,
}

impl SessionTimer {
    /// A timer for a session starting now.
    pub(crate) fn new(options: ServerOptions) -> SessionTimer {
        SessionTimer {
            activity: Activity::new(),
            idle_timeout: options.idle_timeout,
            ping: options.ping_interval.map(ping_interval),
        }
    }

    /// The session's activity clock.
    pub(crate) fn activity(&self) -> Activity {
        self.activity.clone()
    }

    /// Resolves when a ping is due or the session has been idle for the idle timeout; never
    /// when neither is configured.
    pub(crate) async fn next(&mut self) -> Tick {
        loop {
            let idle_at = self.idle_timeout.map(|t| self.activity.last() + t);
            tokio::select! {
                () = ping_due(self.ping.as_mut()) => return Tick::Ping,
                () = sleep_until(idle_at) => {
                    if let Some(timeout) = self.idle_timeout
                        && self.activity.last() + timeout <= Instant::now()
                    {
                        return Tick::Idle;
                    }
                }
            }
        }
    }
}

/// An interval whose first tick is one period from now.
fn ping_interval(every: Duration) -> Interval {
    let every = every.max(Duration::from_millis(1));
    let mut interval = tokio::time::interval_at(Instant::now() + every, every);
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    interval
}

async fn ping_due(interval: Option<&mut Interval>) {
    match interval {
        Some(interval) => {
            interval.tick().await;
        }
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pings_at_the_interval_and_idles_out_without_activity() {
        let mut timer = SessionTimer::new(ServerOptions {
            idle_timeout: Some(Duration::from_millis(500)),
            ping_interval: Some(Duration::from_millis(100)),
        });
        let start = Instant::now();
        assert_eq!(timer.next().await, Tick::Ping);
        assert!(start.elapsed() >= Duration::from_millis(100));
        let mut pings = 1;
        while timer.next().await == Tick::Ping {
            pings += 1;
        }
        // The pings did not count as activity.
        assert!(start.elapsed() >= Duration::from_millis(500));
        assert!(start.elapsed() < Duration::from_secs(5));
        assert!(pings >= 2, "{pings} pings");
    }

    #[tokio::test]
    async fn activity_postpones_the_idle_timeout() {
        let mut timer = SessionTimer::new(ServerOptions {
            idle_timeout: Some(Duration::from_millis(400)),
            ping_interval: None,
        });
        let activity = timer.activity();
        let start = Instant::now();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            activity.touch();
        });
        assert_eq!(timer.next().await, Tick::Idle);
        assert!(start.elapsed() >= Duration::from_millis(700));
    }

    #[test]
    fn defaults_are_the_kubelets_idle_timeout_and_30s_pings() {
        let d = ServerOptions::default();
        assert_eq!(d.idle_timeout, Some(Duration::from_secs(4 * 3600)));
        assert_eq!(d.ping_interval, Some(Duration::from_secs(30)));
    }
}
