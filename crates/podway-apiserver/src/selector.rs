//! Label and field selectors of list and watch requests.

use serde_json::Value;

use crate::error::ApiError;
use crate::object::{labels, str_at};
use crate::resource::Kind;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// A parsed `labelSelector` plus `fieldSelector`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Selector {
    labels: Vec<Requirement>,
    fields: Vec<(String, bool, String)>,
}

/// Splits on commas outside parentheses.
fn split_terms(s: &str) -> Vec<&str> {
    let mut terms = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, ch) in s.char_indices() {
        match ch {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                terms.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    terms.push(&s[start..]);
    terms
        .into_iter()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect()
}

fn parse_set(rest: &str) -> Option<Vec<String>> {
    let inner = rest.trim().strip_prefix('(')?.strip_suffix(')')?;
    Some(
        inner
            .split(',')
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect(),
    )
}

fn parse_label_term(term: &str) -> Option<Requirement> {
    if let Some(key) = term.strip_prefix('!') {
        return Some(Requirement::NotExists(key.trim().to_string()));
    }
    if let Some((k, v)) = term.split_once("!=") {
        return Some(Requirement::NotEquals(k.trim().into(), v.trim().into()));
    }
    if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
        return Some(Requirement::Equals(k.trim().into(), v.trim().into()));
    }
    let mut words = term.splitn(2, char::is_whitespace);
    let key = words.next()?.trim().to_string();
    match words.next().map(str::trim) {
        None => Some(Requirement::Exists(key)),
        Some(rest) => {
            if let Some(set) = rest.strip_prefix("notin") {
                Some(Requirement::NotIn(key, parse_set(set)?))
            } else if let Some(set) = rest.strip_prefix("in") {
                Some(Requirement::In(key, parse_set(set)?))
            } else {
                None
            }
        }
    }
}

/// The fields each kind may be selected on (besides `metadata.name` and `metadata.namespace`).
fn field_supported(kind: Kind, field: &str) -> bool {
    match field {
        "metadata.name" | "metadata.namespace" => true,
        "status.phase" => kind != Kind::Node,
        "spec.nodeName"
        | "spec.restartPolicy"
        | "spec.schedulerName"
        | "status.podIP"
        | "spec.serviceAccountName" => kind == Kind::Pod,
        "spec.unschedulable" => kind == Kind::Node,
        _ => false,
    }
}

impl Selector {
    /// Parses both selectors; malformed ones are a 400.
    pub fn parse(kind: Kind, label: Option<&str>, field: Option<&str>) -> Result<Self, ApiError> {
        let mut sel = Selector::default();
        for term in split_terms(label.unwrap_or_default()) {
            let req = parse_label_term(term).ok_or_else(|| {
                ApiError::bad_request(format!("unable to parse requirement: {term:?}"))
            })?;
            sel.labels.push(req);
        }
        for term in split_terms(field.unwrap_or_default()) {
            let (key, negate, value) = if let Some((k, v)) = term.split_once("!=") {
                (k, true, v)
            } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                (k, false, v)
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid field selector: {term:?}"
                )));
            };
            let key = key.trim();
            if !field_supported(kind, key) {
                return Err(ApiError::bad_request(format!(
                    "field label not supported: {key}"
                )));
            }
            sel.fields
                .push((key.to_string(), negate, value.trim().to_string()));
        }
        Ok(sel)
    }

    /// Whether `obj` matches both selectors.
    pub fn matches(&self, obj: &Value) -> bool {
        let labels = labels(obj);
        let label = |k: &str| labels.iter().find(|(lk, _)| *lk == k).map(|(_, v)| *v);
        let labels_ok = self.labels.iter().all(|req| match req {
            Requirement::Equals(k, v) => label(k) == Some(v.as_str()),
            Requirement::NotEquals(k, v) => label(k) != Some(v.as_str()),
            Requirement::In(k, vs) => label(k).is_some_and(|l| vs.iter().any(|v| v == l)),
            Requirement::NotIn(k, vs) => label(k).is_none_or(|l| vs.iter().all(|v| v != l)),
            Requirement::Exists(k) => label(k).is_some(),
            Requirement::NotExists(k) => label(k).is_none(),
        });
        labels_ok
            && self.fields.iter().all(|(key, negate, want)| {
                let have = field_value(obj, key);
                (have == *want) != *negate
            })
    }
}

fn field_value(obj: &Value, key: &str) -> String {
    if key == "spec.unschedulable" {
        let b = crate::object::path(obj, key)
            .and_then(Value::as_bool)
            .unwrap_or(false);
        return b.to_string();
    }
    str_at(obj, key).unwrap_or_default().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn selects_by_labels_and_fields() -> Result<(), String> {
        let pod = json!({"metadata": {"name": "web", "labels": {"app": "demo", "tier": "fe"}},
                         "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}});
        let sel =
            |l: &str, f: &str| Selector::parse(Kind::Pod, Some(l), Some(f)).map_err(|e| e.message);
        assert!(sel("app=demo", "metadata.name=web")?.matches(&pod));
        assert!(sel("app in (x, demo),tier", "spec.nodeName==n1")?.matches(&pod));
        assert!(!sel("app notin (demo)", "")?.matches(&pod));
        assert!(!sel("", "status.phase!=Running")?.matches(&pod));
        assert!(sel("!missing", "spec.nodeName=n1")?.matches(&pod));
        assert!(!sel("", "spec.nodeName=")?.matches(&pod));
        assert!(sel("", "bogus.field=x").is_err());
        Ok(())
    }
}
