//! The debugging handlers on `:10250`: HTTPS, client certificates, routing.
mod logs;
mod query;
mod streaming;
pub(crate) mod tls;

use std::{convert::Infallible, sync::Arc};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::{Method, Request, Response, StatusCode, body::Incoming, service::service_fn};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::state::Shared;
use query::Query;

/// The body of every response the handlers build.
pub(crate) type Body = BoxBody<Bytes, std::io::Error>;

/// A plain-text response.
pub(crate) fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut resp = Response::new(full(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// Wraps a complete body.
pub(crate) fn full(bytes: Bytes) -> Body {
    Full::new(bytes).map_err(|never| match never {}).boxed()
}

/// Accepts TLS connections until `shutdown` and serves each on its own task.
pub(crate) async fn serve(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) {
    loop {
        let (tcp, peer) = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => {
                    // Streams carry small frames (window updates, keystrokes): no Nagle delay.
                    let _ = a.0.set_nodelay(true);
                    a
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a debugging-handler connection failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let acceptor = acceptor.clone();
        let shared = shared.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let tls = match acceptor.accept(tcp).await {
                Ok(tls) => tls,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
            };
            let authenticated = tls
                .get_ref()
                .1
                .peer_certificates()
                .is_some_and(|c| !c.is_empty());
            let service = service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(route(shared, authenticated, req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), service)
                .with_upgrades();
            tokio::select! {
                result = conn => if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "debugging-handler connection ended");
                },
                _ = shutdown.cancelled() => {}
            }
        });
    }
}

/// The path segments after `prefix`, split into `(ns, pod, uid, rest)` for the
/// `/{ns}/{pod}[/{uid}]/{container}` and `/{ns}/{pod}[/{uid}]` forms.
struct Target<'a> {
    namespace: &'a str,
    pod: &'a str,
    uid: Option<&'a str>,
    container: Option<&'a str>,
}

fn target<'a>(segments: &[&'a str], with_container: bool) -> Option<Target<'a>> {
    match (with_container, segments) {
        (true, [ns, pod, c]) => Some(Target {
            namespace: ns,
            pod,
            uid: None,
            container: Some(c),
        }),
        (true, [ns, pod, uid, c]) => Some(Target {
            namespace: ns,
            pod,
            uid: Some(uid),
            container: Some(c),
        }),
        (false, [ns, pod]) => Some(Target {
            namespace: ns,
            pod,
            uid: None,
            container: None,
        }),
        (false, [ns, pod, uid]) => Some(Target {
            namespace: ns,
            pod,
            uid: Some(uid),
            container: None,
        }),
        _ => None,
    }
}

async fn route(shared: Arc<Shared>, authenticated: bool, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let Some((&head, rest)) = segments.split_first() else {
        return text(StatusCode::NOT_FOUND, "404 page not found");
    };
    if head == "healthz" {
        return text(StatusCode::OK, "ok");
    }
    if !matches!(
        head,
        "exec" | "attach" | "portForward" | "containerLogs" | "run"
    ) {
        return text(StatusCode::NOT_FOUND, "404 page not found");
    }
    if !authenticated {
        return text(StatusCode::UNAUTHORIZED, "Unauthorized");
    }
    if !shared.enable_debugging_handlers {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            "Debug endpoints are disabled.",
        );
    }
    let method = req.method().clone();
    let query = Query::parse(req.uri().query());
    let Some(t) = target(rest, head != "portForward") else {
        return text(StatusCode::NOT_FOUND, "404 page not found");
    };
    let get_or_post = method == Method::GET || method == Method::POST;
    match head {
        "exec" | "attach" if get_or_post => {
            let kind = if head == "exec" {
                streaming::Kind::Exec(query.all("command"))
            } else {
                streaming::Kind::Attach
            };
            streaming::exec_or_attach(&shared, kind, &t, &query, req).await
        }
        "portForward" if get_or_post => streaming::port_forward(&shared, &t, &query, req).await,
        "run" if method == Method::POST => streaming::run(&shared, &t, &query).await,
        "containerLogs" if method == Method::GET => logs::container_logs(&shared, &t, &query).await,
        _ => text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
    }
}
