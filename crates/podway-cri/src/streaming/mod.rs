//! The streaming server: the gRPC `Exec`, `Attach` and `PortForward` calls cache their request
//! under a token and return a URL; the HTTP server here answers that URL once.
mod server;
mod tokens;

pub(crate) use server::StreamServer;
pub(crate) use tokens::StreamRequest;
use tokens::TokenCache;

/// The part of the streaming server the gRPC service uses: it turns requests into URLs.
pub(crate) struct Streaming {
    cache: TokenCache,
    /// `http://HOST:PORT` of the streaming server.
    base_url: String,
}

impl Streaming {
    /// Caches `request` under a fresh token and returns the URL that serves it once.
    pub(crate) fn url_for(&self, request: StreamRequest) -> Result<String, tonic::Status> {
        let kind = request.kind();
        let token = self
            .cache
            .insert(request)
            .map_err(|e| tonic::Status::resource_exhausted(e.to_string()))?;
        Ok(format!("{}/{kind}/{token}", self.base_url))
    }
}
