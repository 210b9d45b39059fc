//! The SPDY/3 header compression dictionary (draft-mbelshe-httpbis-spdy-00 §2.6.10.1).
//!
//! It is 65 length-prefixed words followed by a run of common header values; built at compile time
//! from those parts so the source stays readable.

/// Length of the dictionary in bytes.
pub const DICTIONARY_LEN: usize = 1423;

/// Adler-32 of the dictionary; it is also the DICTID in the zlib stream header on the wire.
pub const DICTIONARY_ADLER32: u32 = 0xE3C6_A7C2;

/// Words stored with a 4-byte big-endian length prefix.
const WORDS: [&str; 65] = [
    "options",
    "head",
    "post",
    "put",
    "delete",
    "trace",
    "accept",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "accept-ranges",
    "age",
    "allow",
    "authorization",
    "cache-control",
    "connection",
    "content-base",
    "content-encoding",
    "content-language",
    "content-length",
    "content-location",
    "content-md5",
    "content-range",
    "content-type",
    "date",
    "etag",
    "expect",
    "expires",
    "from",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "last-modified",
    "location",
    "max-forwards",
    "pragma",
    "proxy-authenticate",
    "proxy-authorization",
    "range",
    "referer",
    "retry-after",
    "server",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "user-agent",
    "vary",
    "via",
    "warning",
    "www-authenticate",
    "method",
    "get",
    "status",
    "200 OK",
    "version",
    "HTTP/1.1",
    "url",
    "public",
    "set-cookie",
    "keep-alive",
    "origin",
];

/// Raw text appended after the words, without separators.
const TAIL: &[&str] = &[
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505",
    "203 Non-Authoritative Information",
    "204 No Content",
    "301 Moved Permanently",
    "400 Bad Request",
    "401 Unauthorized",
    "403 Forbidden",
    "404 Not Found",
    "500 Internal Server Error",
    "501 Not Implemented",
    "503 Service Unavailable",
    "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 ",
    "Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT",
    "chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,",
    "text/plain,text/javascript,publicprivatemax-age=gzip,deflate,sdch",
    "charset=utf-8charset=iso-8859-1,utf-,*,enq=0.",
];

const fn build() -> [u8; DICTIONARY_LEN] {
    let mut out = [0u8; DICTIONARY_LEN];
    let mut pos = 0;
    let mut w = 0;
    while w < WORDS.len() {
        let word = WORDS[w].as_bytes();
        let len = (word.len() as u32).to_be_bytes();
        let mut i = 0;
        while i < 4 {
            out[pos] = len[i];
            pos += 1;
            i += 1;
        }
        let mut i = 0;
        while i < word.len() {
            out[pos] = word[i];
            pos += 1;
            i += 1;
        }
        w += 1;
    }
    let mut t = 0;
    while t < TAIL.len() {
        let part = TAIL[t].as_bytes();
        let mut i = 0;
        while i < part.len() {
            out[pos] = part[i];
            pos += 1;
            i += 1;
        }
        t += 1;
    }
    // A wrong total length fails compilation here rather than corrupting every header block.
    assert!(pos == DICTIONARY_LEN);
    out
}

/// The SPDY/3 header dictionary, preset into every header-block zlib stream.
pub static DICTIONARY: [u8; DICTIONARY_LEN] = build();

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    #[test]
    fn dictionary_matches_the_published_fingerprint() {
        assert_eq!(DICTIONARY.len(), 1423);
        let mut a: u32 = 1;
        let mut b: u32 = 0;
        for byte in DICTIONARY {
            a = (a + u32::from(byte)) % 65521;
            b = (b + a) % 65521;
        }
        assert_eq!((b << 16) | a, DICTIONARY_ADLER32);
        let digest = Sha256::digest(DICTIONARY);
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "51d27341373f923f3cd88e1eb7162aeaa3723d7585ff2399201dc06498407f02"
        );
        assert_eq!(
            &DICTIONARY[..16],
            b"\x00\x00\x00\x07options\x00\x00\x00\x04h"
        );
        assert_eq!(&DICTIONARY[1423 - 16..], b"-1,utf-,*,enq=0.");
    }
}
