//! Writer of CRI container log files (`<RFC3339Nano> <stdout|stderr> <P|F> <content>\n`).
use std::io::{Read, Write};
use std::sync::Mutex;

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

/// Copies `src` (one stream of a container) into CRI records on `sink` until EOF (or EIO, the
/// end of a terminal), handing every chunk read to `tee` as well. `stream` is `stdout` or
/// `stderr`. A write error drops the rest of the output (still drained).
pub(crate) fn copy_to_log<W: Write>(
    mut src: impl Read,
    stream: &str,
    sink: &Mutex<W>,
    mut tee: impl FnMut(&[u8]),
) {
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) if e.raw_os_error() == Some(libc::EIO) => break,
            Err(e) => {
                tracing::warn!(stream, error = %e, "reading container output");
                break;
            }
        };
        tee(&buf[..n]);
        pending.extend_from_slice(&buf[..n]);
        let mut start = 0;
        loop {
            let rest = &pending[start..];
            match rest.iter().position(|&b| b == b'\n') {
                Some(i) if i <= MAX_LINE => {
                    let line = rest[..i].strip_suffix(b"\r").unwrap_or(&rest[..i]);
                    record(sink, stream, "F", line);
                    start += i + 1;
                }
                _ if rest.len() >= MAX_LINE => {
                    record(sink, stream, "P", &rest[..MAX_LINE]);
                    start += MAX_LINE;
                }
                _ => break,
            }
        }
        pending.drain(..start);
    }
    if !pending.is_empty() {
        record(sink, stream, "P", &pending);
    }
}

/// Writes one record with a single `write_all` under the lock.
fn record<W: Write>(sink: &Mutex<W>, stream: &str, tag: &str, content: &[u8]) {
    let mut line = Vec::with_capacity(content.len() + 48);
    line.extend_from_slice(rfc3339_nano(&Local::now()).as_bytes());
    line.extend_from_slice(format!(" {stream} {tag} ").as_bytes());
    line.extend_from_slice(content);
    line.push(b'\n');
    let mut sink = match sink.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    };
    if let Err(e) = sink.write_all(&line).and_then(|()| sink.flush()) {
        tracing::warn!(stream, error = %e, "writing the container log");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{FixedOffset, Utc};

    fn records(input: &[u8]) -> Vec<(String, String, Vec<u8>)> {
        let sink = Mutex::new(Vec::new());
        copy_to_log(input, "stdout", &sink, |_| {});
        let out = sink.into_inner().unwrap_or_default();
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
