//! What a port-forward request names: the headers of each SPDY `portforward.k8s.io` stream
//! (`streamtype`, `port`, `requestid`) and the `port` values of the legacy WebSocket protocol's
//! query. Pure parsing, no I/O: the server and the fuzz target share it.
use spdy::Headers;

/// The header naming the stream's role in its pair.
pub const STREAM_TYPE: &str = "streamtype";
/// The header naming the forwarded port.
pub const PORT: &str = "port";
/// The header pairing the data and error streams of one forwarded connection.
pub const REQUEST_ID: &str = "requestid";

/// The two streams of one forwarded connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamType {
    /// The error stream: the server writes a failure text on it, the client only reads.
    Error,
    /// The data stream: the forwarded bytes, both ways.
    Data,
}

impl StreamType {
    /// The header value naming this type.
    pub fn as_str(self) -> &'static str {
        match self {
            StreamType::Error => "error",
            StreamType::Data => "data",
        }
    }
}

/// What one port-forward stream's headers ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamHeaders {
    /// Data or error.
    pub stream_type: StreamType,
    /// The pod port to forward to (never 0).
    pub port: u16,
    /// The key pairing this stream with its partner: the `requestid` header or, from clients
    /// that send none, the error stream's id (a data stream's id minus 2).
    pub request: String,
}

/// Why a port-forward stream (or query) was refused; every variant names the header and value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// A required header (or query parameter) is absent; names it (`header "port"`).
    #[error("port-forward {0} is missing")]
    Missing(&'static str),
    /// The `streamtype` header is neither `data` nor `error`.
    #[error(
        "invalid port-forward header \"streamtype\" value {0:?}: expected \"data\" or \"error\""
    )]
    StreamType(String),
    /// A port value is not a decimal number from 1 to 65535.
    #[error("invalid port-forward {name} value {value:?}: {reason}")]
    Port {
        /// Which header or query parameter held it.
        name: &'static str,
        /// The value as received.
        value: String,
        /// What is wrong with it.
        reason: PortReason,
    },
}

/// What is wrong with a port value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PortReason {
    /// Not a decimal number (or empty).
    #[error("not a number")]
    NotANumber,
    /// Above 65535.
    #[error("out of range (1-65535)")]
    OutOfRange,
    /// Port 0.
    #[error("port 0 cannot be forwarded")]
    Zero,
}

/// How errors name the `port` header.
const PORT_HEADER: &str = "header \"port\"";
/// How errors name the `port` query parameter.
const PORT_QUERY: &str = "query parameter \"port\"";

/// Parses one port value as the kubelet does (decimal `u16`, not 0); `name` is what the error
/// names (`header "port"`, `query parameter "port"`).
fn parse_port(name: &'static str, value: &str) -> Result<u16, HeaderError> {
    let error = |reason| HeaderError::Port {
        name,
        value: value.to_owned(),
        reason,
    };
    match value.parse::<u16>() {
        Ok(0) => Err(error(PortReason::Zero)),
        Ok(port) => Ok(port),
        Err(e) => Err(error(match e.kind() {
            std::num::IntErrorKind::PosOverflow => PortReason::OutOfRange,
            _ => PortReason::NotANumber,
        })),
    }
}

/// Parses the headers of a new stream with id `stream_id`. Names are compared
/// case-insensitively; of a repeated header the first value counts (as Go's `Header.Get`).
pub fn parse_stream_headers(
    headers: &Headers,
    stream_id: u32,
) -> Result<StreamHeaders, HeaderError> {
    let port = headers.get(PORT).ok_or(HeaderError::Missing(PORT_HEADER))?;
    let port = parse_port(PORT_HEADER, port)?;
    let stream_type = match headers.get(STREAM_TYPE) {
        None => return Err(HeaderError::Missing("header \"streamtype\"")),
        Some(t) if t.eq_ignore_ascii_case("error") => StreamType::Error,
        Some(t) if t.eq_ignore_ascii_case("data") => StreamType::Data,
        Some(t) => return Err(HeaderError::StreamType(t.to_owned())),
    };
    let request = match headers.get(REQUEST_ID) {
        Some(r) => r.to_owned(),
        None if stream_type == StreamType::Error => stream_id.to_string(),
        None => stream_id.saturating_sub(2).to_string(),
    };
    Ok(StreamHeaders {
        stream_type,
        port,
        request,
    })
}

/// Parses the `port` query values of a legacy WebSocket port-forward request (one port per
/// value, in order), as the kubelet does: at least one, each a decimal `u16` other than 0.
pub fn parse_port_query<'a>(
    values: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<u16>, HeaderError> {
    let ports = values
        .into_iter()
        .map(|v| parse_port(PORT_QUERY, v))
        .collect::<Result<Vec<_>, _>>()?;
    if ports.is_empty() {
        return Err(HeaderError::Missing(PORT_QUERY));
    }
    Ok(ports)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> Headers {
        pairs.iter().copied().collect()
    }

    #[test]
    fn valid_pair_with_request_id() {
        let h = headers(&[("streamtype", "data"), ("port", "8080"), ("requestid", "7")]);
        assert_eq!(
            parse_stream_headers(&h, 3),
            Ok(StreamHeaders {
                stream_type: StreamType::Data,
                port: 8080,
                request: "7".into()
            })
        );
    }

    #[test]
    fn without_request_id_pairs_by_stream_id() {
        let error = headers(&[("streamType", "ERROR"), ("Port", "80")]);
        let data = headers(&[("streamtype", "data"), ("port", "80")]);
        assert_eq!(parse_stream_headers(&error, 5).unwrap().request, "5");
        assert_eq!(parse_stream_headers(&data, 7).unwrap().request, "5");
        assert_eq!(parse_stream_headers(&data, 1).unwrap().request, "0");
    }

    #[test]
    fn errors_name_header_and_value() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[("streamtype", "data")],
                "port-forward header \"port\" is missing",
            ),
            (
                &[("port", "1")],
                "port-forward header \"streamtype\" is missing",
            ),
            (
                &[("streamtype", "data"), ("port", "0")],
                "invalid port-forward header \"port\" value \"0\": port 0 cannot be forwarded",
            ),
            (
                &[("streamtype", "data"), ("port", "65536")],
                "invalid port-forward header \"port\" value \"65536\": out of range (1-65535)",
            ),
            (
                &[("streamtype", "data"), ("port", "http")],
                "invalid port-forward header \"port\" value \"http\": not a number",
            ),
            (
                &[("streamtype", "both"), ("port", "80")],
                "invalid port-forward header \"streamtype\" value \"both\": expected \"data\" or \"error\"",
            ),
        ];
        for (pairs, text) in cases {
            let e = parse_stream_headers(&headers(pairs), 1).unwrap_err();
            assert_eq!(e.to_string(), *text);
        }
    }

    #[test]
    fn first_of_repeated_headers_counts() {
        let h = headers(&[("port", "80"), ("port", "0"), ("streamtype", "error")]);
        assert_eq!(parse_stream_headers(&h, 1).unwrap().port, 80);
    }

    #[test]
    fn query_ports() {
        assert_eq!(parse_port_query(["8080", "9090"]), Ok(vec![8080, 9090]));
        assert_eq!(
            parse_port_query([]).unwrap_err().to_string(),
            "port-forward query parameter \"port\" is missing"
        );
        assert_eq!(
            parse_port_query(["80", "-1"]).unwrap_err().to_string(),
            "invalid port-forward query parameter \"port\" value \"-1\": not a number"
        );
    }
}
