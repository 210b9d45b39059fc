//! The upgrade-aware proxy (API server → node, node → streaming server).
use hyper::{Request, Response, Uri, body::Incoming};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::Body;

/// Forwards the upgrade request `req` over the already-connected (and, if needed, TLS-wrapped)
/// `backend` connection, with its path and query replaced by `target` (whose authority becomes the
/// `Host` header; every other client header passes through). Reads the backend's response head
/// first: on 101 it returns a 101 to the client and splices both upgraded connections (bytes read
/// past the backend head are delivered first); on ≥ 400 it returns that response (status, headers,
/// body) and drops the backend; anything else becomes a 502 naming the unexpected status.
pub async fn upgrade_proxy<IO>(req: Request<Incoming>, backend: IO, target: Uri) -> Response<Body>
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let _ = (req, backend, target);
    todo!("implemented by the podway-stream work")
}
