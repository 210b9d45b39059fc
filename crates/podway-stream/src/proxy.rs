//! The upgrade-aware proxy (API server → node, node → streaming server).
//!
//! The backend's response head is read before anything is spliced (CVE-2018-1002105): only a
//! `101` joins the two connections; an error status is forwarded and the backend dropped.
use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::{Request, Response, Uri, body::Incoming};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::Body;
use crate::negotiate::text_response;

mod head;

use head::{MAX_BODY, read_body, read_response_head, request_head};

/// Forwards the upgrade request `req` over the already-connected (and, if needed, TLS-wrapped)
/// `backend` connection, with its path and query replaced by `target` (whose authority becomes the
/// `Host` header; every other client header passes through). Reads the backend's response head
/// first: on 101 it returns a 101 to the client and splices both upgraded connections (bytes read
/// past the backend head are delivered first); on ≥ 400 it returns that response (status, headers,
/// body) and drops the backend; anything else becomes a 502 naming the unexpected status.
///
/// The client connection must be served with upgrades enabled (`serve_connection(..).with_upgrades()`).
pub async fn upgrade_proxy<IO>(
    mut req: Request<Incoming>,
    mut backend: IO,
    target: Uri,
) -> Response<Body>
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let on_upgrade = hyper::upgrade::on(&mut req);
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return text_response(
                StatusCode::BAD_REQUEST,
                format!("error reading the request body: {e}"),
            );
        }
    };
    let path = target.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let host = match target.authority() {
        Some(a) => a.to_string(),
        None => parts
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("localhost")
            .to_string(),
    };
    let mut out = request_head(&parts, path, &host, body.len());
    out.extend_from_slice(&body);
    if let Err(e) = write_all_flush(&mut backend, &out).await {
        return bad_gateway(format!(
            "error sending the request to the backend {host}: {e}"
        ));
    }
    let (head, rest) = match read_response_head(&mut backend).await {
        Ok(h) => h,
        Err(e) => return bad_gateway(format!("error reading the backend {host} response: {e}")),
    };
    let status = head.status;
    if status == StatusCode::SWITCHING_PROTOCOLS {
        tracing::debug!(%host, target = path, "backend switched protocols; splicing");
        tokio::spawn(splice(on_upgrade, backend, rest));
        let mut resp = Response::new(Body::new(Bytes::new()));
        *resp.status_mut() = status;
        *resp.headers_mut() = head.headers;
        return resp;
    }
    if status.as_u16() >= 400 {
        tracing::debug!(%host, target = path, %status, "backend refused the upgrade");
        let body = read_body(&mut backend, &head, rest)
            .await
            .unwrap_or_default();
        let mut resp = Response::new(Body::new(Bytes::from(body)));
        *resp.status_mut() = status;
        let mut headers = head.headers;
        for h in [
            header::TRANSFER_ENCODING,
            header::CONTENT_LENGTH,
            header::CONNECTION,
            header::UPGRADE,
        ] {
            headers.remove(h);
        }
        // Like Go's proxy: answer, then close the client connection too.
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        *resp.headers_mut() = headers;
        return resp;
    }
    bad_gateway(format!(
        "invalid upgrade response from {host}: status code {}",
        status.as_u16()
    ))
}

async fn write_all_flush<IO: AsyncWrite + Unpin>(io: &mut IO, data: &[u8]) -> std::io::Result<()> {
    io.write_all(data).await?;
    io.flush().await
}

fn bad_gateway(text: String) -> Response<Body> {
    tracing::warn!("{text}");
    let mut resp = text_response(StatusCode::BAD_GATEWAY, text);
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

/// Waits for the client's upgrade, delivers `rest`, then copies both ways; each direction shuts
/// down the other side's write half when its read side ends.
async fn splice<IO>(on_upgrade: hyper::upgrade::OnUpgrade, mut backend: IO, rest: Vec<u8>)
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let upgraded = match on_upgrade.await {
        Ok(u) => u,
        Err(e) => {
            tracing::warn!(error = %e, "client upgrade failed; dropping the backend connection");
            return;
        }
    };
    let mut client = TokioIo::new(upgraded);
    if !rest.is_empty()
        && let Err(e) = write_all_flush(&mut client, &rest).await
    {
        tracing::debug!(error = %e, "client went away");
        return;
    }
    match tokio::io::copy_bidirectional(&mut client, &mut backend).await {
        Ok((up, down)) => tracing::debug!(up, down, "proxied upgraded connection ended"),
        Err(e) => tracing::debug!(error = %e, "proxied upgraded connection failed"),
    }
}
