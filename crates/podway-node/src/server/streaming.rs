//! exec / attach / portForward (proxied to the CRI streaming server) and run (ExecSync).
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::{Request, Response, StatusCode, Uri, body::Incoming};
use k8s_cri::v1::{AttachRequest, ExecRequest, ExecSyncRequest, PortForwardRequest};
use tokio::net::TcpStream;

use super::{Body, Target, query::Query, query::StreamFlags, text};
use crate::state::Shared;

/// What a remotecommand request runs.
pub(super) enum Kind {
    /// A new process with this command line.
    Exec(Vec<String>),
    /// The container's main process.
    Attach,
}

/// Maps a CRI error to the kubelet's HTTP answer.
pub(super) fn cri_error(status: &tonic::Status) -> Response<Body> {
    match status.code() {
        tonic::Code::NotFound => text(StatusCode::NOT_FOUND, status.message().to_string()),
        tonic::Code::ResourceExhausted => {
            let mut resp = text(StatusCode::TOO_MANY_REQUESTS, status.message().to_string());
            resp.headers_mut().insert(
                http::header::RETRY_AFTER,
                http::HeaderValue::from_static("60"),
            );
            resp
        }
        _ => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            status.message().to_string(),
        ),
    }
}

/// The uid of the addressed pod, or the 404 to send.
pub(super) fn pod_uid(shared: &Shared, t: &Target<'_>) -> Result<String, Box<Response<Body>>> {
    let uid = shared
        .pods
        .uid(t.namespace, t.pod)
        .ok_or_else(|| Box::new(text(StatusCode::NOT_FOUND, "pod does not exist")))?;
    if t.uid.is_some_and(|u| u != uid) {
        return Err(Box::new(text(StatusCode::NOT_FOUND, "pod not found")));
    }
    Ok(uid)
}

/// The CRI id of the newest instance of the addressed container, or the response to send.
async fn container_id(shared: &Shared, t: &Target<'_>) -> Result<String, Box<Response<Body>>> {
    let uid = pod_uid(shared, t)?;
    let name = t.container.unwrap_or_default();
    let containers = shared
        .containers(&uid, name)
        .await
        .map_err(|e| Box::new(cri_error(&e)))?;
    containers.into_iter().next().map(|c| c.id).ok_or_else(|| {
        Box::new(text(
            StatusCode::NOT_FOUND,
            format!("container not found ({name:?})"),
        ))
    })
}

/// Connects to the streaming URL the runtime returned and proxies `req` to it.
async fn proxy(url: &str, req: Request<Incoming>) -> Response<Body> {
    let parsed = match url::Url::parse(url) {
        Ok(u) if u.scheme() == "http" => u,
        Ok(u) => {
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!(
                    "streaming URL {url}: scheme {:?} is not supported",
                    u.scheme()
                ),
            );
        }
        Err(e) => {
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("streaming URL {url:?} from the runtime: {e}"),
            );
        }
    };
    let addrs = match parsed.socket_addrs(|| Some(80)) {
        Ok(a) => a,
        Err(e) => {
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("streaming URL {url}: {e}"),
            );
        }
    };
    let uri: Uri = match url.parse() {
        Ok(u) => u,
        Err(e) => {
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("streaming URL {url}: {e}"),
            );
        }
    };
    let tcp = match TcpStream::connect(addrs.as_slice()).await {
        Ok(t) => {
            // Proxied streams carry small frames: no Nagle delay.
            let _ = t.set_nodelay(true);
            t
        }
        Err(e) => {
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("connecting to the runtime's streaming server {url}: {e}"),
            );
        }
    };
    let resp = podway_stream::proxy::upgrade_proxy(req, tcp, uri).await;
    resp.map(|b| b.map_err(|never| match never {}).boxed())
}

/// `/exec/…` and `/attach/…`.
pub(super) async fn exec_or_attach(
    shared: &Arc<Shared>,
    kind: Kind,
    t: &Target<'_>,
    query: &Query,
    req: Request<Incoming>,
) -> Response<Body> {
    let flags = match StreamFlags::from_query(query) {
        Ok(f) => f,
        Err(msg) => return text(StatusCode::BAD_REQUEST, msg),
    };
    let id = match container_id(shared, t).await {
        Ok(id) => id,
        Err(resp) => return *resp,
    };
    let mut rt = shared.cri.rt();
    let url = match kind {
        Kind::Exec(cmd) => rt
            .exec(ExecRequest {
                container_id: id,
                cmd,
                tty: flags.tty,
                stdin: flags.stdin,
                stdout: flags.stdout,
                stderr: flags.stderr,
            })
            .await
            .map(|r| r.into_inner().url),
        Kind::Attach => rt
            .attach(AttachRequest {
                container_id: id,
                stdin: flags.stdin,
                tty: flags.tty,
                stdout: flags.stdout,
                stderr: flags.stderr,
            })
            .await
            .map(|r| r.into_inner().url),
    };
    match url {
        Ok(url) => proxy(&url, req).await,
        Err(e) => cri_error(&e),
    }
}

/// `/portForward/{ns}/{pod}[/{uid}]`.
pub(super) async fn port_forward(
    shared: &Arc<Shared>,
    t: &Target<'_>,
    query: &Query,
    req: Request<Incoming>,
) -> Response<Body> {
    let uid = match pod_uid(shared, t) {
        Ok(u) => u,
        Err(resp) => return *resp,
    };
    // Optional here: SPDY clients name the port per stream; WebSocket ones need the query.
    let values = query.all("port");
    let ports = if values.is_empty() {
        Vec::new()
    } else {
        match podway_stream::portforward::headers::parse_port_query(
            values.iter().map(String::as_str),
        ) {
            Ok(ports) => ports.into_iter().map(i32::from).collect(),
            Err(e) => return text(StatusCode::BAD_REQUEST, e.to_string()),
        }
    };
    let sandbox = match shared.ready_sandbox(&uid).await {
        Ok(Some(s)) => s,
        Ok(None) => return text(StatusCode::NOT_FOUND, "pod does not exist"),
        Err(e) => return cri_error(&e),
    };
    let url = shared
        .cri
        .rt()
        .port_forward(PortForwardRequest {
            pod_sandbox_id: sandbox.id,
            port: ports,
        })
        .await
        .map(|r| r.into_inner().url);
    match url {
        Ok(url) => proxy(&url, req).await,
        Err(e) => cri_error(&e),
    }
}

/// `/run/…`: runs `cmd` (split on single spaces) synchronously; the body is stdout then stderr.
pub(super) async fn run(shared: &Arc<Shared>, t: &Target<'_>, query: &Query) -> Response<Body> {
    let cmd: Vec<String> = query
        .get("cmd")
        .unwrap_or_default()
        .split(' ')
        .map(str::to_string)
        .collect();
    let id = match container_id(shared, t).await {
        Ok(id) => id,
        Err(resp) => return *resp,
    };
    let result = shared
        .cri
        .rt()
        .exec_sync(ExecSyncRequest {
            container_id: id,
            cmd,
            timeout: 0,
        })
        .await;
    match result {
        Ok(r) => {
            let r = r.into_inner();
            let mut out = r.stdout;
            out.extend_from_slice(&r.stderr);
            text(StatusCode::OK, Bytes::from(out))
        }
        Err(e) => cri_error(&e),
    }
}
