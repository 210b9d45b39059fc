//! Just enough of Kubernetes' protobuf encoding to accept the objects typed clients (kubectl's
//! `create namespace`) send as `application/vnd.kubernetes.protobuf`: the `k8s\0` envelope
//! (`runtime.Unknown`), `ObjectMeta`'s common fields and Namespace's spec and status.

use serde_json::{Map, Value, json};

use crate::error::ApiError;
use crate::resource::Kind;

/// The envelope's magic prefix.
const MAGIC: &[u8] = b"k8s\0";

/// One protobuf field's payload (varint values are not needed by any decoded field).
enum Field<'a> {
    Varint,
    Bytes(&'a [u8]),
}

fn bad(what: &str) -> ApiError {
    ApiError::bad_request(format!("undecodable protobuf body: {what}"))
}

fn varint(buf: &mut &[u8]) -> Result<u64, ApiError> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = buf.split_first().ok_or_else(|| bad("truncated varint"))?;
        *buf = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(bad("varint too long"))
}

/// Splits a message into its fields.
fn fields(mut buf: &[u8]) -> Result<Vec<(u64, Field<'_>)>, ApiError> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let key = varint(&mut buf)?;
        let field = match key & 7 {
            0 => {
                varint(&mut buf)?;
                Field::Varint
            }
            2 => {
                let len = usize::try_from(varint(&mut buf)?).map_err(|_| bad("length"))?;
                if len > buf.len() {
                    return Err(bad("truncated field"));
                }
                let (data, rest) = buf.split_at(len);
                buf = rest;
                Field::Bytes(data)
            }
            1 => {
                buf = buf.get(8..).ok_or_else(|| bad("truncated fixed64"))?;
                continue;
            }
            5 => {
                buf = buf.get(4..).ok_or_else(|| bad("truncated fixed32"))?;
                continue;
            }
            _ => return Err(bad("unsupported wire type")),
        };
        out.push((key >> 3, field));
    }
    Ok(out)
}

fn string(data: &[u8]) -> Result<String, ApiError> {
    String::from_utf8(data.to_vec()).map_err(|_| bad("invalid UTF-8"))
}

fn map_entry(data: &[u8]) -> Result<(String, String), ApiError> {
    let (mut k, mut v) = (String::new(), String::new());
    for (n, f) in fields(data)? {
        match (n, f) {
            (1, Field::Bytes(b)) => k = string(b)?,
            (2, Field::Bytes(b)) => v = string(b)?,
            _ => {}
        }
    }
    Ok((k, v))
}

fn object_meta(data: &[u8]) -> Result<Value, ApiError> {
    let mut meta = Map::new();
    let (mut labels, mut annotations, mut finalizers) = (Map::new(), Map::new(), Vec::new());
    for (n, f) in fields(data)? {
        match (n, f) {
            (1, Field::Bytes(b)) => drop(meta.insert("name".into(), json!(string(b)?))),
            (2, Field::Bytes(b)) => drop(meta.insert("generateName".into(), json!(string(b)?))),
            (3, Field::Bytes(b)) => drop(meta.insert("namespace".into(), json!(string(b)?))),
            (6, Field::Bytes(b)) => drop(meta.insert("resourceVersion".into(), json!(string(b)?))),
            (11, Field::Bytes(b)) => {
                let (k, v) = map_entry(b)?;
                labels.insert(k, json!(v));
            }
            (12, Field::Bytes(b)) => {
                let (k, v) = map_entry(b)?;
                annotations.insert(k, json!(v));
            }
            (14, Field::Bytes(b)) => finalizers.push(json!(string(b)?)),
            _ => {}
        }
    }
    if !labels.is_empty() {
        meta.insert("labels".into(), Value::Object(labels));
    }
    if !annotations.is_empty() {
        meta.insert("annotations".into(), Value::Object(annotations));
    }
    if !finalizers.is_empty() {
        meta.insert("finalizers".into(), Value::Array(finalizers));
    }
    Ok(Value::Object(meta))
}

/// Decodes a protobuf request body into the JSON form of a `kind` object.
pub(crate) fn decode(kind: Kind, body: &[u8]) -> Result<Value, ApiError> {
    let envelope = body
        .strip_prefix(MAGIC)
        .ok_or_else(|| bad("missing k8s envelope"))?;
    let mut raw: &[u8] = &[];
    let mut type_kind = String::new();
    for (n, f) in fields(envelope)? {
        match (n, f) {
            (1, Field::Bytes(tm)) => {
                for (tn, tf) in fields(tm)? {
                    if let (2, Field::Bytes(k)) = (tn, tf) {
                        type_kind = string(k)?;
                    }
                }
            }
            (2, Field::Bytes(b)) => raw = b,
            _ => {}
        }
    }
    if kind != Kind::Namespace || type_kind != "Namespace" {
        return Err(ApiError::new(
            415,
            "UnsupportedMediaType",
            format!(
                "protobuf bodies are accepted for namespaces only, not {type_kind:?}; send application/json"
            ),
        ));
    }
    let mut obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {}});
    for (n, f) in fields(raw)? {
        match (n, f) {
            (1, Field::Bytes(b)) => obj["metadata"] = object_meta(b)?,
            (2, Field::Bytes(b)) => {
                let finalizers: Vec<Value> = fields(b)?
                    .into_iter()
                    .filter_map(|(n, f)| match (n, f) {
                        (1, Field::Bytes(s)) => string(s).ok().map(Value::String),
                        _ => None,
                    })
                    .collect();
                obj["spec"] = json!({"finalizers": finalizers});
            }
            (3, Field::Bytes(b)) => {
                for (sn, sf) in fields(b)? {
                    if let (1, Field::Bytes(p)) = (sn, sf) {
                        obj["status"] = json!({"phase": string(p)?});
                    }
                }
            }
            (_, Field::Varint | Field::Bytes(_)) => {}
        }
    }
    Ok(obj)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes_field(n: u8, data: &[u8]) -> Vec<u8> {
        let mut out = vec![(n << 3) | 2, data.len() as u8];
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn decodes_a_namespace_envelope() -> Result<(), String> {
        let label = [bytes_field(1, b"team"), bytes_field(2, b"a")].concat();
        let meta = [bytes_field(1, b"team"), bytes_field(11, &label)].concat();
        let ns = bytes_field(1, &meta);
        let type_meta = [bytes_field(1, b"v1"), bytes_field(2, b"Namespace")].concat();
        let body = [
            MAGIC.to_vec(),
            bytes_field(1, &type_meta),
            bytes_field(2, &ns),
        ]
        .concat();
        let obj = decode(Kind::Namespace, &body).map_err(|e| e.message)?;
        assert_eq!(
            obj["metadata"],
            json!({"name": "team", "labels": {"team": "a"}})
        );
        Ok(())
    }
}
