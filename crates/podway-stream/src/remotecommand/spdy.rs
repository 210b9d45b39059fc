//! remotecommand over SPDY/3.1, server half.
use std::future::Future;

use hyper::{Request, Response, StatusCode, body::Incoming};

use super::{Outcome, ServerStreams, StreamOptions};
use crate::Body;
use crate::negotiate::text_response;

/// Handshake, 101, and the session on a spawned task.
pub(super) fn serve<F, Fut>(req: Request<Incoming>, options: StreamOptions, command: Vec<String>, handler: F) -> Response<Body>
where
    F: FnOnce(ServerStreams) -> Fut + Send + 'static,
    Fut: Future<Output = Outcome> + Send + 'static,
{
    let _ = (req, options, command, handler);
    text_response(StatusCode::BAD_REQUEST, "SPDY is not available yet".into())
}
