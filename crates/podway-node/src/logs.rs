//! Reading CRI container log files (`<timestamp> <stream> <P|F>[:tags] <content>` lines) and
//! turning them back into the container's output, with the kubelet's log options.
use std::{
    collections::VecDeque,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    time::Duration,
};

use bytes::Bytes;
use chrono::{DateTime, FixedOffset, SecondsFormat, Utc};
use tokio::{
    fs::File,
    io::{AsyncBufReadExt, AsyncSeekExt, BufReader},
    sync::mpsc,
};

/// How often a follower looks for new lines.
const FOLLOW_POLL: Duration = Duration::from_millis(250);

/// The kubelet's log options (`v1.PodLogOptions` minus container/previous selection).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct LogOptions {
    /// Keep reading while the container runs.
    pub follow: bool,
    /// Prefix every record with its timestamp (fixed 9-digit form).
    pub timestamps: bool,
    /// Only the last N records.
    pub tail_lines: Option<u64>,
    /// Skip records older than this.
    pub since: Option<DateTime<Utc>>,
    /// Stop after this many output bytes.
    pub limit_bytes: Option<u64>,
}

/// One parsed record of a CRI log file.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Record<'a> {
    /// When the runtime wrote it.
    pub timestamp: DateTime<FixedOffset>,
    /// `false` for a partial record (`P`): the content continues in the next record.
    pub full: bool,
    /// The bytes, without the line terminator.
    pub content: &'a [u8],
}

/// Parses one line (with or without its trailing `\n`); `None` when it is not a CRI record.
pub(crate) fn parse_line(line: &[u8]) -> Option<Record<'_>> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let mut parts = line.splitn(4, |b| *b == b' ');
    let ts = std::str::from_utf8(parts.next()?).ok()?;
    let timestamp = DateTime::parse_from_rfc3339(ts).ok()?;
    let stream = parts.next()?;
    if stream != b"stdout" && stream != b"stderr" {
        return None;
    }
    let tags = parts.next()?;
    let full = match tags.split(|b| *b == b':').next()? {
        b"F" => true,
        b"P" => false,
        _ => return None,
    };
    let content = parts.next().unwrap_or(b"");
    Some(Record {
        timestamp,
        full,
        content,
    })
}

/// The output bytes of one record: optional timestamp prefix, content, `\n` for a full record.
pub(crate) fn render(record: &Record<'_>, timestamps: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(record.content.len() + 32);
    if timestamps {
        out.extend_from_slice(
            record
                .timestamp
                .to_rfc3339_opts(SecondsFormat::Nanos, true)
                .as_bytes(),
        );
        out.push(b' ');
    }
    out.extend_from_slice(record.content);
    if record.full {
        out.push(b'\n');
    }
    out
}

/// Applies `since` and the byte limit to records and hands the output on.
struct Emitter {
    options: LogOptions,
    remaining: Option<u64>,
    sink: mpsc::Sender<Bytes>,
}

impl Emitter {
    /// Emits one raw line; returns `false` once nothing more may be sent (limit reached or the
    /// receiver is gone).
    async fn line(&mut self, line: &[u8]) -> bool {
        let Some(record) = parse_line(line) else {
            return true;
        };
        if let Some(since) = self.options.since
            && record.timestamp < since
        {
            return true;
        }
        let mut out = render(&record, self.options.timestamps);
        if let Some(remaining) = self.remaining.as_mut() {
            let keep = usize::try_from(*remaining).unwrap_or(usize::MAX);
            out.truncate(keep);
            *remaining -= out.len() as u64;
        }
        if !out.is_empty() && self.sink.send(Bytes::from(out)).await.is_err() {
            return false;
        }
        self.remaining != Some(0)
    }
}

/// The open log file and the bytes of a line not yet terminated.
struct Cursor {
    path: PathBuf,
    reader: BufReader<File>,
    ino: u64,
    pending: Vec<u8>,
}

impl Cursor {
    async fn open(path: &Path) -> std::io::Result<Self> {
        let file = File::open(path).await?;
        let ino = file.metadata().await?.ino();
        Ok(Self {
            path: path.to_path_buf(),
            reader: BufReader::new(file),
            ino,
            pending: Vec::new(),
        })
    }

    /// The next complete line, or `None` at the end of what has been written so far (a partial
    /// last line stays pending until its `\n` arrives).
    async fn next_line(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        self.reader.read_until(b'\n', &mut self.pending).await?;
        if self.pending.last() == Some(&b'\n') {
            Ok(Some(std::mem::take(&mut self.pending)))
        } else {
            Ok(None)
        }
    }

    /// `true` when the path now names another file or the file shrank (rotation).
    async fn rotated(&mut self) -> bool {
        let Ok(meta) = tokio::fs::metadata(&self.path).await else {
            return false;
        };
        let position = self.reader.stream_position().await.unwrap_or(0);
        meta.ino() != self.ino || meta.len() < position
    }
}

/// Streams the log file at `path` to `sink` according to `options`. With `follow`, it keeps
/// polling for new lines (reopening the path when the file is rotated) until `running` reports
/// that the container stopped, then drains what is left. Ends early when `sink` closes.
pub(crate) async fn stream<F, Fut>(
    path: &Path,
    options: LogOptions,
    sink: mpsc::Sender<Bytes>,
    running: F,
) -> std::io::Result<()>
where
    F: Fn() -> Fut,
    Fut: Future<Output = bool>,
{
    let mut cursor = Cursor::open(path).await?;
    let mut emitter = Emitter {
        remaining: options.limit_bytes,
        options,
        sink,
    };
    // The existing content, reduced to its last N records when asked.
    if let Some(n) = emitter.options.tail_lines {
        let mut last: VecDeque<Vec<u8>> = VecDeque::new();
        while let Some(line) = cursor.next_line().await? {
            if n == 0 {
                continue;
            }
            if last.len() as u64 == n {
                last.pop_front();
            }
            last.push_back(line);
        }
        for line in last {
            if !emitter.line(&line).await {
                return Ok(());
            }
        }
    } else {
        while let Some(line) = cursor.next_line().await? {
            if !emitter.line(&line).await {
                return Ok(());
            }
        }
    }
    if !emitter.options.follow {
        return Ok(());
    }
    loop {
        while let Some(line) = cursor.next_line().await? {
            if !emitter.line(&line).await {
                return Ok(());
            }
        }
        if cursor.rotated().await {
            tracing::debug!(path = %path.display(), "log file rotated, reopening");
            cursor = Cursor::open(path).await?;
            continue;
        }
        if !running().await {
            // The container stopped: whatever it wrote last is already in the file.
            while let Some(line) = cursor.next_line().await? {
                if !emitter.line(&line).await {
                    return Ok(());
                }
            }
            return Ok(());
        }
        if emitter.sink.is_closed() {
            return Ok(());
        }
        tokio::time::sleep(FOLLOW_POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    };

    use super::*;

    const SAMPLE: &str = "\
2016-10-06T00:17:09.669794202Z stdout P log content 1
2016-10-06T00:17:09.669794203Z stderr F log content 2
2016-10-06T00:17:10Z stdout F third
garbage line
2016-10-06T00:17:11.5+02:00 stdout F:x:y fourth
2016-10-06T00:17:12.000000001Z stdout F 
";

    async fn collect(path: &Path, options: LogOptions) -> String {
        let (tx, mut rx) = mpsc::channel(64);
        let reader = stream(path, options, tx, || async { false });
        let (result, out) = tokio::join!(reader, async {
            let mut out = Vec::new();
            while let Some(chunk) = rx.recv().await {
                out.extend_from_slice(&chunk);
            }
            out
        });
        assert!(result.is_ok(), "{result:?}");
        String::from_utf8(out).unwrap_or_default()
    }

    fn sample_file() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("0.log");
        std::fs::write(&path, SAMPLE).expect("write log");
        (dir, path)
    }

    #[test]
    fn parses_records_leniently() {
        let r = parse_line(b"2016-10-06T00:17:09.669794202Z stdout P log content 1\n");
        let r = r.expect("record");
        assert!(!r.full);
        assert_eq!(r.content, b"log content 1");
        let r = parse_line(b"2016-10-06T00:17:11.5+02:00 stderr F:foo x y").expect("record");
        assert!(r.full);
        assert_eq!(r.content, b"x y");
        assert_eq!(
            parse_line(b"2016-10-06T00:17:11Z stdout F").map(|r| r.content),
            Some(&b""[..])
        );
        assert!(parse_line(b"2016-10-06T00:17:11Z console F x").is_none());
        assert!(parse_line(b"2016-10-06T00:17:11Z stdout X x").is_none());
        assert!(parse_line(b"not a timestamp stdout F x").is_none());
    }

    #[test]
    fn renders_fixed_nine_digit_timestamps() {
        let r = parse_line(b"2016-10-06T00:17:10Z stdout F third").expect("record");
        assert_eq!(render(&r, true), b"2016-10-06T00:17:10.000000000Z third\n");
        let r = parse_line(b"2016-10-06T00:17:11.5+02:00 stdout P x").expect("record");
        assert_eq!(render(&r, true), b"2016-10-06T00:17:11.500000000+02:00 x");
    }

    #[tokio::test]
    async fn reconstructs_output() {
        let (_dir, path) = sample_file();
        let out = collect(&path, LogOptions::default()).await;
        assert_eq!(out, "log content 1log content 2\nthird\nfourth\n\n");
    }

    #[tokio::test]
    async fn tail_counts_records() {
        let (_dir, path) = sample_file();
        let opts = LogOptions {
            tail_lines: Some(2),
            ..Default::default()
        };
        assert_eq!(collect(&path, opts).await, "fourth\n\n");
        let opts = LogOptions {
            tail_lines: Some(0),
            ..Default::default()
        };
        assert_eq!(collect(&path, opts).await, "");
    }

    #[tokio::test]
    async fn since_and_limit() {
        let (_dir, path) = sample_file();
        let since = DateTime::parse_from_rfc3339("2016-10-06T00:17:10Z")
            .expect("time")
            .with_timezone(&Utc);
        let opts = LogOptions {
            since: Some(since),
            ..Default::default()
        };
        // 00:17:11.5+02:00 is 22:17:11.5 the day before: skipped.
        assert_eq!(collect(&path, opts).await, "third\n\n");
        let opts = LogOptions {
            limit_bytes: Some(20),
            timestamps: true,
            ..Default::default()
        };
        assert_eq!(collect(&path, opts).await, "2016-10-06T00:17:09.");
    }

    #[tokio::test]
    async fn follows_until_the_container_stops() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("0.log");
        std::fs::write(
            &path,
            "2024-01-01T00:00:00Z stdout F one\n2024-01-01T00:00:01Z stdout P tw",
        )
        .expect("write");
        let running = Arc::new(AtomicBool::new(true));
        let (tx, mut rx) = mpsc::channel(64);
        let flag = running.clone();
        let p = path.clone();
        let reader = tokio::spawn(async move {
            let opts = LogOptions {
                follow: true,
                ..Default::default()
            };
            stream(&p, opts, tx, move || {
                let f = flag.clone();
                async move { f.load(Ordering::SeqCst) }
            })
            .await
        });
        assert_eq!(rx.recv().await.as_deref(), Some(&b"one\n"[..]));
        // Finish the partial line, then add one more record, then stop the container.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .expect("open");
        std::io::Write::write_all(&mut f, b"o\n2024-01-01T00:00:02Z stdout F three\n")
            .expect("append");
        assert_eq!(rx.recv().await.as_deref(), Some(&b"two"[..]));
        assert_eq!(rx.recv().await.as_deref(), Some(&b"three\n"[..]));
        running.store(false, Ordering::SeqCst);
        assert_eq!(rx.recv().await, None);
        assert!(matches!(reader.await, Ok(Ok(()))));
    }

    #[tokio::test]
    async fn follow_reopens_a_rotated_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("0.log");
        std::fs::write(&path, "2024-01-01T00:00:00Z stdout F old\n").expect("write");
        let running = Arc::new(AtomicBool::new(true));
        let (tx, mut rx) = mpsc::channel(64);
        let flag = running.clone();
        let p = path.clone();
        let reader = tokio::spawn(async move {
            let opts = LogOptions {
                follow: true,
                ..Default::default()
            };
            stream(&p, opts, tx, move || {
                let f = flag.clone();
                async move { f.load(Ordering::SeqCst) }
            })
            .await
        });
        assert_eq!(rx.recv().await.as_deref(), Some(&b"old\n"[..]));
        std::fs::rename(&path, dir.path().join("0.log.1")).expect("rotate");
        std::fs::write(&path, "2024-01-01T00:00:01Z stdout F new\n").expect("write");
        assert_eq!(rx.recv().await.as_deref(), Some(&b"new\n"[..]));
        running.store(false, Ordering::SeqCst);
        assert_eq!(rx.recv().await, None);
        assert!(matches!(reader.await, Ok(Ok(()))));
    }
}
