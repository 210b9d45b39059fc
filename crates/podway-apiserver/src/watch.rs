//! WATCH: newline-delimited `{"type","object"}` events in a chunked response.

use std::collections::HashSet;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http::{Response, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use podway_store::{EventKind, EventStream};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::error::ApiError;
use crate::http::{Body, BoxError, Query};
use crate::object::{decode, name};
use crate::resource::{Kind, Target};
use crate::rest::Rest;
use crate::selector::Selector;
use crate::table;

/// How often a BOOKMARK is sent to clients that allow them.
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(30);

/// Starts a watch and returns the streaming response.
pub(crate) async fn watch(
    rest: &Rest,
    target: &Target,
    query: &Query,
    as_table: bool,
) -> Result<Response<Body>, ApiError> {
    let kind = target.kind;
    let mut selector_field = query.get("fieldSelector").map(str::to_string);
    if let Some(obj_name) = &target.name {
        let by_name = format!("metadata.name={obj_name}");
        selector_field = Some(match selector_field {
            Some(f) if !f.is_empty() => format!("{f},{by_name}"),
            _ => by_name,
        });
    }
    let selector = Selector::parse(kind, query.get("labelSelector"), selector_field.as_deref())?;
    let (current, list_rev) = rest.list(kind, target.ns(), &selector).await?;
    let known: HashSet<String> = current.iter().map(|o| object_key(kind, o)).collect();
    let requested = query
        .get("resourceVersion")
        .filter(|rv| !rv.is_empty() && *rv != "0");
    // sendInitialEvents (WatchList): the current state first, then a bookmark marking its end.
    let send_initial = query.flag("sendInitialEvents");
    let (initial, from) = match requested {
        _ if send_initial => (current, list_rev),
        None => (current, list_rev),
        Some(rv) => {
            let rv = rv
                .parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {rv:?}")))?;
            (Vec::new(), rv)
        }
    };
    let prefix = kind.prefix(target.ns());
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let watcher = Watcher {
        kind,
        selector,
        known,
        as_table,
        tx,
        last_revision: from,
    };
    let events = rest.store.watch(&prefix, from).await;
    let timeout = query.int("timeoutSeconds")?.filter(|t| *t > 0);
    let bookmarks = query.flag("allowWatchBookmarks") && !as_table;
    let end_marker = send_initial && bookmarks;
    tokio::spawn(watcher.run(initial, end_marker, events, timeout, bookmarks));

    let body = StreamBody::new(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, BoxError>(Frame::data(b)), rx))
    }));
    let mut resp = Response::new(body.boxed_unsync());
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}

fn object_key(kind: Kind, obj: &Value) -> String {
    kind.key(crate::object::str_at(obj, "metadata.namespace"), name(obj))
}

struct Watcher {
    kind: Kind,
    selector: Selector,
    known: HashSet<String>,
    as_table: bool,
    tx: mpsc::Sender<Bytes>,
    last_revision: u64,
}

impl Watcher {
    async fn run(
        mut self,
        initial: Vec<Value>,
        end_marker: bool,
        events: Result<EventStream, podway_store::Error>,
        timeout: Option<i64>,
        bookmarks: bool,
    ) {
        for obj in initial {
            if !self.send("ADDED", &obj).await {
                return;
            }
        }
        if end_marker {
            let mut marker = self.bookmark();
            marker["metadata"]["annotations"] = json!({"k8s.io/initial-events-end": "true"});
            if !self.send("BOOKMARK", &marker).await {
                return;
            }
        }
        let mut events = match events {
            Ok(events) => events,
            Err(e) => {
                let _ = self.send("ERROR", &ApiError::from(e).status()).await;
                return;
            }
        };
        let deadline = timeout.map(|t| tokio::time::Instant::now() + Duration::from_secs(t as u64));
        let mut bookmark = tokio::time::interval(BOOKMARK_INTERVAL);
        bookmark.tick().await;
        loop {
            let expired = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                next = events.next() => match next {
                    None => return,
                    Some(Err(e)) => {
                        let _ = self.send("ERROR", &ApiError::from(e).status()).await;
                        return;
                    }
                    Some(Ok(ev)) => {
                        if !self.event(ev).await {
                            return;
                        }
                    }
                },
                _ = bookmark.tick(), if bookmarks => {
                    if !self.send("BOOKMARK", &self.bookmark()).await {
                        return;
                    }
                }
                _ = expired => return,
                _ = self.tx.closed() => return,
            }
        }
    }

    /// A BOOKMARK object at the last revision sent.
    fn bookmark(&self) -> Value {
        json!({"kind": self.kind.kind(), "apiVersion": "v1",
               "metadata": {"resourceVersion": self.last_revision.to_string()}})
    }

    /// Translates one store event, honouring the selector like Kubernetes: an object that starts
    /// matching is ADDED, one that stops matching is DELETED.
    async fn event(&mut self, ev: podway_store::Event) -> bool {
        self.last_revision = ev.revision;
        let obj = match decode(&ev.value, ev.revision) {
            Ok(obj) => obj,
            Err(e) => {
                tracing::warn!(key = %ev.key, "undecodable object in store: {e}");
                return true;
            }
        };
        let matches = self.selector.matches(&obj);
        let was_known = self.known.contains(&ev.key);
        let kind = match (ev.kind, matches, was_known) {
            (EventKind::Deleted, _, true) => "DELETED",
            (EventKind::Deleted, true, false) => "DELETED",
            (EventKind::Deleted, false, false) => return true,
            (_, true, true) => "MODIFIED",
            (_, true, false) => "ADDED",
            (_, false, true) => "DELETED",
            (_, false, false) => return true,
        };
        if kind == "DELETED" {
            self.known.remove(&ev.key);
        } else {
            self.known.insert(ev.key.clone());
        }
        self.send(kind, &obj).await
    }

    async fn send(&self, event_type: &str, obj: &Value) -> bool {
        let object = if self.as_table && matches!(event_type, "ADDED" | "MODIFIED" | "DELETED") {
            table::table(self.kind, std::slice::from_ref(obj), None)
        } else {
            obj.clone()
        };
        let mut line =
            serde_json::to_vec(&json!({"type": event_type, "object": object})).unwrap_or_default();
        line.push(b'\n');
        self.tx.send(Bytes::from(line)).await.is_ok()
    }
}
