//! Decoding of terminal-size messages: a stream of JSON objects `{"Width":w,"Height":h}` (Go
//! field names, matched case-insensitively, any or no separator between values).
use serde_json::Value;

use crate::remotecommand::TerminalSize;

/// Incremental decoder: feed bytes as they arrive, get every complete size out.
#[derive(Debug, Default)]
pub(crate) struct ResizeDecoder {
    buf: Vec<u8>,
}

/// The largest partial document kept; beyond it the buffer is dropped as garbage.
const MAX_PENDING: usize = 4096;

impl ResizeDecoder {
    /// Appends `data` and returns the sizes completed by it (zero dimensions are skipped).
    pub(crate) fn feed(&mut self, data: &[u8]) -> Vec<TerminalSize> {
        self.buf.extend_from_slice(data);
        let mut out = Vec::new();
        let mut consumed = 0;
        let mut stream = serde_json::Deserializer::from_slice(&self.buf).into_iter::<Value>();
        loop {
            match stream.next() {
                Some(Ok(v)) => {
                    consumed = stream.byte_offset();
                    if let Some(size) = size_of(&v) {
                        out.push(size);
                    }
                }
                Some(Err(e)) if e.is_eof() => break,
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "dropping undecodable resize data");
                    consumed = self.buf.len();
                    break;
                }
                None => {
                    consumed = self.buf.len();
                    break;
                }
            }
        }
        self.buf.drain(..consumed);
        if self.buf.len() > MAX_PENDING {
            self.buf.clear();
        }
        out
    }
}

/// Reads `Width`/`Height` (any case) from one decoded value.
fn size_of(v: &Value) -> Option<TerminalSize> {
    let obj = v.as_object()?;
    let field = |name: &str| {
        obj.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| v.as_u64())
            .and_then(|n| u16::try_from(n).ok())
    };
    let width = field("width")?;
    let height = field("height")?;
    if width == 0 || height == 0 {
        return None;
    }
    Some(TerminalSize { width, height })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_encoder_lines() {
        let mut d = ResizeDecoder::default();
        assert_eq!(
            d.feed(b"{\"Width\":80,\"Height\":24}\n{\"width\":120,"),
            vec![TerminalSize {
                width: 80,
                height: 24
            }]
        );
        assert_eq!(
            d.feed(b"\"HEIGHT\":40}"),
            vec![TerminalSize {
                width: 120,
                height: 40
            }]
        );
    }

    #[test]
    fn no_separator_and_bad_values() {
        let mut d = ResizeDecoder::default();
        let got = d.feed(b"{\"Width\":1,\"Height\":2}{\"Width\":0,\"Height\":2}{\"Width\":70000,\"Height\":2}{\"Width\":3,\"Height\":4}");
        assert_eq!(
            got,
            vec![
                TerminalSize {
                    width: 1,
                    height: 2
                },
                TerminalSize {
                    width: 3,
                    height: 4
                }
            ]
        );
        assert!(d.feed(b"garbage").is_empty());
        assert_eq!(
            d.feed(b"{\"Width\":5,\"Height\":6}"),
            vec![TerminalSize {
                width: 5,
                height: 6
            }]
        );
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_chunking_yields_the_same_sizes(sizes in proptest::collection::vec((1u16.., 1u16..), 1..8), cut in proptest::collection::vec(1usize..16, 1..64)) {
            let text: String = sizes.iter().map(|(w, h)| format!("{{\"Width\":{w},\"Height\":{h}}}\n")).collect();
            let bytes = text.as_bytes();
            let mut d = ResizeDecoder::default();
            let mut got = Vec::new();
            let mut pos = 0;
            let mut cuts = cut.iter().cycle();
            while pos < bytes.len() {
                let n = (*cuts.next().unwrap()).min(bytes.len() - pos);
                got.extend(d.feed(&bytes[pos..pos + n]));
                pos += n;
            }
            let want: Vec<TerminalSize> = sizes.iter().map(|(w, h)| TerminalSize { width: *w, height: *h }).collect();
            prop_assert_eq!(got, want);
        }
    }
}
