//! Query-string parsing for the debugging handlers.
use chrono::{DateTime, Utc};

use crate::logs::LogOptions;

/// The decoded `key=value` pairs of a query string, in order.
pub(crate) struct Query(Vec<(String, String)>);

impl Query {
    /// Decodes `query` (without the `?`).
    pub(crate) fn parse(query: Option<&str>) -> Self {
        Self(
            url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
                .into_owned()
                .collect(),
        )
    }

    /// The first value of `key`.
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `key`, in order.
    pub(crate) fn all(&self, key: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// A boolean parameter: absent, `0` and `false` are false; anything else (`1`, `true`,
    /// empty) is true.
    pub(crate) fn flag(&self, key: &str) -> bool {
        self.get(key).is_some_and(|v| v != "0" && v != "false")
    }
}

/// Which standard streams an exec/attach request wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StreamFlags {
    /// `input`.
    pub stdin: bool,
    /// `output`.
    pub stdout: bool,
    /// `error` (always off with a TTY: the terminal merges it into stdout).
    pub stderr: bool,
    /// `tty`.
    pub tty: bool,
}

impl StreamFlags {
    /// Reads `input`, `output`, `error`, `tty`; `Err` with the kubelet's message when no stream
    /// is asked for.
    pub(crate) fn from_query(q: &Query) -> Result<Self, &'static str> {
        let tty = q.flag("tty");
        let flags = Self {
            stdin: q.flag("input"),
            stdout: q.flag("output"),
            stderr: q.flag("error") && !tty,
            tty,
        };
        if !(flags.stdin || flags.stdout || q.flag("error")) {
            return Err("you must specify at least 1 of stdin, stdout, stderr");
        }
        Ok(flags)
    }
}

/// Why log options were refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum LogQueryError {
    /// A parameter could not be decoded (400).
    Malformed(String),
    /// The options decode but are not valid together (422).
    Invalid,
}

/// Log options plus `previous`, from a `containerLogs` query.
#[derive(Debug, PartialEq)]
pub(crate) struct LogQuery {
    /// The reading options.
    pub options: LogOptions,
    /// Logs of the previous container instance.
    pub previous: bool,
}

fn number(q: &Query, key: &str) -> Result<Option<i64>, LogQueryError> {
    q.get(key)
        .map(|v| {
            v.parse::<i64>().map_err(|_| {
                LogQueryError::Malformed(format!("invalid {key} {v:?}: not an integer"))
            })
        })
        .transpose()
}

impl LogQuery {
    /// Decodes the `v1.PodLogOptions` parameters (and the legacy `tail=N|all`), `now` being
    /// the reference for `sinceSeconds`.
    pub(crate) fn from_query(q: &Query, now: DateTime<Utc>) -> Result<Self, LogQueryError> {
        let mut tail = number(q, "tailLines")?;
        if tail.is_none() {
            match q.get("tail") {
                None | Some("all") | Some("") => {}
                Some(v) => {
                    tail = Some(v.parse::<i64>().map_err(|_| {
                        LogQueryError::Malformed(format!("invalid tail {v:?}: not an integer"))
                    })?)
                }
            }
        }
        let since_seconds = number(q, "sinceSeconds")?;
        let limit_bytes = number(q, "limitBytes")?;
        let since_time = q
            .get("sinceTime")
            .map(|v| {
                DateTime::parse_from_rfc3339(v)
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(|e| LogQueryError::Malformed(format!("invalid sinceTime {v:?}: {e}")))
            })
            .transpose()?;
        if tail.is_some_and(|t| t < 0)
            || limit_bytes.is_some_and(|l| l < 1)
            || since_seconds.is_some_and(|s| s < 1)
            || (since_seconds.is_some() && since_time.is_some())
        {
            return Err(LogQueryError::Invalid);
        }
        let since = since_time.or(since_seconds.map(|s| now - chrono::Duration::seconds(s)));
        Ok(Self {
            options: LogOptions {
                follow: q.flag("follow"),
                timestamps: q.flag("timestamps"),
                tail_lines: tail.map(|t| t as u64),
                since,
                limit_bytes: limit_bytes.map(|l| l as u64),
            },
            previous: q.flag("previous"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_follow_the_boolean_rules() {
        let q = Query::parse(Some(
            "command=ls&command=-l%20a&input=1&output=true&error=&tty=0",
        ));
        assert_eq!(q.all("command"), vec!["ls", "-l a"]);
        let f = StreamFlags::from_query(&q).expect("flags");
        assert_eq!(
            f,
            StreamFlags {
                stdin: true,
                stdout: true,
                stderr: true,
                tty: false
            }
        );
        let q = Query::parse(Some("output=1&error=1&tty=1"));
        let f = StreamFlags::from_query(&q).expect("flags");
        assert!(f.tty && f.stdout && !f.stderr);
        let q = Query::parse(Some("input=0&output=false&tty=1"));
        assert!(StreamFlags::from_query(&q).is_err());
        assert!(StreamFlags::from_query(&Query::parse(None)).is_err());
    }

    #[test]
    fn log_options() {
        let now = DateTime::parse_from_rfc3339("2024-01-01T00:10:00Z")
            .expect("time")
            .with_timezone(&Utc);
        let q = Query::parse(Some(
            "follow=true&sinceSeconds=600&tailLines=5&timestamps=true&limitBytes=100&previous=1",
        ));
        let l = LogQuery::from_query(&q, now).expect("options");
        assert!(l.previous);
        assert_eq!(
            l.options,
            LogOptions {
                follow: true,
                timestamps: true,
                tail_lines: Some(5),
                since: Some(now - chrono::Duration::seconds(600)),
                limit_bytes: Some(100),
            }
        );
        let q = Query::parse(Some("sinceTime=2024-01-01T00%3A00%3A00Z&tail=all"));
        let l = LogQuery::from_query(&q, now).expect("options");
        assert_eq!(
            l.options.since.map(|t| t.to_rfc3339()),
            Some("2024-01-01T00:00:00+00:00".into())
        );
        assert_eq!(l.options.tail_lines, None);
        let q = Query::parse(Some("tail=3"));
        assert_eq!(
            LogQuery::from_query(&q, now).map(|l| l.options.tail_lines),
            Ok(Some(3))
        );
        for bad in ["tailLines=x", "sinceTime=yesterday", "limitBytes=1.5"] {
            let q = Query::parse(Some(bad));
            assert!(
                matches!(
                    LogQuery::from_query(&q, now),
                    Err(LogQueryError::Malformed(_))
                ),
                "{bad}"
            );
        }
        for invalid in [
            "tailLines=-1",
            "limitBytes=0",
            "sinceSeconds=0",
            "sinceSeconds=5&sinceTime=2024-01-01T00:00:00Z",
        ] {
            let q = Query::parse(Some(invalid));
            assert_eq!(
                LogQuery::from_query(&q, now),
                Err(LogQueryError::Invalid),
                "{invalid}"
            );
        }
    }
}
