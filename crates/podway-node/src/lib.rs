//! The podway node agent (the kubelet's job): registers the Node, runs the pods bound to it
//! through a CRI runtime, reports their status, and serves the debugging handlers
//! (exec, attach, port-forward, logs, run) on `:10250`.
mod cri;
mod error;
mod log_rotation;
mod logs;
mod node;
mod pods;
mod server;
mod state;

use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    sync::Arc,
};

use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

pub use error::Error;
pub use log_rotation::{LogRotation, parse_size};

/// How the node agent is set up.
#[derive(Debug, Clone)]
pub struct Config {
    /// The Node object's name.
    pub node_name: String,
    /// Kubeconfig with the node's client certificate.
    pub kubeconfig: PathBuf,
    /// The CRI runtime's unix socket.
    pub cri_socket: PathBuf,
    /// Where the debugging handlers listen (`0.0.0.0:10250`).
    pub listen: SocketAddr,
    /// The node's InternalIP in its status (the API server connects there).
    pub advertise_address: IpAddr,
    /// Serving certificate of the debugging handlers (PEM).
    pub tls_cert: PathBuf,
    /// Its private key (PEM).
    pub tls_key: PathBuf,
    /// CA that must have signed the certificates of the handlers' clients (PEM).
    pub client_ca: PathBuf,
    /// Root of the CRI log directories: `<pod_log_dir>/<ns>_<name>_<uid>`.
    pub pod_log_dir: PathBuf,
    /// The agent's own files: the pods' volumes, `<root_dir>/pods/<uid>/volumes/…`.
    pub root_dir: PathBuf,
    /// Serve exec/attach/port-forward/logs/run (otherwise they answer 405).
    pub enable_debugging_handlers: bool,
    /// When container log files are rotated.
    pub log_rotation: LogRotation,
    /// Stop and remove every pod sandbox when the agent stops. `podway up` owns its pods and
    /// stops them with itself; a standalone agent leaves them running and adopts them on its
    /// next start, as the kubelet does.
    pub stop_pods_on_exit: bool,
}

/// A bound, not yet running node agent.
pub struct NodeAgent {
    config: Config,
    listener: TcpListener,
    acceptor: TlsAcceptor,
    local_addr: SocketAddr,
}

impl NodeAgent {
    /// Loads the TLS material and binds the debugging-handler listener.
    pub async fn bind(config: Config) -> Result<Self, Error> {
        let tls = server::tls::server_config(&config.tls_cert, &config.tls_key, &config.client_ca)?;
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|source| Error::Bind {
                addr: config.listen,
                source,
            })?;
        let local_addr = listener.local_addr().map_err(|source| Error::Bind {
            addr: config.listen,
            source,
        })?;
        Ok(Self {
            config,
            listener,
            acceptor: TlsAcceptor::from(tls),
            local_addr,
        })
    }

    /// The address the debugging handlers listen on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Runs until `shutdown` is cancelled; then, with [`Config::stop_pods_on_exit`], stops and
    /// removes every pod sandbox it runs, and returns.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), Error> {
        let stop_pods_on_exit = self.config.stop_pods_on_exit;
        let client = node::client(&self.config.kubeconfig).await?;
        let shared = Arc::new(state::Shared {
            cri: cri::Cri::connect_lazy(&self.config.cri_socket)?,
            pods: state::PodIndex::default(),
            pod_log_dir: self.config.pod_log_dir.clone(),
            root_dir: self.config.root_dir.clone(),
            enable_debugging_handlers: self.config.enable_debugging_handlers,
        });
        let tasks = CancellationToken::new();
        let server = tokio::spawn(server::serve(
            self.listener,
            self.acceptor,
            shared.clone(),
            tasks.clone(),
        ));
        let status = node::NodeStatus {
            client: client.clone(),
            cri: shared.cri.clone(),
            name: self.config.node_name.clone(),
            address: self.config.advertise_address,
            port: self.local_addr.port(),
        };
        let heartbeat = tokio::spawn(status.run(tasks.clone()));
        let rotation = tokio::spawn(log_rotation::run(
            shared.cri.clone(),
            self.config.log_rotation,
            tasks.clone(),
        ));
        let sync = pods::Sync {
            client,
            shared: shared.clone(),
            node_name: self.config.node_name.clone(),
            host_ip: self.config.advertise_address,
        };
        sync.run(shutdown.clone()).await;
        tasks.cancel();
        let _ = heartbeat.await;
        let _ = rotation.await;
        let _ = server.await;
        if stop_pods_on_exit {
            pods::remove_all_sandboxes(&shared).await;
        }
        Ok(())
    }
}
