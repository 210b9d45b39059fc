//! Settings of the CRI daemon.
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// Where the daemon listens and how the streaming server hands out tokens.
#[derive(Debug, Clone)]
pub struct Config {
    /// The CRI unix socket (`/run/podway/cri.sock` by default in the binary).
    pub socket: PathBuf,
    /// Folders and programs of the container runtime.
    pub runtime: podway_runtime::RuntimeConfig,
    /// Address of the streaming server; port 0 picks a free port (default `127.0.0.1:0`).
    pub stream_addr: SocketAddr,
    /// How long a streaming URL stays valid (default 60 s, as the kubelet's streaming library).
    pub token_ttl: Duration,
    /// How many streaming URLs may be outstanding at once (default 1000).
    pub max_in_flight: usize,
    /// Close an exec, attach or port-forward session after this long without data either way
    /// (`None`: never). Default 4 h, the `StreamIdleTimeout` of containerd and the kubelet.
    pub stream_idle_timeout: Option<Duration>,
    /// Ping WebSocket sessions this often (`None`: never); default 30 s, see
    /// [`podway_stream::DEFAULT_PING_INTERVAL`] for why the server pings at all. Pings do not
    /// count as activity for the idle timeout; SPDY sessions answer pings but send none.
    pub stream_ping_interval: Option<Duration>,
}

impl Config {
    /// A configuration with the default streaming settings.
    pub fn new(socket: PathBuf, runtime: podway_runtime::RuntimeConfig) -> Config {
        Config {
            socket,
            runtime,
            stream_addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            token_ttl: Duration::from_secs(60),
            max_in_flight: 1000,
            stream_idle_timeout: Some(podway_stream::DEFAULT_IDLE_TIMEOUT),
            stream_ping_interval: Some(podway_stream::DEFAULT_PING_INTERVAL),
        }
    }
}
