//! `/openapi/v2` in protobuf (gnostic `openapi.v2.Document`), as kubectl before 1.29 downloads it
//! for `apply`: the POST, PUT and PATCH operations of pods, nodes and namespaces with their
//! `x-kubernetes-group-version-kind` extension and the `fieldValidation` query parameter, so that
//! kubectl leaves validation to the server. No schemas.

/// The response's content type.
pub(crate) const CONTENT_TYPE: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

/// Appends a length-delimited field.
fn bytes_field(out: &mut Vec<u8>, number: u32, data: &[u8]) {
    varint(out, u64::from(number << 3 | 2));
    varint(out, data.len() as u64);
    out.extend_from_slice(data);
}

fn varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// A message built from `(field number, bytes)` pairs.
fn message(fields: &[(u32, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (number, data) in fields {
        bytes_field(&mut out, *number, data);
    }
    out
}

fn query_parameter(name: &str) -> Vec<u8> {
    // QueryParameterSubSchema { in = 2, name = 4, type = 6 }
    let sub = message(&[(2, b"query"), (4, name.as_bytes()), (6, b"string")]);
    let non_body = message(&[(3, &sub)]); // NonBodyParameter.query_parameter_sub_schema
    let parameter = message(&[(2, &non_body)]); // Parameter.non_body_parameter
    message(&[(1, &parameter)]) // ParametersItem.parameter
}

fn operation(id: &str, kind: &str) -> Vec<u8> {
    let gvk = format!("group: \"\"\nkind: {kind}\nversion: v1\n");
    let any = message(&[(2, gvk.as_bytes())]); // Any.yaml
    let extension = message(&[(1, b"x-kubernetes-group-version-kind"), (2, &any)]);
    let response = message(&[(1, b"OK")]); // Response.description
    let value = message(&[(1, &response)]); // ResponseValue.response
    let code = message(&[(1, b"200"), (2, &value)]); // NamedResponseValue
    let responses = message(&[(1, &code)]); // Responses.response_code
    let mut out = message(&[(5, id.as_bytes())]); // Operation.operation_id
    for param in ["fieldValidation", "dryRun", "fieldManager"] {
        bytes_field(&mut out, 8, &query_parameter(param)); // Operation.parameters
    }
    bytes_field(&mut out, 9, &responses);
    bytes_field(&mut out, 13, &extension); // Operation.vendor_extension
    out
}

/// The encoded document.
pub(crate) fn document() -> Vec<u8> {
    let mut paths = Vec::new();
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
        let post = operation(&format!("createCoreV1{kind}"), kind);
        let collection_item = message(&[(4, &post)]); // PathItem.post
        let named = message(&[(1, collection.as_bytes()), (2, &collection_item)]);
        bytes_field(&mut paths, 2, &named); // Paths.path
        let put = operation(&format!("replaceCoreV1{kind}"), kind);
        let patch = operation(&format!("patchCoreV1{kind}"), kind);
        let item_path = message(&[(3, &put), (8, &patch)]); // PathItem.put, .patch
        let named = message(&[(1, item.as_bytes()), (2, &item_path)]);
        bytes_field(&mut paths, 2, &named);
    }
    let info = message(&[
        (1, b"Kubernetes"),
        (2, crate::discovery::GIT_VERSION.as_bytes()),
    ]);
    message(&[(1, b"2.0"), (2, &info), (8, &paths)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_and_fields_encode_like_protobuf() {
        let mut out = Vec::new();
        varint(&mut out, 300);
        assert_eq!(out, [0xac, 0x02]);
        assert_eq!(message(&[(1, b"2.0")]), [0x0a, 3, b'2', b'.', b'0']);
        assert!(document().starts_with(&[0x0a, 3, b'2', b'.', b'0', 0x12]));
    }
}
