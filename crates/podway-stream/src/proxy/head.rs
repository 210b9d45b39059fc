//! HTTP/1.1 heads on a raw connection: writing a request head, parsing a response head, and
//! reading a bounded error body.
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header, request};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Largest response head accepted from a backend.
pub(crate) const MAX_HEAD: usize = 64 * 1024;
/// Largest error body forwarded from a backend.
pub(crate) const MAX_BODY: usize = 1024 * 1024;

/// A parsed response head.
#[derive(Debug)]
pub(crate) struct ResponseHead {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
}

/// Why a backend response could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HeadError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("connection closed before the response head was complete")]
    Eof,
    #[error("response head larger than {MAX_HEAD} bytes")]
    TooLarge,
    #[error("malformed response head: {0}")]
    Malformed(String),
}

/// Serialises the request head (`method target HTTP/1.1`, `Host: host`, every other header).
/// `body_len` replaces any `Content-Length`/`Transfer-Encoding` of the client.
pub(crate) fn request_head(
    parts: &request::Parts,
    target: &str,
    host: &str,
    body_len: usize,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(parts.method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    out.extend_from_slice(host.as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in &parts.headers {
        if name == header::HOST
            || name == header::CONTENT_LENGTH
            || name == header::TRANSFER_ENCODING
        {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if body_len > 0 || parts.headers.contains_key(header::CONTENT_LENGTH) {
        out.extend_from_slice(format!("Content-Length: {body_len}\r\n").as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// Reads until a complete response head; returns it and the bytes read past it.
pub(crate) async fn read_response_head<R: AsyncRead + Unpin>(
    r: &mut R,
) -> Result<(ResponseHead, Vec<u8>), HeadError> {
    let mut buf = Vec::with_capacity(4096);
    loop {
        let mut chunk = [0u8; 4096];
        let n = r.read(&mut chunk).await?;
        if n == 0 {
            return Err(HeadError::Eof);
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut storage = [httparse::EMPTY_HEADER; 128];
        let mut resp = httparse::Response::new(&mut storage);
        match resp.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => {
                let status = resp
                    .code
                    .and_then(|c| StatusCode::from_u16(c).ok())
                    .ok_or_else(|| HeadError::Malformed("bad status code".into()))?;
                let mut headers = HeaderMap::new();
                for h in resp.headers.iter() {
                    let name = HeaderName::from_bytes(h.name.as_bytes()).map_err(|e| {
                        HeadError::Malformed(format!("header name {:?}: {e}", h.name))
                    })?;
                    let value = HeaderValue::from_bytes(h.value)
                        .map_err(|e| HeadError::Malformed(format!("header {name}: {e}")))?;
                    headers.append(name, value);
                }
                let rest = buf.split_off(len);
                return Ok((ResponseHead { status, headers }, rest));
            }
            Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
                return Err(HeadError::TooLarge);
            }
            Ok(httparse::Status::Partial) => {}
            Err(e) => return Err(HeadError::Malformed(e.to_string())),
        }
    }
}

/// Reads the body that follows `head` (Content-Length, chunked, or until EOF), at most
/// [`MAX_BODY`] bytes; `already` holds the bytes read past the head.
pub(crate) async fn read_body<R: AsyncRead + Unpin>(
    r: &mut R,
    head: &ResponseHead,
    already: Vec<u8>,
) -> Result<Vec<u8>, HeadError> {
    let chunked = head
        .headers
        .get(header::TRANSFER_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let length = head
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<usize>().ok());
    let mut raw = already;
    let want = match (chunked, length) {
        (false, Some(n)) => Some(n.min(MAX_BODY)),
        _ => None,
    };
    loop {
        if let Some(n) = want
            && raw.len() >= n
        {
            raw.truncate(n);
            return Ok(raw);
        }
        if chunked && let Some(body) = dechunk(&raw)? {
            return Ok(body);
        }
        if raw.len() >= MAX_BODY + 64 {
            raw.truncate(MAX_BODY);
            return Ok(if chunked { dechunk_partial(&raw) } else { raw });
        }
        let mut chunk = [0u8; 8192];
        let n = r.read(&mut chunk).await?;
        if n == 0 {
            return Ok(if chunked { dechunk_partial(&raw) } else { raw });
        }
        raw.extend_from_slice(&chunk[..n]);
    }
}

/// Decodes a complete chunked body (`None` while incomplete).
fn dechunk(raw: &[u8]) -> Result<Option<Vec<u8>>, HeadError> {
    let mut out = Vec::new();
    let mut pos = 0;
    loop {
        let Some(eol) = raw[pos..].windows(2).position(|w| w == b"\r\n") else {
            return Ok(None);
        };
        let line = std::str::from_utf8(&raw[pos..pos + eol])
            .map_err(|e| HeadError::Malformed(e.to_string()))?;
        let size_text = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|e| HeadError::Malformed(format!("chunk size {size_text:?}: {e}")))?;
        pos += eol + 2;
        if size == 0 {
            return Ok(Some(out));
        }
        if raw.len() < pos + size + 2 {
            return Ok(None);
        }
        out.extend_from_slice(&raw[pos..pos + size]);
        pos += size + 2;
    }
}

/// Best-effort decoding of a truncated chunked body: the complete chunks.
fn dechunk_partial(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut pos = 0;
    while let Some(eol) = raw[pos..].windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&raw[pos..pos + eol])
            .ok()
            .and_then(|l| usize::from_str_radix(l.split(';').next().unwrap_or("").trim(), 16).ok());
        pos += eol + 2;
        match size {
            Some(n) if n > 0 && raw.len() >= pos + n => {
                out.extend_from_slice(&raw[pos..pos + n]);
                pos += n + 2;
                if pos > raw.len() {
                    break;
                }
            }
            _ => break,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn parses_head_and_keeps_rest() {
        let mut input: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: SPDY/3.1\r\nConnection: Upgrade\r\n\r\n\x80\x03";
        let (head, rest) = read_response_head(&mut input).await.unwrap();
        assert_eq!(head.status, StatusCode::SWITCHING_PROTOCOLS);
        assert_eq!(head.headers["upgrade"], "SPDY/3.1");
        assert_eq!(rest, b"\x80\x03");
    }

    #[tokio::test]
    async fn bodies() {
        let mut input: &[u8] = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 5\r\n\r\nnope!trailing";
        let (head, rest) = read_response_head(&mut input).await.unwrap();
        assert_eq!(read_body(&mut input, &head, rest).await.unwrap(), b"nope!");
        let mut input: &[u8] = b"HTTP/1.1 500 X\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n";
        let (head, rest) = read_response_head(&mut input).await.unwrap();
        assert_eq!(read_body(&mut input, &head, rest).await.unwrap(), b"abcde");
        let mut input: &[u8] = b"HTTP/1.1 404 X\r\n\r\nuntil eof";
        let (head, rest) = read_response_head(&mut input).await.unwrap();
        assert_eq!(
            read_body(&mut input, &head, rest).await.unwrap(),
            b"until eof"
        );
    }

    #[tokio::test]
    async fn head_errors() {
        let mut input: &[u8] = b"HTTP/1.1 200 OK\r\n";
        assert!(matches!(
            read_response_head(&mut input).await,
            Err(HeadError::Eof)
        ));
        let mut input: &[u8] = b"garbage\r\n\r\n";
        assert!(matches!(
            read_response_head(&mut input).await,
            Err(HeadError::Malformed(_))
        ));
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn head_parser_never_panics(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            rt.block_on(async {
                let mut input: &[u8] = &data;
                if let Ok((head, rest)) = read_response_head(&mut input).await {
                    let _ = read_body(&mut input, &head, rest).await;
                }
            });
        }

        #[test]
        fn chunked_round_trip(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..64), 0..8)) {
            let mut raw = Vec::new();
            for c in &chunks {
                raw.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
                raw.extend_from_slice(c);
                raw.extend_from_slice(b"\r\n");
            }
            raw.extend_from_slice(b"0\r\n\r\n");
            prop_assert_eq!(dechunk(&raw).unwrap(), Some(chunks.concat()));
        }
    }
}
