//! Minimal `application/x-www-form-urlencoded` query parsing (repeated keys kept in order).

/// Percent-decodes one query component (`+` is a space); invalid escapes are kept literally.
fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// All values of `key` in `query`, in order.
pub(crate) fn values(query: Option<&str>, key: &str) -> Vec<String> {
    query
        .unwrap_or("")
        .split('&')
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k) == key).then(|| decode(v))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_and_escaped() {
        let q =
            Some("command=sh&command=-c&command=echo+out%3B%20exit%203&container=main&stdin=true");
        assert_eq!(values(q, "command"), vec!["sh", "-c", "echo out; exit 3"]);
        assert_eq!(values(q, "container"), vec!["main"]);
        assert!(values(None, "x").is_empty());
        assert_eq!(values(Some("a=%zz&a=%4"), "a"), vec!["%zz", "%4"]);
    }
}
