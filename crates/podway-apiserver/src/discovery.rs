//! `/version`, legacy discovery (`/api`, `/apis`, `/api/v1`) and the minimal OpenAPI v3 surface
//! that `kubectl apply` needs for server-side field validation.

use serde_json::{Value, json};

/// The Kubernetes version the server reports (kubectl's dispatcher picks its client by it).
pub(crate) const GIT_VERSION: &str = "v1.32.0";

/// `/version`.
pub(crate) fn version() -> Value {
    json!({
        "major": "1", "minor": "32", "gitVersion": GIT_VERSION,
        "gitCommit": "podway", "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.23.0", "compiler": "gc", "platform": "linux/amd64",
    })
}

/// `/api`.
pub(crate) fn api_versions(server_address: &str) -> Value {
    json!({"kind": "APIVersions", "versions": ["v1"],
           "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]})
}

/// `/apis`.
pub(crate) fn api_groups() -> Value {
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": []})
}

fn resource(name: &str, kind: &str, namespaced: bool, verbs: &[&str]) -> Value {
    json!({"name": name, "singularName": "", "namespaced": namespaced, "kind": kind, "verbs": verbs})
}

/// `/api/v1`.
pub(crate) fn core_v1() -> Value {
    let crud = [
        "create",
        "delete",
        "deletecollection",
        "get",
        "list",
        "patch",
        "update",
        "watch",
    ];
    let mut pods = resource("pods", "Pod", true, &crud);
    pods["singularName"] = json!("pod");
    pods["shortNames"] = json!(["po"]);
    pods["categories"] = json!(["all"]);
    let mut nodes = resource("nodes", "Node", false, &crud);
    nodes["singularName"] = json!("node");
    nodes["shortNames"] = json!(["no"]);
    let mut namespaces = resource(
        "namespaces",
        "Namespace",
        false,
        &[
            "create", "delete", "get", "list", "patch", "update", "watch",
        ],
    );
    namespaces["singularName"] = json!("namespace");
    namespaces["shortNames"] = json!(["ns"]);
    let status = ["get", "patch", "update"];
    json!({
        "kind": "APIResourceList", "groupVersion": "v1",
        "resources": [
            namespaces,
            resource("namespaces/status", "Namespace", false, &status),
            nodes,
            resource("nodes/status", "Node", false, &status),
            pods,
            resource("pods/attach", "PodAttachOptions", true, &["create", "get"]),
            resource("pods/exec", "PodExecOptions", true, &["create", "get"]),
            resource("pods/log", "Pod", true, &["get"]),
            resource("pods/portforward", "PodPortForwardOptions", true, &["create", "get"]),
            resource("pods/status", "Pod", true, &status),
        ]
    })
}

/// The hash naming the current OpenAPI documents.
const OPENAPI_HASH: &str = "podway1";

/// `/openapi/v3`: the index of group-version documents.
pub(crate) fn openapi_index() -> Value {
    json!({"paths": {"api/v1": {"serverRelativeURL": format!("/openapi/v3/api/v1?hash={OPENAPI_HASH}")}}})
}

/// `/openapi/v3/api/v1`: the operations with their `fieldValidation` parameter.
pub(crate) fn openapi_core_v1() -> Value {
    let field_validation = json!({"name": "fieldValidation", "in": "query", "schema": {"type": "string"},
        "description": "Ignore, Warn or Strict handling of unknown or duplicate fields."});
    let dry_run = json!({"name": "dryRun", "in": "query", "schema": {"type": "string"}});
    let field_manager =
        json!({"name": "fieldManager", "in": "query", "schema": {"type": "string"}});
    let params = json!([field_validation, dry_run, field_manager]);
    let op = |id: &str, kind: &str| {
        json!({"operationId": id, "parameters": params.clone(), "responses": {},
               "x-kubernetes-group-version-kind": {"group": "", "version": "v1", "kind": kind}})
    };
    let mut paths = serde_json::Map::new();
    for (kind, collection, item) in [
        (
            "Pod",
            "/api/v1/namespaces/{namespace}/pods",
            "/api/v1/namespaces/{namespace}/pods/{name}",
        ),
        ("Node", "/api/v1/nodes", "/api/v1/nodes/{name}"),
        (
            "Namespace",
            "/api/v1/namespaces",
            "/api/v1/namespaces/{name}",
        ),
    ] {
        paths.insert(
            collection.into(),
            json!({"post": op(&format!("createCoreV1{kind}"), kind)}),
        );
        paths.insert(
            item.into(),
            json!({
                "put": op(&format!("replaceCoreV1{kind}"), kind),
                "patch": op(&format!("patchCoreV1{kind}"), kind),
            }),
        );
    }
    json!({"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": GIT_VERSION},
           "paths": paths, "components": {"schemas": {}}})
}
