//! Helpers for objects held as JSON values.

use serde_json::{Map, Value};

/// Field access on a JSON object by a dotted path (`spec.nodeName`).
pub(crate) fn path<'a>(obj: &'a Value, dotted: &str) -> Option<&'a Value> {
    dotted.split('.').try_fold(obj, |v, k| v.get(k))
}

/// A string field by dotted path.
pub(crate) fn str_at<'a>(obj: &'a Value, dotted: &str) -> Option<&'a str> {
    path(obj, dotted).and_then(Value::as_str)
}

/// The object's `metadata.name` (empty when missing).
pub(crate) fn name(obj: &Value) -> &str {
    str_at(obj, "metadata.name").unwrap_or_default()
}

/// A mutable child object, created (replacing a non-object) when needed.
pub(crate) fn child<'a>(obj: &'a mut Value, key: &str) -> &'a mut Map<String, Value> {
    if !obj.is_object() {
        *obj = Value::Object(Map::new());
    }
    let map = match obj {
        Value::Object(map) => map,
        _ => unreachable!("made an object above"),
    };
    let entry = map
        .entry(key.to_string())
        .or_insert_with(|| Value::Object(Map::new()));
    if !entry.is_object() {
        *entry = Value::Object(Map::new());
    }
    match entry {
        Value::Object(m) => m,
        _ => unreachable!("made an object above"),
    }
}

/// Sets `key` in `map` unless it is present and non-null.
pub(crate) fn default(map: &mut Map<String, Value>, key: &str, value: Value) {
    match map.get(key) {
        Some(v) if !v.is_null() => {}
        _ => {
            map.insert(key.to_string(), value);
        }
    }
}

/// Sets `metadata.resourceVersion`.
pub(crate) fn set_revision(obj: &mut Value, revision: u64) {
    child(obj, "metadata").insert(
        "resourceVersion".into(),
        Value::String(revision.to_string()),
    );
}

/// Removes `metadata.resourceVersion` (it is never stored: the store's revision is the truth).
pub(crate) fn clear_revision(obj: &mut Value) {
    child(obj, "metadata").remove("resourceVersion");
}

/// The current time in Kubernetes' `metav1.Time` form (RFC 3339, seconds, `Z`).
pub(crate) fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Parses a `metav1.Time`.
pub(crate) fn parse_time(s: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&chrono::Utc))
}

/// Parses stored bytes, sets the resource version.
pub(crate) fn decode(bytes: &[u8], revision: u64) -> Result<Value, serde_json::Error> {
    let mut obj: Value = serde_json::from_slice(bytes)?;
    set_revision(&mut obj, revision);
    Ok(obj)
}

/// Serializes an object for the store, without its resource version.
pub(crate) fn encode(obj: &Value) -> Vec<u8> {
    let mut obj = obj.clone();
    clear_revision(&mut obj);
    serde_json::to_vec(&obj).unwrap_or_default()
}

/// The object's labels as string pairs.
pub(crate) fn labels(obj: &Value) -> Vec<(&str, &str)> {
    path(obj, "metadata.labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.as_str(), v)))
                .collect()
        })
        .unwrap_or_default()
}
