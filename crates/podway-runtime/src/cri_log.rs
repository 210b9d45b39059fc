//! Writer of CRI container log files (`<RFC3339Nano> <stdout|stderr> <P|F> <content>\n`).
use std::io::Write;

use chrono::{DateTime, Local, Offset, TimeZone};

/// Longest content of one record; longer lines are split into `P` records (containerd's default).
pub(crate) const MAX_LINE: usize = 16 * 1024;

/// Go's `RFC3339Nano`: fractional zeros trimmed, `Z` or `±hh:mm`.
pub(crate) fn rfc3339_nano<Tz: TimeZone>(t: &DateTime<Tz>) -> String {
    let mut out = t.naive_local().format("%Y-%m-%dT%H:%M:%S").to_string();
    let nanos = t.timestamp_subsec_nanos();
    if nanos != 0 {
        let frac = format!("{nanos:09}");
        out.push('.');
        out.push_str(frac.trim_end_matches('0'));
    }
    let offset = t.offset().fix().local_minus_utc();
    if offset == 0 {
        out.push('Z');
    } else {
        let sign = if offset < 0 { '-' } else { '+' };
        let abs = offset.unsigned_abs();
        out.push_str(&format!("{sign}{:02}:{:02}", abs / 3600, abs % 3600 / 60));
    }
    out
}

/// Splits one stream of a container's output into CRI records: complete lines (`F`, a trailing
/// `\r` dropped) and pieces of at most [`MAX_LINE`] bytes (`P`). Holds at most [`MAX_LINE`]
/// bytes between calls.
#[derive(Debug, Default)]
pub(crate) struct Lines {
    pending: Vec<u8>,
}

impl Lines {
    /// Feeds `chunk`; `emit(tag, content)` gets every record it completes.
    pub(crate) fn push(&mut self, chunk: &[u8], mut emit: impl FnMut(&'static str, &[u8])) {
        let mut rest = chunk;
        while !rest.is_empty() {
            let room = MAX_LINE - self.pending.len();
            match rest.iter().take(room + 1).position(|&b| b == b'\n') {
                Some(i) => {
                    let line = if self.pending.is_empty() {
                        &rest[..i]
                    } else {
                        self.pending.extend_from_slice(&rest[..i]);
                        &self.pending[..]
                    };
                    emit("F", line.strip_suffix(b"\r").unwrap_or(line));
                    self.pending.clear();
                    rest = &rest[i + 1..];
                }
                None if rest.len() >= room => {
                    self.pending.extend_from_slice(&rest[..room]);
                    emit("P", &self.pending);
                    self.pending.clear();
                    rest = &rest[room..];
                }
                None => {
                    self.pending.extend_from_slice(rest);
                    rest = &[];
                }
            }
        }
    }

    /// At the end of the stream: the unterminated rest as a `P` record.
    pub(crate) fn finish(&mut self, emit: impl FnOnce(&'static str, &[u8])) {
        if !self.pending.is_empty() {
            emit("P", &self.pending);
            self.pending = Vec::new();
        }
    }
}

/// Writes one record of `stream` with a single `write_all` (so a reopened file never gets half
/// a record).
pub(crate) fn record(sink: &mut impl Write, stream: &str, tag: &str, content: &[u8]) {
    let mut line = Vec::with_capacity(content.len() + 48);
    line.extend_from_slice(rfc3339_nano(&Local::now()).as_bytes());
    line.extend_from_slice(format!(" {stream} {tag} ").as_bytes());
    line.extend_from_slice(content);
    line.push(b'\n');
    if let Err(e) = sink.write_all(&line).and_then(|()| sink.flush()) {
        eprintln!("podway shim: writing the container log ({stream}): {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{FixedOffset, Utc};

    fn records(input: &[u8]) -> Vec<(String, String, Vec<u8>)> {
        let mut out = Vec::new();
        let mut lines = Lines::default();
        // Fed in uneven pieces, as reads from a pipe come.
        for piece in input.chunks(7) {
            lines.push(piece, |tag, c| record(&mut out, "stdout", tag, c));
        }
        lines.finish(|tag, c| record(&mut out, "stdout", tag, c));
        out.split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| {
                let mut parts = l.splitn(4, |&b| b == b' ');
                let _ts = parts.next();
                let stream = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
                let tag = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
                (stream, tag, parts.next().unwrap_or_default().to_vec())
            })
            .collect()
    }

    #[test]
    fn full_partial_and_crlf_lines() {
        let r = records(b"one\r\ntwo\n\nthree");
        let tags: Vec<_> = r
            .iter()
            .map(|(_, t, c)| (t.as_str(), c.as_slice()))
            .collect();
        assert_eq!(
            tags,
            vec![
                ("F", &b"one"[..]),
                ("F", b"two"),
                ("F", b""),
                ("P", b"three")
            ]
        );
        assert!(r.iter().all(|(s, _, _)| s == "stdout"));
    }

    #[test]
    fn long_lines_split_at_16k() {
        let mut input = vec![b'x'; MAX_LINE * 2 + 5];
        input.push(b'\n');
        let r = records(&input);
        let shape: Vec<_> = r.iter().map(|(_, t, c)| (t.clone(), c.len())).collect();
        assert_eq!(
            shape,
            vec![
                ("P".into(), MAX_LINE),
                ("P".into(), MAX_LINE),
                ("F".into(), 5)
            ]
        );
    }

    #[test]
    fn timestamps_like_go() {
        let t = Utc
            .with_ymd_and_hms(2016, 10, 6, 0, 17, 9)
            .single()
            .map(|t| t + chrono::Duration::nanoseconds(669_794_200));
        assert_eq!(
            t.map(|t| rfc3339_nano(&t)).as_deref(),
            Some("2016-10-06T00:17:09.6697942Z")
        );
        let whole = Utc.with_ymd_and_hms(2016, 10, 6, 0, 17, 9).single();
        assert_eq!(
            whole.map(|t| rfc3339_nano(&t)).as_deref(),
            Some("2016-10-06T00:17:09Z")
        );
        let east = FixedOffset::east_opt(5 * 3600 + 1800)
            .and_then(|o| o.with_ymd_and_hms(2020, 1, 2, 3, 4, 5).single());
        assert_eq!(
            east.map(|t| rfc3339_nano(&t)).as_deref(),
            Some("2020-01-02T03:04:05+05:30")
        );
    }
}
