//! Defaulting and validation on create and update, per kind.

use serde_json::{Value, json};

use crate::error::{ApiError, Cause};
use crate::object::{child, default, name};
use crate::resource::Kind;

/// Fills the defaults the Kubernetes API server sets on `obj` (create and update).
pub(crate) fn apply_defaults(kind: Kind, obj: &mut Value) {
    match kind {
        Kind::Pod => pod_defaults(obj),
        Kind::Namespace => {
            let n = name(obj).to_string();
            let labels = child(child_value(obj, "metadata"), "labels");
            labels.insert("kubernetes.io/metadata.name".into(), Value::String(n));
            default(child(obj, "status"), "phase", json!("Active"));
        }
        Kind::Node => {}
    }
}

fn child_value<'a>(obj: &'a mut Value, key: &str) -> &'a mut Value {
    child(obj, key);
    &mut obj[key]
}

fn pod_defaults(pod: &mut Value) {
    let spec = child(pod, "spec");
    default(spec, "restartPolicy", json!("Always"));
    default(spec, "terminationGracePeriodSeconds", json!(30));
    default(spec, "dnsPolicy", json!("ClusterFirst"));
    default(spec, "schedulerName", json!("default-scheduler"));
    default(spec, "securityContext", json!({}));
    default(spec, "enableServiceLinks", json!(true));
    default(spec, "priority", json!(0));
    for list in ["initContainers", "containers", "ephemeralContainers"] {
        if let Some(Value::Array(containers)) = spec.get_mut(list) {
            for c in containers.iter_mut().filter(|c| c.is_object()) {
                container_defaults(c);
            }
        }
    }
    let qos = qos_class(spec);
    let status = child(pod, "status");
    default(status, "phase", json!("Pending"));
    default(status, "qosClass", json!(qos));
}

/// The pod's QoS class by the API's rules, once requests are defaulted: no request or limit
/// anywhere is BestEffort; CPU and memory limits on every container with equal requests is
/// Guaranteed; anything else is Burstable.
fn qos_class(spec: &serde_json::Map<String, Value>) -> &'static str {
    let containers: Vec<&Value> = ["initContainers", "containers"]
        .iter()
        .filter_map(|list| spec.get(*list).and_then(Value::as_array))
        .flatten()
        .collect();
    let side = |c: &Value, key: &str| {
        c.get("resources")
            .and_then(|r| r.get(key))
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
    };
    if containers
        .iter()
        .all(|c| side(c, "requests").is_empty() && side(c, "limits").is_empty())
    {
        return "BestEffort";
    }
    let guaranteed = containers.iter().all(|c| {
        let (requests, limits) = (side(c, "requests"), side(c, "limits"));
        ["cpu", "memory"]
            .iter()
            .all(|r| limits.get(*r).is_some_and(|l| requests.get(*r) == Some(l)))
    });
    if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// Requests default to the limits for every resource with a limit and no request.
fn default_requests_to_limits(c: &mut serde_json::Map<String, Value>) {
    let Some(resources) = c.get_mut("resources").filter(|r| r.is_object()) else {
        return;
    };
    let Some(limits) = resources.get("limits").and_then(Value::as_object).cloned() else {
        return;
    };
    let requests = child(resources, "requests");
    for (name, value) in limits {
        default(requests, &name, value);
    }
}

fn container_defaults(c: &mut Value) {
    let image = c.get("image").and_then(Value::as_str).unwrap_or_default();
    let policy = if image_tag_is_latest(image) {
        "Always"
    } else {
        "IfNotPresent"
    };
    let Some(map) = c.as_object_mut() else { return };
    default(map, "imagePullPolicy", json!(policy));
    default(map, "terminationMessagePath", json!("/dev/termination-log"));
    default(map, "terminationMessagePolicy", json!("File"));
    default(map, "resources", json!({}));
    default_requests_to_limits(map);
    if let Some(Value::Array(ports)) = map.get_mut("ports") {
        for p in ports.iter_mut().filter_map(Value::as_object_mut) {
            default(p, "protocol", json!("TCP"));
        }
    }
}

/// `:latest` or no tag (digests are pinned, never "latest").
fn image_tag_is_latest(image: &str) -> bool {
    if image.contains('@') {
        return false;
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        None => true,
        Some((_, tag)) => tag == "latest",
    }
}

/// Validates `obj`; a 422 naming the fields otherwise.
pub(crate) fn validate(kind: Kind, obj: &Value) -> Result<(), ApiError> {
    let mut causes = Vec::new();
    let n = name(obj);
    if n.is_empty() {
        causes.push(required("metadata.name"));
    } else {
        let ok = match kind {
            Kind::Namespace => is_dns_label(n),
            _ => is_dns_subdomain(n),
        };
        if !ok {
            causes.push(Cause {
                reason: "FieldValueInvalid",
                field: "metadata.name".into(),
                message: format!(
                    "Invalid value: {n:?}: a lowercase RFC 1123 {} must consist of lower case \
                     alphanumeric characters, '-' or '.', and must start and end with an \
                     alphanumeric character",
                    if kind == Kind::Namespace {
                        "label"
                    } else {
                        "subdomain"
                    }
                ),
            });
        }
    }
    if kind == Kind::Pod {
        validate_pod(obj, &mut causes);
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(kind.kind(), n, causes))
    }
}

fn required(field: &str) -> Cause {
    Cause {
        reason: "FieldValueRequired",
        field: field.into(),
        message: "Required value".into(),
    }
}

fn validate_pod(pod: &Value, causes: &mut Vec<Cause>) {
    let spec = pod.get("spec");
    let containers = spec
        .and_then(|s| s.get("containers"))
        .and_then(Value::as_array);
    match containers {
        None => causes.push(required("spec.containers")),
        Some(cs) if cs.is_empty() => causes.push(required("spec.containers")),
        Some(_) => {}
    }
    let mut seen = std::collections::HashSet::new();
    for list in ["initContainers", "containers"] {
        let items = spec
            .and_then(|s| s.get(list))
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        for (i, c) in items.iter().enumerate() {
            let at = format!("spec.{list}[{i}]");
            match c.get("name").and_then(Value::as_str) {
                None | Some("") => causes.push(required(&format!("{at}.name"))),
                Some(n) if !is_dns_label(n) => causes.push(Cause {
                    reason: "FieldValueInvalid",
                    field: format!("{at}.name"),
                    message: format!("Invalid value: {n:?}: must be a lowercase RFC 1123 label"),
                }),
                Some(n) if !seen.insert(n.to_string()) => causes.push(Cause {
                    reason: "FieldValueDuplicate",
                    field: format!("{at}.name"),
                    message: format!("Duplicate value: {n:?}"),
                }),
                Some(_) => {}
            }
            if c.get("image")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                causes.push(required(&format!("{at}.image")));
            }
            let ports = c.get("ports").and_then(Value::as_array);
            for (j, p) in ports.into_iter().flatten().enumerate() {
                let port = p.get("containerPort").and_then(Value::as_i64).unwrap_or(0);
                if !(1..=65535).contains(&port) {
                    causes.push(Cause {
                        reason: "FieldValueInvalid",
                        field: format!("{at}.ports[{j}].containerPort"),
                        message: format!(
                            "Invalid value: {port}: must be between 1 and 65535, inclusive"
                        ),
                    });
                }
            }
        }
    }
    let policy = spec
        .and_then(|s| s.get("restartPolicy"))
        .and_then(Value::as_str);
    if let Some(p) = policy.filter(|p| !["Always", "OnFailure", "Never"].contains(p)) {
        causes.push(Cause {
            reason: "FieldValueNotSupported",
            field: "spec.restartPolicy".into(),
            message: format!(
                "Unsupported value: {p:?}: supported values: \"Always\", \"OnFailure\", \"Never\""
            ),
        });
    }
}

/// RFC 1123 label: lower-case alphanumerics and '-', ≤ 63, alphanumeric at both ends.
pub(crate) fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// RFC 1123 subdomain: dot-separated labels, ≤ 253.
pub(crate) fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// The pod spec with the fields an update may change blanked out.
fn immutable_part(spec: Option<&Value>, node_was_set: bool) -> Value {
    let mut spec = spec.cloned().unwrap_or(Value::Null);
    if let Some(map) = spec.as_object_mut() {
        for field in [
            "activeDeadlineSeconds",
            "tolerations",
            "terminationGracePeriodSeconds",
        ] {
            map.remove(field);
        }
        if !node_was_set {
            map.remove("nodeName");
        }
        for list in ["containers", "initContainers"] {
            if let Some(Value::Array(cs)) = map.get_mut(list) {
                for c in cs.iter_mut().filter_map(Value::as_object_mut) {
                    c.remove("image");
                }
            }
        }
    }
    spec
}

/// Pod specs are immutable except for images, deadlines, tolerations and the grace period
/// (and binding an unscheduled pod to a node).
pub(crate) fn validate_pod_update(old: &Value, new: &Value) -> Result<(), ApiError> {
    let node_was_set = crate::object::str_at(old, "spec.nodeName").is_some_and(|n| !n.is_empty());
    if immutable_part(old.get("spec"), node_was_set)
        == immutable_part(new.get("spec"), node_was_set)
    {
        return Ok(());
    }
    Err(ApiError::invalid(
        "Pod",
        name(new),
        vec![Cause {
            reason: "FieldValueForbidden",
            field: "spec".into(),
            message: "Forbidden: pod updates may not change fields other than `spec.containers[*].image`, \
                      `spec.initContainers[*].image`, `spec.activeDeadlineSeconds`, \
                      `spec.tolerations` (only additions to existing tolerations), \
                      `spec.terminationGracePeriodSeconds`"
                .into(),
        }],
    ))
}

/// Checks that the body decodes as the typed object (a 400 like Kubernetes' decode errors).
pub(crate) fn check_types(kind: Kind, obj: &Value) -> Result<(), ApiError> {
    use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
    let result = match kind {
        Kind::Pod => serde_json::from_value::<Pod>(obj.clone()).map(drop),
        Kind::Node => serde_json::from_value::<Node>(obj.clone()).map(drop),
        Kind::Namespace => serde_json::from_value::<Namespace>(obj.clone()).map(drop),
    };
    result.map_err(|e| {
        ApiError::bad_request(format!(
            "{k} in version \"v1\" cannot be handled as a {k}: {e}",
            k = kind.kind()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaulted_pod(spec: Value) -> Value {
        let mut pod = json!({"metadata": {"name": "p"}, "spec": spec});
        apply_defaults(Kind::Pod, &mut pod);
        pod
    }

    #[test]
    fn qos_class_and_requests_default_to_limits() {
        let limits_only = defaulted_pod(json!({"containers": [{"name": "a", "image": "i:1",
            "resources": {"limits": {"cpu": "250m", "memory": "48Mi"}}}]}));
        assert_eq!(limits_only["status"]["qosClass"], "Guaranteed");
        assert_eq!(
            limits_only["spec"]["containers"][0]["resources"]["requests"],
            json!({"cpu": "250m", "memory": "48Mi"})
        );
        let cpu_only = defaulted_pod(json!({"containers": [{"name": "a", "image": "i:1",
            "resources": {"limits": {"cpu": "1"}}}]}));
        assert_eq!(cpu_only["status"]["qosClass"], "Burstable");
        let lower_request = defaulted_pod(json!({"containers": [{"name": "a", "image": "i:1",
            "resources": {"requests": {"cpu": "100m", "memory": "1Gi"},
                          "limits": {"cpu": "1", "memory": "1Gi"}}}]}));
        assert_eq!(lower_request["status"]["qosClass"], "Burstable");
        let nothing = defaulted_pod(json!({"containers": [{"name": "a", "image": "i:1"}]}));
        assert_eq!(nothing["status"]["qosClass"], "BestEffort");
    }

    #[test]
    fn pull_policy_follows_the_tag() {
        assert!(image_tag_is_latest("busybox"));
        assert!(image_tag_is_latest("docker.io/library/busybox:latest"));
        assert!(image_tag_is_latest("localhost:5000/busybox"));
        assert!(!image_tag_is_latest("busybox:1.36"));
        assert!(!image_tag_is_latest("busybox@sha256:abc"));
    }

    #[test]
    fn pod_spec_updates_are_limited() {
        let old = json!({"metadata": {"name": "web"}, "spec": {"nodeName": "n1",
            "containers": [{"name": "main", "image": "a:1"}]}});
        let image = json!({"metadata": {"name": "web"}, "spec": {"nodeName": "n1",
            "containers": [{"name": "main", "image": "a:2"}]}});
        assert!(validate_pod_update(&old, &image).is_ok());
        let renamed = json!({"metadata": {"name": "web"}, "spec": {"nodeName": "n1",
            "containers": [{"name": "other", "image": "a:1"}]}});
        assert_eq!(
            validate_pod_update(&old, &renamed).err().map(|e| e.code),
            Some(422)
        );
        let moved = json!({"metadata": {"name": "web"}, "spec": {"nodeName": "n2",
            "containers": [{"name": "main", "image": "a:1"}]}});
        assert!(validate_pod_update(&old, &moved).is_err());
    }

    #[test]
    fn pod_without_image_is_invalid() {
        let pod = json!({"metadata": {"name": "web"}, "spec": {"containers": [{"name": "main"}]}});
        let err = validate(Kind::Pod, &pod).err();
        assert_eq!(
            err.map(|e| (e.code, e.message)),
            Some((
                422,
                "Pod \"web\" is invalid: spec.containers[0].image: Required value".into()
            ))
        );
    }
}
