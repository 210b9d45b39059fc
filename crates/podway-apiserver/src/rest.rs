//! core/v1 REST verbs on stored objects: get, list, create, update, patch, delete.

use std::sync::Arc;

use podway_store::Store;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::http::Query;
use crate::object::{self, child, decode, encode, name, now, str_at};
use crate::patch::PatchType;
use crate::resource::{Kind, Target};
use crate::selector::Selector;
use crate::table;
use crate::validate::{apply_defaults, check_types, validate, validate_pod_update};

/// Namespaces that exist from the start and may not be deleted.
pub(crate) const SYSTEM_NAMESPACES: [&str; 2] = ["default", "kube-system"];

/// The REST layer over one store.
#[derive(Clone)]
pub(crate) struct Rest {
    /// The storage.
    pub store: Arc<dyn Store>,
}

/// How many times a PATCH is retried when the object changes underneath it.
const PATCH_RETRIES: usize = 8;

impl Rest {
    /// Reads one object with its revision; 404 when it does not exist.
    pub async fn read(
        &self,
        kind: Kind,
        ns: Option<&str>,
        obj_name: &str,
    ) -> Result<(Value, u64), ApiError> {
        let kv = self
            .store
            .get(&kind.key(ns, obj_name))
            .await?
            .ok_or_else(|| ApiError::not_found(kind.plural(), obj_name))?;
        let obj = decode(&kv.value, kv.revision).map_err(ApiError::internal)?;
        Ok((obj, kv.revision))
    }

    /// Lists the objects of `kind` (in `ns`, or everywhere) matching `selector`, with the revision.
    pub async fn list(
        &self,
        kind: Kind,
        ns: Option<&str>,
        selector: &Selector,
    ) -> Result<(Vec<Value>, u64), ApiError> {
        let listed = self.store.list(&kind.prefix(ns)).await?;
        let mut items = Vec::with_capacity(listed.items.len());
        for kv in listed.items {
            let obj = decode(&kv.value, kv.revision).map_err(ApiError::internal)?;
            if selector.matches(&obj) {
                items.push(obj);
            }
        }
        Ok((items, listed.revision))
    }

    /// GET of one object (a Table when asked).
    pub async fn get(
        &self,
        target: &Target,
        obj_name: &str,
        table: bool,
    ) -> Result<Value, ApiError> {
        let (obj, rev) = self.read(target.kind, target.ns(), obj_name).await?;
        Ok(if table {
            table::table(target.kind, &[obj], Some(rev))
        } else {
            obj
        })
    }

    /// GET of a collection.
    pub async fn list_response(
        &self,
        target: &Target,
        query: &Query,
        table: bool,
    ) -> Result<Value, ApiError> {
        let selector = Selector::parse(
            target.kind,
            query.get("labelSelector"),
            query.get("fieldSelector"),
        )?;
        let (items, rev) = self.list(target.kind, target.ns(), &selector).await?;
        Ok(if table {
            table::table(target.kind, &items, Some(rev))
        } else {
            json!({"kind": format!("{}List", target.kind.kind()), "apiVersion": "v1",
                   "metadata": {"resourceVersion": rev.to_string()}, "items": items})
        })
    }

    /// POST: creates an object from the request body.
    pub async fn create(
        &self,
        target: &Target,
        body: &[u8],
        query: &Query,
    ) -> Result<Value, ApiError> {
        let kind = target.kind;
        let mut obj = parse_object(kind, body)?;
        let meta = child(&mut obj, "metadata");
        if kind.namespaced() {
            let url_ns = target.ns().unwrap_or("default");
            match meta.get("namespace").and_then(Value::as_str) {
                Some(ns) if !ns.is_empty() && ns != url_ns => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
                _ => {
                    meta.insert("namespace".into(), json!(url_ns));
                }
            }
        } else {
            meta.remove("namespace");
        }
        let has_name = meta
            .get("name")
            .and_then(Value::as_str)
            .is_some_and(|n| !n.is_empty());
        if let Some(prefix) = meta
            .get("generateName")
            .and_then(Value::as_str)
            .filter(|_| !has_name)
        {
            let generated = format!("{prefix}{}", random_suffix());
            meta.insert("name".into(), json!(generated));
        }
        meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
        meta.insert("creationTimestamp".into(), json!(now()));
        for field in [
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
        ] {
            meta.remove(field);
        }
        match kind {
            Kind::Pod => {
                if let Some(o) = obj.as_object_mut() {
                    o.insert("status".into(), json!({"phase": "Pending"}));
                }
            }
            Kind::Namespace => {
                if let Some(o) = obj.as_object_mut() {
                    o.insert("status".into(), json!({"phase": "Active"}));
                }
            }
            Kind::Node => {}
        }
        apply_defaults(kind, &mut obj);
        check_types(kind, &obj)?;
        validate(kind, &obj)?;
        let obj_name = name(&obj).to_string();
        let ns = str_at(&obj, "metadata.namespace").map(str::to_string);
        if let Some(ns) = ns.as_deref().filter(|_| kind.namespaced()) {
            self.check_namespace_open(ns).await?;
        }
        if dry_run(query) {
            return Ok(obj);
        }
        let key = kind.key(ns.as_deref(), &obj_name);
        let rev = self
            .store
            .create(&key, encode(&obj))
            .await
            .map_err(|e| match e {
                podway_store::Error::AlreadyExists { .. } => {
                    ApiError::already_exists(kind.plural(), &obj_name)
                }
                other => other.into(),
            })?;
        object::set_revision(&mut obj, rev);
        tracing::debug!(%key, rev, "created");
        Ok(obj)
    }

    /// Fails unless namespace `ns` exists and is not being deleted.
    async fn check_namespace_open(&self, ns: &str) -> Result<(), ApiError> {
        let (namespace, _) = self.read(Kind::Namespace, None, ns).await?;
        if object::path(&namespace, "metadata.deletionTimestamp").is_some_and(|v| !v.is_null()) {
            return Err(ApiError::new(
                403,
                "Forbidden",
                format!(
                    "unable to create new content in namespace {ns} because it is being terminated"
                ),
            ));
        }
        Ok(())
    }

    /// PUT: replaces an object (or only its status for the `status` subresource).
    pub async fn replace(
        &self,
        target: &Target,
        obj_name: &str,
        body: &[u8],
        query: &Query,
    ) -> Result<Value, ApiError> {
        let new = parse_object(target.kind, body)?;
        if !name(&new).is_empty() && name(&new) != obj_name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({}) does not match the name on the URL ({obj_name})",
                name(&new)
            )));
        }
        let precondition =
            match str_at(&new, "metadata.resourceVersion").filter(|s| !s.is_empty()) {
                None => None,
                Some(rv) => Some(rv.parse::<u64>().map_err(|_| {
                    ApiError::bad_request(format!("invalid resourceVersion {rv:?}"))
                })?),
            };
        let (old, rev) = self.read(target.kind, target.ns(), obj_name).await?;
        if precondition.is_some_and(|p| p != rev) {
            return Err(ApiError::conflict(target.kind.plural(), obj_name));
        }
        self.write_update(target, obj_name, old, new, rev, dry_run(query))
            .await
    }

    /// PATCH: applies a patch to the current object, retrying when it changes concurrently.
    pub async fn patch(
        &self,
        target: &Target,
        obj_name: &str,
        content_type: Option<&str>,
        body: &[u8],
        query: &Query,
    ) -> Result<(u16, Value), ApiError> {
        let patch_type = PatchType::from_content_type(content_type)?;
        let patch = patch_type.parse(body)?;
        let user_rv = str_at(&patch, "metadata.resourceVersion")
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        for _ in 0..PATCH_RETRIES {
            let (old, rev) = match self.read(target.kind, target.ns(), obj_name).await {
                Ok(found) => found,
                Err(e)
                    if e.code == 404
                        && patch_type == PatchType::Apply
                        && target.subresource.is_none() =>
                {
                    let mut body = patch.clone();
                    child(&mut body, "metadata").insert("name".into(), json!(obj_name));
                    let bytes = serde_json::to_vec(&body).map_err(ApiError::internal)?;
                    return Ok((201, self.create(target, &bytes, query).await?));
                }
                Err(e) => return Err(e),
            };
            if user_rv.as_deref().is_some_and(|u| u != rev.to_string()) {
                return Err(ApiError::conflict(target.kind.plural(), obj_name));
            }
            let mut new = old.clone();
            patch_type.apply(&mut new, &patch)?;
            match self
                .write_update(target, obj_name, old, new, rev, dry_run(query))
                .await
            {
                Err(e) if e.reason == "Conflict" && user_rv.is_none() => continue,
                other => return other.map(|v| (200, v)),
            }
        }
        Err(ApiError::conflict(target.kind.plural(), obj_name))
    }

    /// Builds the updated object from `old` and `new` per the update rules, validates and stores it
    /// with `rev` as the precondition (or, for a dry run, only returns it).
    async fn write_update(
        &self,
        target: &Target,
        obj_name: &str,
        old: Value,
        new: Value,
        rev: u64,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        let kind = target.kind;
        let status_only = target.subresource.as_deref() == Some("status");
        let mut result = if status_only {
            let mut r = old.clone();
            if let Some(o) = r.as_object_mut() {
                match new.get("status") {
                    Some(s) => o.insert("status".into(), s.clone()),
                    None => o.remove("status"),
                };
            }
            r
        } else {
            let mut r = new;
            if let (Some(o), Some(status)) = (r.as_object_mut(), old.get("status")) {
                o.insert("status".into(), status.clone());
            }
            r
        };
        // Identity and lifecycle fields always come from the stored object.
        let old_meta = old.get("metadata").cloned().unwrap_or_else(|| json!({}));
        let meta = child(&mut result, "metadata");
        for field in [
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
        ] {
            match old_meta.get(field) {
                Some(v) => meta.insert(field.into(), v.clone()),
                None => meta.remove(field),
            };
        }
        if let Some(o) = result.as_object_mut() {
            o.insert("kind".into(), json!(kind.kind()));
            o.insert("apiVersion".into(), json!("v1"));
        }
        apply_defaults(kind, &mut result);
        check_types(kind, &result)?;
        validate(kind, &result)?;
        if kind == Kind::Pod && !status_only {
            validate_pod_update(&old, &result)?;
        }
        if dry_run {
            return Ok(result);
        }
        let key = kind.key(target.ns(), obj_name);
        let new_rev = self
            .store
            .update(&key, encode(&result), Some(rev))
            .await
            .map_err(|e| match e {
                podway_store::Error::Conflict { .. } => ApiError::conflict(kind.plural(), obj_name),
                podway_store::Error::NotFound { .. } => {
                    ApiError::not_found(kind.plural(), obj_name)
                }
                other => other.into(),
            })?;
        object::set_revision(&mut result, new_rev);
        Ok(result)
    }

    /// DELETE: removes an object, or for a scheduled pod with a grace period marks it for deletion.
    pub async fn delete(
        &self,
        target: &Target,
        obj_name: &str,
        body: &[u8],
        query: &Query,
    ) -> Result<Value, ApiError> {
        let kind = target.kind;
        let options: Value = if body.iter().all(u8::is_ascii_whitespace) {
            json!({})
        } else {
            serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("invalid DeleteOptions: {e}")))?
        };
        let grace_option = match options.get("gracePeriodSeconds").and_then(Value::as_i64) {
            Some(g) => Some(g),
            None => query.int("gracePeriodSeconds")?,
        };
        if kind == Kind::Namespace && SYSTEM_NAMESPACES.contains(&obj_name) {
            return Err(ApiError::new(
                403,
                "Forbidden",
                format!(
                    "namespaces \"{obj_name}\" is forbidden: this namespace may not be deleted"
                ),
            ));
        }
        for _ in 0..PATCH_RETRIES {
            let (mut obj, rev) = self.read(kind, target.ns(), obj_name).await?;
            check_preconditions(kind, obj_name, &obj, rev, &options)?;
            let dry = dry_run(query)
                || options
                    .get("dryRun")
                    .and_then(Value::as_array)
                    .is_some_and(|d| !d.is_empty());
            if dry {
                return Ok(obj);
            }
            let graceful = match kind {
                Kind::Pod => self.pod_grace(&obj, grace_option),
                Kind::Namespace => self.namespace_has_pods(obj_name).await?.then_some(0),
                Kind::Node => None,
            };
            let key = kind.key(target.ns(), obj_name);
            let Some(grace) = graceful else {
                let deleted = self.store.delete(&key, Some(rev)).await;
                match deleted {
                    Ok(kv) => {
                        object::set_revision(&mut obj, kv.revision);
                        return Ok(obj);
                    }
                    Err(podway_store::Error::Conflict { .. }) => continue,
                    Err(podway_store::Error::NotFound { .. }) => {
                        return Err(ApiError::not_found(kind.plural(), obj_name));
                    }
                    Err(e) => return Err(e.into()),
                }
            };
            let existing =
                object::path(&obj, "metadata.deletionGracePeriodSeconds").and_then(Value::as_i64);
            if existing.is_some_and(|g| g <= grace) {
                return Ok(obj);
            }
            let deadline = chrono::Utc::now() + chrono::Duration::seconds(grace);
            let meta = child(&mut obj, "metadata");
            meta.insert(
                "deletionTimestamp".into(),
                json!(deadline.format("%Y-%m-%dT%H:%M:%SZ").to_string()),
            );
            meta.insert("deletionGracePeriodSeconds".into(), json!(grace));
            if kind == Kind::Namespace {
                child(&mut obj, "status").insert("phase".into(), json!("Terminating"));
            }
            match self.store.update(&key, encode(&obj), Some(rev)).await {
                Ok(new_rev) => {
                    object::set_revision(&mut obj, new_rev);
                    if kind == Kind::Namespace {
                        self.delete_namespace_pods(obj_name).await?;
                    }
                    return Ok(obj);
                }
                Err(podway_store::Error::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(ApiError::conflict(kind.plural(), obj_name))
    }

    /// The grace period of a pod deletion, or `None` when it is removed at once.
    fn pod_grace(&self, pod: &Value, requested: Option<i64>) -> Option<i64> {
        let scheduled = str_at(pod, "spec.nodeName").is_some_and(|n| !n.is_empty());
        let finished = matches!(str_at(pod, "status.phase"), Some("Succeeded" | "Failed"));
        if !scheduled || finished {
            return None;
        }
        let grace = requested
            .or_else(|| {
                object::path(pod, "spec.terminationGracePeriodSeconds").and_then(Value::as_i64)
            })
            .unwrap_or(30);
        // Kubernetes turns a negative period into 1 s and treats 0 as "delete now".
        match grace {
            0 => None,
            g if g < 0 => Some(1),
            g => Some(g),
        }
    }

    async fn namespace_has_pods(&self, ns: &str) -> Result<bool, ApiError> {
        let listed = self.store.list(&Kind::Pod.prefix(Some(ns))).await?;
        Ok(!listed.items.is_empty())
    }

    /// Deletes every pod of a terminating namespace (gracefully where that applies).
    async fn delete_namespace_pods(&self, ns: &str) -> Result<(), ApiError> {
        let (pods, _) = self.list(Kind::Pod, Some(ns), &Selector::default()).await?;
        let target = Target {
            kind: Kind::Pod,
            namespace: Some(ns.to_string()),
            name: None,
            subresource: None,
        };
        for pod in pods {
            match Box::pin(self.delete(&target, name(&pod), b"", &Query::default())).await {
                Ok(_) => {}
                Err(e) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Creates the system namespaces if they are missing.
    pub async fn ensure_system_namespaces(&self) -> Result<(), ApiError> {
        let target = Target {
            kind: Kind::Namespace,
            namespace: None,
            name: None,
            subresource: None,
        };
        for ns in SYSTEM_NAMESPACES {
            if self
                .store
                .get(&Kind::Namespace.key(None, ns))
                .await?
                .is_none()
            {
                let body =
                    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
                let bytes = serde_json::to_vec(&body).map_err(ApiError::internal)?;
                self.create(&target, &bytes, &Query::default()).await?;
            }
        }
        Ok(())
    }
}

fn check_preconditions(
    kind: Kind,
    obj_name: &str,
    obj: &Value,
    rev: u64,
    options: &Value,
) -> Result<(), ApiError> {
    let pre = options.get("preconditions");
    if let Some(uid) = pre.and_then(|p| p.get("uid")).and_then(Value::as_str) {
        let actual = str_at(obj, "metadata.uid").unwrap_or_default();
        if uid != actual {
            return Err(ApiError::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} \"{obj_name}\": Precondition failed: UID in precondition: {uid}, UID in object meta: {actual}",
                    kind.plural()
                ),
            ));
        }
    }
    if let Some(rv) = pre
        .and_then(|p| p.get("resourceVersion"))
        .and_then(Value::as_str)
        .filter(|rv| *rv != rev.to_string())
    {
        return Err(ApiError::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{obj_name}\": Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {rev}",
                kind.plural()
            ),
        ));
    }
    Ok(())
}

/// Whether the request asks for a dry run (`dryRun=All`): validate and answer, store nothing.
fn dry_run(query: &Query) -> bool {
    query.get("dryRun").is_some_and(|d| !d.is_empty())
}

/// Parses a request body as an object of `kind` (kind and apiVersion checked when present).
fn parse_object(kind: Kind, body: &[u8]) -> Result<Value, ApiError> {
    let mut obj: Value = serde_json::from_slice(body)
        .or_else(|_| serde_yaml::from_slice(body))
        .map_err(|e: serde_yaml::Error| {
            ApiError::bad_request(format!(
                "{} in version \"v1\" cannot be handled as a {}: {e}",
                kind.kind(),
                kind.kind()
            ))
        })?;
    let Some(map) = obj.as_object_mut() else {
        return Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ));
    };
    match map.get("kind").and_then(Value::as_str) {
        Some(k) if k != kind.kind() => {
            return Err(ApiError::bad_request(format!(
                "the body of the request has kind {k:?}, expected {:?}",
                kind.kind()
            )));
        }
        _ => {}
    }
    match map.get("apiVersion").and_then(Value::as_str) {
        Some(v) if v != "v1" => {
            return Err(ApiError::bad_request(format!(
                "the body of the request has apiVersion {v:?}, expected \"v1\""
            )));
        }
        _ => {}
    }
    map.insert("kind".into(), json!(kind.kind()));
    map.insert("apiVersion".into(), json!("v1"));
    Ok(obj)
}

/// Five characters like Kubernetes' generateName suffix (no vowels, no ambiguous digits).
fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    uuid::Uuid::new_v4()
        .as_bytes()
        .iter()
        .take(5)
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect()
}
