//! PATCH bodies: JSON merge patch (RFC 7386) and strategic merge patch (lists with a merge key
//! are merged element by element; `$patch` and `$setElementOrder` directives are understood).

use serde_json::{Map, Value};

use crate::error::ApiError;

/// The patch formats the server accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PatchType {
    /// `application/merge-patch+json`.
    Merge,
    /// `application/strategic-merge-patch+json`.
    Strategic,
    /// `application/apply-patch+yaml` (server-side apply, treated as a strategic merge).
    Apply,
    /// `application/json-patch+json` (RFC 6902).
    Json,
}

impl PatchType {
    /// The patch type of a `Content-Type`; a 415 for anything else.
    pub fn from_content_type(ct: Option<&str>) -> Result<Self, ApiError> {
        let base = ct
            .unwrap_or_default()
            .split(';')
            .next()
            .unwrap_or_default()
            .trim();
        match base {
            "application/merge-patch+json" => Ok(PatchType::Merge),
            "application/strategic-merge-patch+json" => Ok(PatchType::Strategic),
            "application/apply-patch+yaml" => Ok(PatchType::Apply),
            "application/json-patch+json" => Ok(PatchType::Json),
            other => Err(ApiError::new(
                415,
                "UnsupportedMediaType",
                format!(
                    "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json, application/apply-patch+yaml (got {other:?})"
                ),
            )),
        }
    }

    /// Parses the patch body.
    pub fn parse(self, body: &[u8]) -> Result<Value, ApiError> {
        let parsed = match self {
            PatchType::Apply => serde_yaml::from_slice::<Value>(body).map_err(|e| e.to_string()),
            _ => serde_json::from_slice::<Value>(body).map_err(|e| e.to_string()),
        };
        match parsed {
            Ok(v @ Value::Array(_)) if self == PatchType::Json => Ok(v),
            Ok(v @ Value::Object(_)) if self != PatchType::Json => Ok(v),
            Ok(_) if self == PatchType::Json => Err(ApiError::bad_request(
                "a JSON patch must be a list of operations",
            )),
            Ok(_) => Err(ApiError::bad_request("the patch must be a JSON object")),
            Err(e) => Err(ApiError::bad_request(format!("error decoding patch: {e}"))),
        }
    }

    /// Applies `patch` to `target`.
    pub fn apply(self, target: &mut Value, patch: &Value) -> Result<(), ApiError> {
        match self {
            PatchType::Merge => merge_patch(target, patch),
            PatchType::Strategic | PatchType::Apply => strategic_merge(target, patch, ""),
            PatchType::Json => return json_patch(target, patch),
        }
        Ok(())
    }
}

/// RFC 7386 JSON merge patch.
pub(crate) fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(t) = target else { return };
    for (k, v) in patch {
        if v.is_null() {
            t.remove(k);
        } else {
            merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

/// Splits a JSON pointer (RFC 6901) into unescaped tokens.
fn pointer_tokens(pointer: &str) -> Result<Vec<String>, ApiError> {
    if pointer.is_empty() {
        return Ok(Vec::new());
    }
    let rest = pointer
        .strip_prefix('/')
        .ok_or_else(|| ApiError::bad_request(format!("invalid JSON pointer {pointer:?}")))?;
    Ok(rest
        .split('/')
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect())
}

/// Removes and returns the value at `pointer`.
fn take(target: &mut Value, pointer: &str) -> Result<Value, ApiError> {
    let mut tokens = pointer_tokens(pointer)?;
    let missing = || {
        ApiError::new(
            422,
            "Invalid",
            format!("the JSON patch path {pointer:?} does not exist"),
        )
    };
    let last = tokens.pop().ok_or_else(missing)?;
    let parent = target
        .pointer_mut(&parent_pointer(&tokens))
        .ok_or_else(missing)?;
    match parent {
        Value::Object(map) => map.remove(&last).ok_or_else(missing),
        Value::Array(list) => {
            let i: usize = last.parse().map_err(|_| missing())?;
            (i < list.len()).then(|| list.remove(i)).ok_or_else(missing)
        }
        _ => Err(missing()),
    }
}

fn parent_pointer(tokens: &[String]) -> String {
    tokens
        .iter()
        .map(|t| format!("/{}", t.replace('~', "~0").replace('/', "~1")))
        .collect()
}

/// Inserts `value` at `pointer` (`-` appends to a list; an existing object member is replaced).
fn put(target: &mut Value, pointer: &str, value: Value, replace: bool) -> Result<(), ApiError> {
    let mut tokens = pointer_tokens(pointer)?;
    let missing = || {
        ApiError::new(
            422,
            "Invalid",
            format!("the JSON patch path {pointer:?} does not exist"),
        )
    };
    let Some(last) = tokens.pop() else {
        *target = value;
        return Ok(());
    };
    let parent = target
        .pointer_mut(&parent_pointer(&tokens))
        .ok_or_else(missing)?;
    match parent {
        Value::Object(map) => {
            if replace && !map.contains_key(&last) {
                return Err(missing());
            }
            map.insert(last, value);
        }
        Value::Array(list) if last == "-" && !replace => list.push(value),
        Value::Array(list) => {
            let i: usize = last.parse().map_err(|_| missing())?;
            if replace {
                *list.get_mut(i).ok_or_else(missing)? = value;
            } else if i <= list.len() {
                list.insert(i, value);
            } else {
                return Err(missing());
            }
        }
        _ => return Err(missing()),
    }
    Ok(())
}

/// RFC 6902 JSON patch.
fn json_patch(target: &mut Value, ops: &Value) -> Result<(), ApiError> {
    let mut result = target.clone();
    for op in ops.as_array().map(Vec::as_slice).unwrap_or_default() {
        let field = |name: &str| {
            op.get(name).and_then(Value::as_str).ok_or_else(|| {
                ApiError::bad_request(format!("JSON patch operation without {name:?}: {op}"))
            })
        };
        let path = field("path")?;
        let value = || {
            op.get("value").cloned().ok_or_else(|| {
                ApiError::bad_request(format!("JSON patch operation without \"value\": {op}"))
            })
        };
        match field("op")? {
            "add" => put(&mut result, path, value()?, false)?,
            "replace" => put(&mut result, path, value()?, true)?,
            "remove" => drop(take(&mut result, path)?),
            "move" => {
                let moved = take(&mut result, field("from")?)?;
                put(&mut result, path, moved, false)?;
            }
            "copy" => {
                let from = field("from")?;
                let copied = result.pointer(from).cloned().ok_or_else(|| {
                    ApiError::new(
                        422,
                        "Invalid",
                        format!("the JSON patch path {from:?} does not exist"),
                    )
                })?;
                put(&mut result, path, copied, false)?;
            }
            "test" => {
                if result.pointer(path) != Some(&value()?) {
                    return Err(ApiError::new(
                        422,
                        "Invalid",
                        format!("JSON patch test failed at {path:?}"),
                    ));
                }
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown JSON patch operation {other:?}"
                )));
            }
        }
    }
    *target = result;
    Ok(())
}

/// The merge key of a list field (by the field's name), as in the core/v1 types.
fn merge_key(parent_path: &str, field: &str) -> Option<&'static str> {
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "env"
        | "imagePullSecrets"
        | "resourceClaims" => Some("name"),
        "volumeMounts" => Some("mountPath"),
        "volumeDevices" => Some("devicePath"),
        "ports" if parent_path.ends_with("containers") => Some("containerPort"),
        "conditions" => Some("type"),
        "addresses" if parent_path.ends_with("status") => Some("type"),
        "hostAliases" => Some("ip"),
        "taints" => Some("key"),
        _ => None,
    }
}

fn strategic_merge(target: &mut Value, patch: &Value, at: &str) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if patch.get("$patch").and_then(Value::as_str) == Some("replace") {
        let mut replaced = patch.clone();
        replaced.remove("$patch");
        *target = Value::Object(replaced);
        return;
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(t) = target else { return };
    for (k, v) in patch {
        if k.starts_with('$') {
            continue;
        }
        if v.is_null() {
            t.remove(k);
            continue;
        }
        let child_path = format!("{at}.{k}");
        match (merge_key(at, k), v) {
            (Some(key), Value::Array(items)) => {
                let existing = t
                    .entry(k.clone())
                    .or_insert_with(|| Value::Array(Vec::new()));
                merge_list(existing, items, key, &child_path);
            }
            _ => strategic_merge(t.entry(k.clone()).or_insert(Value::Null), v, &child_path),
        }
    }
}

fn merge_list(existing: &mut Value, items: &[Value], key: &str, at: &str) {
    if !existing.is_array() {
        *existing = Value::Array(Vec::new());
    }
    let Value::Array(list) = existing else { return };
    for item in items {
        let id = item.get(key).cloned();
        let pos = id
            .as_ref()
            .and_then(|id| list.iter().position(|e| e.get(key) == Some(id)));
        let directive = item.get("$patch").and_then(Value::as_str);
        match (pos, directive) {
            (Some(i), Some("delete")) => {
                list.remove(i);
            }
            (None, Some("delete")) => {}
            (Some(i), _) => strategic_merge(&mut list[i], item, at),
            (None, _) => {
                let mut new = Value::Null;
                strategic_merge(&mut new, item, at);
                list.push(new);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_replaces_lists_and_removes_nulls() {
        let mut obj = json!({"a": {"b": 1, "c": 2}, "l": [1, 2]});
        merge_patch(&mut obj, &json!({"a": {"b": null, "d": 3}, "l": [3]}));
        assert_eq!(obj, json!({"a": {"c": 2, "d": 3}, "l": [3]}));
    }

    #[test]
    fn json_patch_operations() -> Result<(), String> {
        let mut obj = json!({"metadata": {"labels": {"a": "1"}}, "l": [1, 2]});
        let ops = json!([
            {"op": "add", "path": "/metadata/labels/b~1c", "value": "2"},
            {"op": "replace", "path": "/l/0", "value": 9},
            {"op": "add", "path": "/l/-", "value": 3},
            {"op": "remove", "path": "/metadata/labels/a"},
            {"op": "test", "path": "/l/1", "value": 2}
        ]);
        json_patch(&mut obj, &ops).map_err(|e| e.message)?;
        assert_eq!(
            obj,
            json!({"metadata": {"labels": {"b/c": "2"}}, "l": [9, 2, 3]})
        );
        let bad = json!([{"op": "replace", "path": "/nope", "value": 1}]);
        assert_eq!(json_patch(&mut obj, &bad).err().map(|e| e.code), Some(422));
        Ok(())
    }

    #[test]
    fn strategic_merge_merges_containers_by_name() {
        let mut pod = json!({"spec": {"containers": [
            {"name": "a", "image": "x:1"}, {"name": "b", "image": "y:1"}]}});
        let patch = json!({"$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
            "spec": {"containers": [{"name": "b", "image": "y:2"}, {"name": "c", "image": "z"}]}});
        strategic_merge(&mut pod, &patch, "");
        assert_eq!(
            pod,
            json!({"spec": {"containers": [
            {"name": "a", "image": "x:1"}, {"name": "b", "image": "y:2"},
            {"name": "c", "image": "z"}]}})
        );
        strategic_merge(
            &mut pod,
            &json!({"spec": {"containers": [
            {"name": "a", "$patch": "delete"}]}}),
            "",
        );
        assert_eq!(pod["spec"]["containers"].as_array().map(Vec::len), Some(2));
    }
}
