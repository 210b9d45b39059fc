//! The streaming subresources (`exec`, `attach`, `portforward`, `log`): validate, find the node,
//! dial its kubelet over TLS as the API server, and proxy.

use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode, Uri, header};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::error::ApiError;
use crate::http::{Body, BoxError, Query, full};
use crate::object::{name, path, str_at};
use crate::resource::{Kind, Target};
use crate::rest::Rest;

/// Dials kubelets.
#[derive(Clone)]
pub(crate) struct Kubelets {
    connector: TlsConnector,
    default_port: u16,
}

/// Where a node's kubelet listens.
struct Endpoint {
    host: String,
    port: u16,
}

impl Endpoint {
    fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// How long connecting to a kubelet may take.
const DIAL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The address types tried, in order, to reach a node.
const ADDRESS_TYPES: [&str; 5] = [
    "InternalIP",
    "Hostname",
    "InternalDNS",
    "ExternalIP",
    "ExternalDNS",
];

impl Kubelets {
    /// A dialer with the given TLS client configuration.
    pub fn new(config: Arc<rustls::ClientConfig>, default_port: u16) -> Self {
        Kubelets {
            connector: TlsConnector::from(config),
            default_port,
        }
    }

    async fn endpoint(&self, rest: &Rest, node_name: &str) -> Result<Endpoint, ApiError> {
        let (node, _) = rest.read(Kind::Node, None, node_name).await?;
        let addresses = path(&node, "status.addresses")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let host = ADDRESS_TYPES
            .iter()
            .find_map(|ty| {
                addresses
                    .iter()
                    .find(|a| a.get("type").and_then(Value::as_str) == Some(ty))
                    .and_then(|a| a.get("address").and_then(Value::as_str))
                    .filter(|a| !a.is_empty())
            })
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "node {node_name} has no address to reach its kubelet"
                ))
            })?;
        let port = path(&node, "status.daemonEndpoints.kubeletEndpoint.Port")
            .and_then(Value::as_u64)
            .and_then(|p| u16::try_from(p).ok())
            .filter(|p| *p > 0)
            .unwrap_or(self.default_port);
        Ok(Endpoint {
            host: host.to_string(),
            port,
        })
    }

    async fn dial(&self, node_name: &str, ep: &Endpoint) -> Result<TlsStream<TcpStream>, ApiError> {
        let unreachable = |what: String| {
            ApiError::new(
                502,
                "ServiceUnavailable",
                format!(
                    "error dialing kubelet of node {node_name} at {}: {what}",
                    ep.authority()
                ),
            )
        };
        let connect = TcpStream::connect((ep.host.as_str(), ep.port));
        let tcp = tokio::time::timeout(DIAL_TIMEOUT, connect)
            .await
            .map_err(|_| unreachable("timed out".into()))?
            .map_err(|e| unreachable(e.to_string()))?;
        // Proxied streams carry small frames: no Nagle delay.
        let _ = tcp.set_nodelay(true);
        let server_name =
            ServerName::try_from(ep.host.clone()).map_err(|e| unreachable(e.to_string()))?;
        self.connector
            .connect(server_name, tcp)
            .await
            .map_err(|e| unreachable(e.to_string()))
    }
}

/// Picks the container like the Kubernetes pod strategy does.
fn container<'a>(pod: &'a Value, requested: Option<&'a str>) -> Result<&'a str, ApiError> {
    let pod_name = name(pod);
    let names = |list: &str| -> Vec<&'a str> {
        path(pod, &format!("spec.{list}"))
            .and_then(Value::as_array)
            .map(|cs| {
                cs.iter()
                    .filter_map(|c| c.get("name").and_then(Value::as_str))
                    .collect()
            })
            .unwrap_or_default()
    };
    let containers = names("containers");
    match requested.filter(|c| !c.is_empty()) {
        Some(c) => {
            let all = [
                names("initContainers"),
                containers,
                names("ephemeralContainers"),
            ]
            .concat();
            if all.contains(&c) {
                Ok(c)
            } else {
                Err(ApiError::bad_request(format!(
                    "container {c} is not valid for pod {pod_name}"
                )))
            }
        }
        None => match containers.as_slice() {
            [only] => Ok(only),
            [] => Err(ApiError::bad_request(format!(
                "pod {pod_name} does not have a container"
            ))),
            many => Err(ApiError::bad_request(format!(
                "a container name must be specified for pod {pod_name}, choose one of: [{}]",
                many.join(" ")
            ))),
        },
    }
}

fn is_upgrade(req: &Request<Incoming>) -> bool {
    let connection_upgrade = req
        .headers()
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    connection_upgrade && req.headers().contains_key(header::UPGRADE)
}

/// Handles `exec`, `attach`, `portforward` and `log` of one pod.
pub(crate) async fn handle(
    rest: &Rest,
    kubelets: &Kubelets,
    req: Request<Incoming>,
    target: &Target,
    pod_name: &str,
    query: &Query,
) -> Result<Response<Body>, ApiError> {
    let sub = target.subresource.as_deref().unwrap_or_default();
    let ns = target.ns().unwrap_or("default");
    if sub == "log" && req.method() != http::Method::GET {
        return Err(ApiError::new(
            405,
            "MethodNotAllowed",
            format!("{} is not supported on pods/log", req.method()),
        ));
    }
    let (pod, _) = rest.read(Kind::Pod, Some(ns), pod_name).await?;
    let mut params: Vec<(&'static str, String)> = Vec::new();
    let path = match sub {
        "exec" | "attach" => {
            let c = container(&pod, query.get("container"))?;
            let flags = [
                ("stdin", "input"),
                ("stdout", "output"),
                ("stderr", "error"),
            ];
            if !flags.iter().any(|(q, _)| query.flag(q)) {
                return Err(ApiError::bad_request(
                    "you must specify at least 1 of stdin, stdout, stderr",
                ));
            }
            if sub == "exec" {
                let command = query.all("command");
                if command.is_empty() {
                    return Err(ApiError::bad_request(
                        "you must specify at least one command for the container",
                    ));
                }
                for arg in command {
                    params.push(("command", arg.to_string()));
                }
            }
            for (q, k) in flags.into_iter().chain([("tty", "tty")]) {
                if query.flag(q) {
                    params.push((k, "1".into()));
                }
            }
            format!("/{sub}/{ns}/{pod_name}/{c}")
        }
        "portforward" => {
            let ports = query.all("ports");
            if !ports.is_empty() {
                params.push(("port", ports.join(",")));
            }
            format!("/portForward/{ns}/{pod_name}")
        }
        _ => {
            let c = container(&pod, query.get("container"))?;
            log_params(query, &mut params)?;
            format!("/containerLogs/{ns}/{pod_name}/{c}")
        }
    };
    let node_name = str_at(&pod, "spec.nodeName").unwrap_or_default();
    if node_name.is_empty() {
        if sub == "log" {
            return Ok(text_response(full(Bytes::new())));
        }
        return Err(ApiError::bad_request(format!(
            "pod {pod_name} does not have a host assigned"
        )));
    }
    if sub != "log" && !is_upgrade(&req) {
        return Err(ApiError::bad_request("Upgrade request required"));
    }
    let ep = kubelets.endpoint(rest, node_name).await?;
    let query_string = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    let path_and_query = if query_string.is_empty() {
        path
    } else {
        format!("{path}?{query_string}")
    };
    let uri: Uri = format!("https://{}{path_and_query}", ep.authority())
        .parse()
        .map_err(|e| ApiError::internal(format!("kubelet URL for pod {ns}/{pod_name}: {e}")))?;
    let tls = kubelets.dial(node_name, &ep).await?;
    tracing::debug!(%uri, "proxying {sub} of pod {ns}/{pod_name}");
    if sub == "log" {
        return logs(tls, uri, ns, pod_name).await;
    }
    let resp = podway_stream::proxy::upgrade_proxy(req, tls, uri).await;
    Ok(resp.map(|b| b.map_err(|never| match never {}).boxed_unsync()))
}

fn log_params(query: &Query, params: &mut Vec<(&'static str, String)>) -> Result<(), ApiError> {
    for flag in ["follow", "previous", "timestamps"] {
        if query.flag(flag) {
            params.push((flag, "true".into()));
        }
    }
    let since_seconds = query.int("sinceSeconds")?;
    let since_time = query.get("sinceTime").filter(|s| !s.is_empty());
    if since_seconds.is_some() && since_time.is_some() {
        return Err(ApiError::bad_request(
            "at most one of sinceTime or sinceSeconds may be specified",
        ));
    }
    for (param, min) in [("sinceSeconds", 1), ("tailLines", 0), ("limitBytes", 1)] {
        if let Some(v) = query.int(param)? {
            if v < min {
                return Err(ApiError::bad_request(format!(
                    "{param} must be at least {min}, got {v}"
                )));
            }
            params.push((param, v.to_string()));
        }
    }
    if let Some(t) = since_time {
        if crate::object::parse_time(t).is_none() {
            return Err(ApiError::bad_request(format!(
                "sinceTime {t:?} is not an RFC 3339 time"
            )));
        }
        params.push(("sinceTime", t.to_string()));
    }
    if let Some(stream) = query.get("stream").filter(|s| !s.is_empty()) {
        params.push(("stream", stream.to_string()));
    }
    Ok(())
}

fn text_response(body: Body) -> Response<Body> {
    let mut resp = Response::new(body);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain"),
    );
    resp
}

/// GETs the kubelet's container log and streams it back.
async fn logs(
    tls: TlsStream<TcpStream>,
    uri: Uri,
    ns: &str,
    pod_name: &str,
) -> Result<Response<Body>, ApiError> {
    let failed = |e: String| {
        ApiError::internal(format!(
            "reading logs of pod {ns}/{pod_name} from its kubelet: {e}"
        ))
    };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| failed(e.to_string()))?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!("kubelet log connection ended: {e}");
        }
    });
    let authority = uri.authority().map(|a| a.to_string()).unwrap_or_default();
    let path = uri
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let req = Request::get(path)
        .header(header::HOST, authority)
        .body(Empty::<Bytes>::new())
        .map_err(|e| failed(e.to_string()))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| failed(e.to_string()))?;
    let status = resp.status();
    if status.is_success() {
        let body = resp
            .into_body()
            .map_err(|e| Box::new(e) as BoxError)
            .boxed_unsync();
        return Ok(text_response(body));
    }
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes).trim().to_string();
    let message = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_string))
        .unwrap_or(text);
    let reason = match status {
        StatusCode::NOT_FOUND => "NotFound",
        StatusCode::BAD_REQUEST => "BadRequest",
        StatusCode::FORBIDDEN => "Forbidden",
        StatusCode::UNAUTHORIZED => "Unauthorized",
        _ => "InternalError",
    };
    Err(ApiError::new(status.as_u16(), reason, message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn container_rules() {
        let pod = json!({"metadata": {"name": "web"}, "spec": {
            "containers": [{"name": "main"}, {"name": "side"}], "initContainers": [{"name": "init"}]}});
        assert_eq!(container(&pod, Some("init")).ok(), Some("init"));
        assert_eq!(
            container(&pod, None).err().map(|e| e.message),
            Some(
                "a container name must be specified for pod web, choose one of: [main side]".into()
            )
        );
        assert_eq!(
            container(&pod, Some("db")).err().map(|e| e.message),
            Some("container db is not valid for pod web".into())
        );
        let single = json!({"metadata": {"name": "one"}, "spec": {"containers": [{"name": "c"}]}});
        assert_eq!(container(&single, None).ok(), Some("c"));
    }
}
