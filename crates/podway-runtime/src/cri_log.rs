//! Writer of CRI container log files (`<RFC3339Nano> <stdout|stderr> <P|F> <content>\n`).
use std::io::Write;

/// Longest content of one record; longer lines are split into `P` records (containerd's default).
pub(crate) const MAX_LINE: usize = 16 * 1024;

/// A moment as a log record shows it: the local civil time, its nanoseconds and the local
/// offset from UTC. Built from the C library's `localtime_r` (which reads `TZ` or
/// `/etc/localtime` once per process, as Go's runtime does), so that writing a record runs no
/// time-zone or formatting machinery: the monitor of every pod writes one per line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    year: i32,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    nanos: u32,
    /// Seconds east of UTC.
    offset: i32,
}

impl Stamp {
    /// The moment `secs.nanos` after the epoch in the local time zone (UTC if the C library
    /// cannot tell).
    pub(crate) fn local(secs: i64, nanos: u32) -> Stamp {
        let time: libc::time_t = secs;
        // SAFETY: an all-zero `tm` is a valid value of the plain C struct.
        let mut tm: libc::tm = unsafe { std::mem::zeroed() };
        // SAFETY: both pointers are valid for the call; localtime_r is thread-safe.
        if unsafe { libc::localtime_r(&time, &mut tm) }.is_null() {
            // SAFETY: as above.
            unsafe { libc::gmtime_r(&time, &mut tm) };
        }
        let field = |v: libc::c_int| u32::try_from(v).unwrap_or(0);
        Stamp {
            year: tm.tm_year + 1900,
            month: field(tm.tm_mon + 1),
            day: field(tm.tm_mday),
            hour: field(tm.tm_hour),
            minute: field(tm.tm_min),
            second: field(tm.tm_sec),
            nanos,
            offset: i32::try_from(tm.tm_gmtoff).unwrap_or(0),
        }
    }

    /// Now, in the local time zone.
    pub(crate) fn now() -> Stamp {
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Stamp::local(
            i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
            since.subsec_nanos(),
        )
    }

    /// Appends Go's `RFC3339Nano` form: fractional zeros trimmed, `Z` or `±hh:mm`.
    pub(crate) fn write_rfc3339_nano(&self, out: &mut Vec<u8>) {
        if self.year < 0 {
            out.push(b'-');
        }
        digits(out, self.year.unsigned_abs(), 4);
        for (sep, value) in [
            (b'-', self.month),
            (b'-', self.day),
            (b'T', self.hour),
            (b':', self.minute),
            (b':', self.second),
        ] {
            out.push(sep);
            digits(out, value, 2);
        }
        if self.nanos != 0 {
            out.push(b'.');
            let mut frac = self.nanos;
            let mut width = 9;
            while frac.is_multiple_of(10) {
                frac /= 10;
                width -= 1;
            }
            digits(out, frac, width);
        }
        if self.offset == 0 {
            out.push(b'Z');
        } else {
            out.push(if self.offset < 0 { b'-' } else { b'+' });
            let abs = self.offset.unsigned_abs();
            digits(out, abs / 3600, 2);
            out.push(b':');
            digits(out, abs % 3600 / 60, 2);
        }
    }
}

/// Appends `value` in decimal, zero-padded to at least `width` digits.
fn digits(out: &mut Vec<u8>, value: u32, width: usize) {
    let mut buf = [b'0'; 10];
    let mut v = value;
    let mut i = buf.len();
    while v > 0 || buf.len() - i < width {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
    }
    out.extend_from_slice(&buf[i..]);
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
    Stamp::now().write_rfc3339_nano(&mut line);
    for part in [" ", stream, " ", tag, " "] {
        line.extend_from_slice(part.as_bytes());
    }
    line.extend_from_slice(content);
    line.push(b'\n');
    if let Err(e) = sink.write_all(&line).and_then(|()| sink.flush()) {
        eprintln!("podway shim: writing the container log ({stream}): {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    fn stamp(date: (i32, u32, u32), time: (u32, u32, u32), nanos: u32, offset: i32) -> String {
        let stamp = Stamp {
            year: date.0,
            month: date.1,
            day: date.2,
            hour: time.0,
            minute: time.1,
            second: time.2,
            nanos,
            offset,
        };
        let mut out = Vec::new();
        stamp.write_rfc3339_nano(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn timestamps_like_go() {
        let day = (2016, 10, 6);
        assert_eq!(
            stamp(day, (0, 17, 9), 669_794_200, 0),
            "2016-10-06T00:17:09.6697942Z"
        );
        assert_eq!(stamp(day, (0, 17, 9), 0, 0), "2016-10-06T00:17:09Z");
        assert_eq!(
            stamp(day, (0, 17, 9), 1, 0),
            "2016-10-06T00:17:09.000000001Z"
        );
        assert_eq!(
            stamp((2020, 1, 2), (3, 4, 5), 500_000_000, 5 * 3600 + 1800),
            "2020-01-02T03:04:05.5+05:30"
        );
        assert_eq!(
            stamp((999, 12, 31), (23, 59, 59), 0, -8 * 3600),
            "0999-12-31T23:59:59-08:00"
        );
    }

    #[test]
    fn local_time_agrees_with_chrono() {
        use chrono::{Local, TimeZone};
        for (secs, nanos) in [(0, 0), (1_475_713_029, 669_794_200), (1_795_000_000, 7)] {
            let mut ours = Vec::new();
            Stamp::local(secs, nanos).write_rfc3339_nano(&mut ours);
            let theirs = Local
                .timestamp_opt(secs, nanos)
                .single()
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true));
            let ours = String::from_utf8_lossy(&ours).into_owned();
            // chrono rounds the fraction to 3, 6 or 9 digits; Go (and we) trim its zeros.
            let theirs = theirs.map(|t| trim_fraction(&t));
            assert_eq!(Some(ours), theirs);
        }
    }

    /// `…:SS.123400Z` → `…:SS.1234Z`, `…:SS.000Z` → `…:SSZ` (Go's trimming).
    fn trim_fraction(t: &str) -> String {
        let Some(dot) = t.find('.') else {
            return t.to_string();
        };
        let end = t[dot..]
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .map_or(t.len(), |i| dot + i);
        let frac = t[dot + 1..end].trim_end_matches('0');
        let sep = if frac.is_empty() { "" } else { "." };
        format!("{}{sep}{frac}{}", &t[..dot], &t[end..])
    }
}
