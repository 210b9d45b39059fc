//! The daemon: the CRI gRPC server on a unix socket plus the streaming server.
use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use k8s_cri::v1::image_service_server::ImageServiceServer;
use k8s_cri::v1::runtime_service_server::RuntimeServiceServer;
use podway_runtime::Runtime;
use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;
use tokio_util::sync::CancellationToken;

use crate::image_service::CriImages;
use crate::runtime_service::CriRuntime;
use crate::streaming::StreamServer;
use crate::{Config, Error};

/// Messages up to this size are accepted (the kubelet allows 16 MiB; ExecSync output may be big).
const MAX_MESSAGE_SIZE: usize = 16 * 1024 * 1024 + 64 * 1024;

/// A bound CRI daemon: the runtime is open, the socket and the streaming port listen.
pub struct RuntimeDaemon {
    runtime: Runtime,
    socket: PathBuf,
    listener: UnixListener,
    stream_server: StreamServer,
    images_dir: PathBuf,
    data_dir: PathBuf,
}

impl RuntimeDaemon {
    /// Opens the runtime, binds the CRI unix socket (creating its folder and replacing a stale
    /// socket file) and the streaming server.
    pub async fn bind(config: Config) -> Result<RuntimeDaemon, Error> {
        let data_dir = config.runtime.data_dir.clone();
        let images_dir = data_dir.join("images");
        let runtime = Runtime::open(config.runtime).await?;
        let listener = bind_socket(&config.socket).await?;
        let sessions = podway_stream::ServerOptions {
            idle_timeout: config.stream_idle_timeout,
            ping_interval: config.stream_ping_interval,
        };
        let stream_server = StreamServer::bind(
            config.stream_addr,
            config.token_ttl,
            config.max_in_flight,
            sessions,
        )
        .await?;
        tracing::info!(
            socket = %config.socket.display(),
            stream = %stream_server.local_addr(),
            "CRI runtime daemon bound"
        );
        Ok(RuntimeDaemon {
            runtime,
            socket: config.socket,
            listener,
            stream_server,
            images_dir,
            data_dir,
        })
    }

    /// The streaming server's address (the host and port of every streaming URL).
    pub fn stream_addr(&self) -> SocketAddr {
        self.stream_server.local_addr()
    }

    /// Serves CRI and streaming requests until `shutdown` is cancelled, then removes the socket
    /// file. Containers and their monitors keep running.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), Error> {
        let RuntimeDaemon {
            runtime,
            socket,
            listener,
            stream_server,
            images_dir,
            data_dir,
        } = self;
        let streaming = stream_server.streaming();
        let runtime_service =
            RuntimeServiceServer::new(CriRuntime::new(runtime.clone(), streaming, data_dir))
                .max_decoding_message_size(MAX_MESSAGE_SIZE)
                .max_encoding_message_size(MAX_MESSAGE_SIZE);
        let image_service = ImageServiceServer::new(CriImages::new(runtime.clone(), images_dir))
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE);
        // Stop the streaming server also when gRPC fails, so `run` returns.
        let stop_streaming = shutdown.child_token();
        let streams = tokio::spawn(stream_server.serve(runtime, stop_streaming.clone()));
        let served = tonic::transport::Server::builder()
            .add_service(runtime_service)
            .add_service(image_service)
            .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown.cancelled())
            .await;
        stop_streaming.cancel();
        if let Err(err) = streams.await {
            tracing::warn!(%err, "streaming server task failed");
        }
        if let Err(err) = std::fs::remove_file(&socket)
            && err.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(socket = %socket.display(), %err, "could not remove the CRI socket");
        }
        tracing::info!(socket = %socket.display(), "CRI runtime daemon stopped");
        served.map_err(|source| Error::Serve {
            path: socket,
            source,
        })
    }
}

/// Binds the CRI socket: creates its folder, removes a stale socket file (refusing when another
/// process still answers on it), and restricts it to its owner's group.
async fn bind_socket(path: &Path) -> Result<UnixListener, Error> {
    let io = |context, source| Error::Io {
        context,
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| io("creating the folder of", e))?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if tokio::net::UnixStream::connect(path).await.is_ok() {
                return Err(Error::SocketInUse(path.to_path_buf()));
            }
            std::fs::remove_file(path).map_err(|e| io("removing the stale socket", e))?;
        }
        Ok(_) => {
            return Err(io(
                "refusing to replace a non-socket file at",
                std::io::Error::from(std::io::ErrorKind::AlreadyExists),
            ));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io("inspecting", e)),
    }
    let listener = UnixListener::bind(path).map_err(|e| io("binding the CRI socket", e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .map_err(|e| io("setting the mode of", e))?;
    Ok(listener)
}
