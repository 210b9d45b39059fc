//! The CRI gRPC clients (runtime + image service) over a unix socket.
use std::path::{Path, PathBuf};

use hyper_util::rt::TokioIo;
use k8s_cri::v1::{
    image_service_client::ImageServiceClient, runtime_service_client::RuntimeServiceClient,
};
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint};
use tower::service_fn;

use crate::Error;

/// Label keys the agent puts on sandboxes and containers (the kubelet's names).
pub(crate) mod labels {
    /// Pod name.
    pub const POD_NAME: &str = "io.kubernetes.pod.name";
    /// Pod namespace.
    pub const POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
    /// Pod uid.
    pub const POD_UID: &str = "io.kubernetes.pod.uid";
    /// Container name.
    pub const CONTAINER_NAME: &str = "io.kubernetes.container.name";
}

/// Cloneable handles on both CRI services; one lazily connected channel.
#[derive(Clone)]
pub(crate) struct Cri {
    runtime: RuntimeServiceClient<Channel>,
    images: ImageServiceClient<Channel>,
}

impl Cri {
    /// Creates clients for the CRI socket at `path`; the connection is made on first use (and
    /// re-made after failures), so the runtime may start after the agent.
    pub(crate) fn connect_lazy(path: &Path) -> Result<Self, Error> {
        let socket: PathBuf = path.to_path_buf();
        let endpoint =
            Endpoint::try_from("http://[::]:50051").map_err(|source| Error::CriEndpoint {
                path: socket.clone(),
                source,
            })?;
        let channel = endpoint.connect_with_connector_lazy(service_fn(move |_| {
            let p = socket.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(p).await?)) }
        }));
        Ok(Self {
            runtime: RuntimeServiceClient::new(channel.clone()).max_decoding_message_size(64 << 20),
            images: ImageServiceClient::new(channel).max_decoding_message_size(64 << 20),
        })
    }

    /// The runtime service client.
    pub(crate) fn rt(&self) -> RuntimeServiceClient<Channel> {
        self.runtime.clone()
    }

    /// The image service client.
    pub(crate) fn img(&self) -> ImageServiceClient<Channel> {
        self.images.clone()
    }
}
