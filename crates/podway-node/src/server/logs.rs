//! `/containerLogs/{ns}/{pod}/{container}`: serves a container's CRI log file.
use std::{path::PathBuf, sync::Arc};

use bytes::Bytes;
use chrono::Utc;
use futures::StreamExt;
use http_body_util::{BodyExt, StreamBody};
use hyper::{Response, StatusCode, body::Frame};
use k8s_cri::v1::{ContainerState, ContainerStatusRequest};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::{
    Body, Target,
    query::{LogQuery, LogQueryError, Query},
    streaming::{cri_error, pod_uid},
    text,
};
use crate::state::Shared;

/// Where the log of `attempt` of a container lives by the agent's own layout.
fn default_log_path(shared: &Shared, t: &Target<'_>, uid: &str, attempt: u32) -> PathBuf {
    shared
        .pod_log_dir
        .join(format!("{}_{}_{}", t.namespace, t.pod, uid))
        .join(t.container.unwrap_or_default())
        .join(format!("{attempt}.log"))
}

/// Whether container `id` is running (unknown ⇒ not running).
async fn running(shared: &Shared, id: &str) -> bool {
    let status = shared
        .cri
        .rt()
        .container_status(ContainerStatusRequest {
            container_id: id.to_string(),
            verbose: false,
        })
        .await;
    matches!(status, Ok(r) if r.get_ref().status.as_ref().is_some_and(|s| s.state == ContainerState::ContainerRunning as i32))
}

/// Serves the log; see [`crate::logs::stream`] for the options.
pub(super) async fn container_logs(
    shared: &Arc<Shared>,
    t: &Target<'_>,
    query: &Query,
) -> Response<Body> {
    let lq = match LogQuery::from_query(query, Utc::now()) {
        Ok(q) => q,
        Err(LogQueryError::Malformed(msg)) => return text(StatusCode::BAD_REQUEST, msg),
        Err(LogQueryError::Invalid) => {
            let mut resp = text(
                StatusCode::UNPROCESSABLE_ENTITY,
                r#"{"message": "Invalid request."}"#,
            );
            resp.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            return resp;
        }
    };
    let uid = match pod_uid(shared, t) {
        Ok(u) => u,
        Err(resp) => return *resp,
    };
    let name = t.container.unwrap_or_default();
    let containers = match shared.containers(&uid, name).await {
        Ok(c) => c,
        Err(e) => return cri_error(&e),
    };
    let Some(newest) = containers.first() else {
        return text(
            StatusCode::NOT_FOUND,
            format!("container not found ({name:?})"),
        );
    };
    let attempt = newest.metadata.as_ref().map_or(0, |m| m.attempt);
    let (id, attempt) = if lq.previous {
        let Some(previous) = attempt.checked_sub(1) else {
            return text(
                StatusCode::BAD_REQUEST,
                format!(
                    "previous terminated container {name:?} in pod {:?} not found",
                    t.pod
                ),
            );
        };
        let id = containers
            .iter()
            .find(|c| c.metadata.as_ref().is_some_and(|m| m.attempt == previous))
            .map(|c| c.id.clone());
        (id, previous)
    } else {
        (Some(newest.id.clone()), attempt)
    };
    let mut path = default_log_path(shared, t, &uid, attempt);
    if let Some(id) = &id {
        let status = shared
            .cri
            .rt()
            .container_status(ContainerStatusRequest {
                container_id: id.clone(),
                verbose: false,
            })
            .await;
        if let Ok(s) = status
            && let Some(p) = s.into_inner().status.map(|s| s.log_path)
            && !p.is_empty()
        {
            path = PathBuf::from(p);
        }
    }
    if tokio::fs::metadata(&path).await.is_err() {
        tracing::debug!(path = %path.display(), "no log file yet");
        return text(StatusCode::OK, Bytes::new());
    }
    let mut options = lq.options;
    options.follow &= !lq.previous && id.is_some();
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    let shared = shared.clone();
    tokio::spawn(async move {
        let id = id.unwrap_or_default();
        let result = crate::logs::stream(&path, options, tx, || running(&shared, &id)).await;
        if let Err(e) = result {
            tracing::warn!(path = %path.display(), error = %e, "reading container log failed");
        }
    });
    let body = BodyExt::boxed(StreamBody::new(
        ReceiverStream::new(rx).map(|b| Ok(Frame::data(b))),
    ));
    let mut resp = Response::new(body);
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain"),
    );
    resp
}
