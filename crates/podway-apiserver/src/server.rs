//! The HTTPS listener, per-connection TLS + HTTP/1.1 serving, authentication and routing.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use podway_store::SqliteStore;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::error::ApiError;
use crate::http::{Body, Query, error, full, json};
use crate::kubelet::Kubelets;
use crate::resource::Target;
use crate::rest::Rest;
use crate::tls::{User, user_of};
use crate::{Error, discovery, pki, scheduler, table, tls, watch};

/// How the API server runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// The data directory (the store lives in `store.db` there).
    pub data_dir: PathBuf,
    /// The HTTPS listen address, e.g. `0.0.0.0:6443`.
    pub listen: SocketAddr,
    /// The certificates (from [`pki::ensure`]).
    pub pki: pki::Pki,
    /// The kubelet port used when a node reports none.
    pub kubelet_port: u16,
}

/// A bound, not yet running API server.
pub struct ApiServer {
    listener: TcpListener,
    local_addr: SocketAddr,
    acceptor: TlsAcceptor,
    state: Arc<State>,
}

struct State {
    rest: Rest,
    kubelets: Kubelets,
    address: String,
}

/// The largest request body accepted (as Kubernetes: 3 MiB).
const MAX_BODY: usize = 3 * 1024 * 1024;

/// How long a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

impl ApiServer {
    /// Opens the store, creates the system namespaces and binds the listener.
    pub async fn bind(config: Config) -> Result<Self, Error> {
        std::fs::create_dir_all(&config.data_dir).map_err(|e| Error::io(&config.data_dir, e))?;
        let db = config.data_dir.join("store.db");
        let store = tokio::task::spawn_blocking(move || SqliteStore::open(&db))
            .await
            .map_err(|e| podway_store::Error::Worker(e.to_string()))??;
        let rest = Rest {
            store: Arc::new(store),
        };
        rest.ensure_system_namespaces()
            .await
            .map_err(|e| Error::Store(podway_store::Error::Worker(e.message)))?;
        let acceptor = TlsAcceptor::from(tls::server_config(&config.pki)?);
        let kubelets = Kubelets::new(
            tls::kubelet_client_config(&config.pki)?,
            config.kubelet_port,
        );
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
        tracing::info!(%local_addr, "API server listening");
        Ok(ApiServer {
            listener,
            local_addr,
            acceptor,
            state: Arc::new(State {
                rest,
                kubelets,
                address: local_addr.to_string(),
            }),
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown` is cancelled; then stops accepting and closes every connection.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), Error> {
        let mut tasks = JoinSet::new();
        tasks.spawn(scheduler::run(
            self.state.rest.clone(),
            shutdown.child_token(),
        ));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                accepted = self.listener.accept() => match accepted {
                    Ok((tcp, peer)) => {
                        // Streams relay small frames (window updates, keystrokes): no Nagle
                        // delay, as Go's sockets have none.
                        let _ = tcp.set_nodelay(true);
                        let state = self.state.clone();
                        let acceptor = self.acceptor.clone();
                        tasks.spawn(serve_connection(state, acceptor, tcp, peer));
                    }
                    Err(e) => {
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            }
        }
        tasks.shutdown().await;
        Ok(())
    }
}

async fn serve_connection(
    state: Arc<State>,
    acceptor: TlsAcceptor,
    tcp: TcpStream,
    peer: SocketAddr,
) {
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::debug!(%peer, "TLS handshake failed: {e}");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            return;
        }
    };
    let user = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|certs| certs.first())
        .and_then(user_of);
    let service = service_fn(move |req| {
        let state = state.clone();
        let user = user.clone();
        async move { Ok::<_, Infallible>(handle(&state, user.as_ref(), req).await) }
    });
    if let Err(e) = http1::Builder::new()
        .serve_connection(TokioIo::new(tls), service)
        .with_upgrades()
        .await
    {
        tracing::debug!(%peer, "connection ended: {e}");
    }
}

async fn handle(state: &State, user: Option<&User>, req: Request<Incoming>) -> Response<Body> {
    let method = req.method().clone();
    let uri = req.uri().clone();
    let resp = match route(state, user, req).await {
        Ok(resp) => resp,
        Err(e) => error(&e),
    };
    tracing::debug!(
        user = user.map_or("-", |u| u.name.as_str()),
        "{method} {uri} {}",
        resp.status().as_u16()
    );
    resp
}

fn is_public(path: &str) -> bool {
    ["/version", "/healthz", "/readyz", "/livez"]
        .iter()
        .any(|p| path == *p || path.strip_prefix(p).is_some_and(|r| r.starts_with('/')))
}

async fn route(
    state: &State,
    user: Option<&User>,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let path = req.uri().path().trim_end_matches('/').to_string();
    let query = Query::parse(req.uri().query());
    if path == "/version" {
        return Ok(json(200, &discovery::version()));
    }
    if is_public(&path) {
        let mut resp = Response::new(full("ok"));
        resp.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain"),
        );
        return Ok(resp);
    }
    if user.is_none() {
        return Err(ApiError::new(401, "Unauthorized", "Unauthorized"));
    }
    match path.as_str() {
        "/api" => return Ok(json(200, &discovery::api_versions(&state.address))),
        "/apis" => return Ok(json(200, &discovery::api_groups())),
        "/api/v1" => return Ok(json(200, &discovery::core_v1())),
        "/openapi/v3" => return Ok(json(200, &discovery::openapi_index())),
        "/openapi/v3/api/v1" => return Ok(json(200, &discovery::openapi_core_v1())),
        "/openapi/v2" => {
            let mut resp = Response::new(full(crate::openapi_v2::document()));
            resp.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static(crate::openapi_v2::CONTENT_TYPE),
            );
            return Ok(resp);
        }
        _ => {}
    }
    let segments: Vec<&str> = path
        .strip_prefix("/api/v1/")
        .map(|rest| rest.split('/').collect())
        .unwrap_or_default();
    let Some(target) = Target::parse(&segments) else {
        return Err(ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        ));
    };
    resource(state, req, target, query).await
}

async fn body(req: Request<Incoming>) -> Result<Bytes, ApiError> {
    Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| {
            ApiError::new(
                413,
                "RequestEntityTooLarge",
                format!("reading the request body: {e}"),
            )
        })
}

fn method_not_allowed(method: &Method) -> ApiError {
    ApiError::new(
        405,
        "MethodNotAllowed",
        format!("the server does not allow this method on the requested resource ({method})"),
    )
}

async fn resource(
    state: &State,
    req: Request<Incoming>,
    target: Target,
    query: Query,
) -> Result<Response<Body>, ApiError> {
    let rest = &state.rest;
    let method = req.method().clone();
    let as_table = table::wants_table(
        req.headers()
            .get(http::header::ACCEPT)
            .and_then(|v| v.to_str().ok()),
    );
    let content_type = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let sub = target.subresource.as_deref();
    let protobuf = content_type
        .as_deref()
        .is_some_and(|ct| ct.starts_with("application/vnd.kubernetes.protobuf"));
    if matches!(method, Method::POST | Method::PUT) && !protobuf {
        check_json_body(content_type.as_deref())?;
    }
    let Some(obj_name) = target.name.clone() else {
        return match method {
            Method::GET if query.flag("watch") => {
                watch::watch(rest, &target, &query, as_table).await
            }
            Method::GET => Ok(json(
                200,
                &rest.list_response(&target, &query, as_table).await?,
            )),
            Method::POST if target.kind.namespaced() && target.namespace.is_none() => {
                Err(method_not_allowed(&method))
            }
            Method::POST => {
                let mut bytes = body(req).await?;
                if protobuf {
                    let obj = crate::proto::decode(target.kind, &bytes)?;
                    bytes = serde_json::to_vec(&obj).map_err(ApiError::internal)?.into();
                }
                Ok(json(201, &rest.create(&target, &bytes, &query).await?))
            }
            _ => Err(method_not_allowed(&method)),
        };
    };
    match sub {
        None | Some("status") => {}
        Some("exec" | "attach" | "portforward" | "log")
            if target.kind == crate::resource::Kind::Pod =>
        {
            return crate::kubelet::handle(rest, &state.kubelets, req, &target, &obj_name, &query)
                .await;
        }
        Some(_) => {
            return Err(ApiError::new(
                404,
                "NotFound",
                "the server could not find the requested resource",
            ));
        }
    }
    match method {
        Method::GET if query.flag("watch") => watch::watch(rest, &target, &query, as_table).await,
        Method::GET => Ok(json(200, &rest.get(&target, &obj_name, as_table).await?)),
        Method::PUT => {
            let bytes = body(req).await?;
            Ok(json(
                200,
                &rest.replace(&target, &obj_name, &bytes, &query).await?,
            ))
        }
        Method::PATCH => {
            let bytes = body(req).await?;
            let (code, obj) = rest
                .patch(&target, &obj_name, content_type.as_deref(), &bytes, &query)
                .await?;
            Ok(json(code, &obj))
        }
        Method::DELETE if sub.is_none() => {
            let bytes = body(req).await?;
            Ok(json(
                200,
                &rest.delete(&target, &obj_name, &bytes, &query).await?,
            ))
        }
        _ => Err(method_not_allowed(&method)),
    }
}

/// Bodies of POST and PUT must be JSON (or YAML); anything else (protobuf) is a 415.
fn check_json_body(content_type: Option<&str>) -> Result<(), ApiError> {
    let base = content_type
        .unwrap_or("application/json")
        .split(';')
        .next()
        .unwrap_or_default()
        .trim();
    match base {
        "" | "application/json" | "application/yaml" | "*/*" => Ok(()),
        other => Err(ApiError::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml (got {other:?})"
            ),
        )),
    }
}
