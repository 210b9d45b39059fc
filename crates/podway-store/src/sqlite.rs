//! The embedded SQLite backend.
//!
//! Tables: `objects` (current state), `events` (the change log, trimmed to a bounded number of
//! rows, used to replay a watch from an older revision) and `meta` (the global revision and the
//! highest trimmed revision). Live changes go to watchers through a tokio broadcast channel that is
//! fed while the database lock is held, so that a new watcher sees each change exactly once.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use tokio::sync::broadcast;

use crate::{Error, Event, EventKind, EventStream, KeyValue, ListResult, Store};

/// How many change events are kept for watches that start at an older revision, by default.
pub const DEFAULT_HISTORY: u64 = 10_000;

/// How many live events a slow watcher may fall behind before it is dropped.
const LIVE_BUFFER: usize = 4096;

/// A [`Store`] in one SQLite file (WAL mode).
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    conn: Mutex<Connection>,
    live: broadcast::Sender<Event>,
    history: u64,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`, keeping [`DEFAULT_HISTORY`] events.
    pub fn open(path: &Path) -> Result<Self, Error> {
        Self::open_with_history(path, DEFAULT_HISTORY)
    }

    /// Opens (creating if needed) the database at `path`, keeping the last `history` events
    /// (at least one) for watches from older revisions.
    pub fn open_with_history(path: &Path, history: u64) -> Result<Self, Error> {
        let sql_err = |source| Error::Sqlite {
            path: path.display().to_string(),
            source,
        };
        let conn = Connection::open(path).map_err(sql_err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(sql_err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(sql_err)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS objects (
                 key TEXT PRIMARY KEY, value BLOB NOT NULL, revision INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS events (
                 revision INTEGER PRIMARY KEY, key TEXT NOT NULL, kind INTEGER NOT NULL,
                 value BLOB NOT NULL);
             CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
             INSERT OR IGNORE INTO meta (name, value) VALUES ('revision', 0), ('compacted', 0);",
        )
        .map_err(sql_err)?;
        let (live, _) = broadcast::channel(LIVE_BUFFER);
        Ok(Self {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                conn: Mutex::new(conn),
                live,
                history: history.max(1),
            }),
        })
    }

    /// Runs `f` with the connection on a blocking thread.
    fn blocking<T, F>(&self, f: F) -> BoxFuture<'static, Result<T, Error>>
    where
        T: Send + 'static,
        F: FnOnce(&Inner, &mut Connection) -> Result<T, Error> + Send + 'static,
    {
        let inner = self.inner.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                let mut conn = inner.lock()?;
                f(&inner, &mut conn)
            })
            .await
            .map_err(|e| Error::Worker(e.to_string()))?
        }
        .boxed()
    }
}

impl Inner {
    fn lock(&self) -> Result<MutexGuard<'_, Connection>, Error> {
        self.conn
            .lock()
            .map_err(|_| Error::Worker("the database lock was poisoned".into()))
    }

    fn sql(&self, source: rusqlite::Error) -> Error {
        Error::Sqlite {
            path: self.path.display().to_string(),
            source,
        }
    }

    /// Records one change in a transaction: bumps the revision, writes the event, applies `apply`,
    /// trims the history, commits and then publishes the event to live watchers.
    fn write(
        &self,
        conn: &mut Connection,
        key: &str,
        kind: EventKind,
        value: Vec<u8>,
        apply: impl FnOnce(&Transaction<'_>, u64) -> rusqlite::Result<()>,
    ) -> Result<u64, Error> {
        let tx = conn.transaction().map_err(|e| self.sql(e))?;
        let revision = meta(&tx, "revision").map_err(|e| self.sql(e))? + 1;
        tx.execute(
            "UPDATE meta SET value = ?1 WHERE name = 'revision'",
            params![revision as i64],
        )
        .map_err(|e| self.sql(e))?;
        tx.execute(
            "INSERT INTO events (revision, key, kind, value) VALUES (?1, ?2, ?3, ?4)",
            params![revision as i64, key, kind_code(kind), value],
        )
        .map_err(|e| self.sql(e))?;
        apply(&tx, revision).map_err(|e| self.sql(e))?;
        if revision > self.history {
            let keep_after = revision - self.history;
            tx.execute(
                "DELETE FROM events WHERE revision <= ?1",
                params![keep_after as i64],
            )
            .map_err(|e| self.sql(e))?;
            tx.execute(
                "UPDATE meta SET value = MAX(value, ?1) WHERE name = 'compacted'",
                params![keep_after as i64],
            )
            .map_err(|e| self.sql(e))?;
        }
        tx.commit().map_err(|e| self.sql(e))?;
        // No receivers is not an error.
        let _ = self.live.send(Event {
            kind,
            key: key.to_string(),
            value,
            revision,
        });
        Ok(revision)
    }
}

fn meta(conn: &Connection, name: &str) -> rusqlite::Result<u64> {
    conn.query_row("SELECT value FROM meta WHERE name = ?1", [name], |r| {
        r.get::<_, i64>(0)
    })
    .map(|v| v as u64)
}

fn kind_code(kind: EventKind) -> i64 {
    match kind {
        EventKind::Added => 0,
        EventKind::Modified => 1,
        EventKind::Deleted => 2,
    }
}

fn kind_from_code(code: i64) -> EventKind {
    match code {
        0 => EventKind::Added,
        1 => EventKind::Modified,
        _ => EventKind::Deleted,
    }
}

/// The smallest string greater than every string starting with `prefix` (None: no bound).
fn prefix_end(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        if let Some(next) = char::from_u32(last as u32 + 1) {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// Reads the current object and its revision.
fn current(conn: &Connection, key: &str) -> rusqlite::Result<Option<(Vec<u8>, u64)>> {
    conn.query_row(
        "SELECT value, revision FROM objects WHERE key = ?1",
        [key],
        |r| Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, i64>(1)? as u64)),
    )
    .optional()
}

/// Checks an optional revision precondition against the object's current state.
fn check_current(
    inner: &Inner,
    conn: &Connection,
    key: &str,
    expected: Option<u64>,
) -> Result<Vec<u8>, Error> {
    let Some((value, actual)) = current(conn, key).map_err(|e| inner.sql(e))? else {
        return Err(Error::NotFound { key: key.into() });
    };
    match expected {
        Some(expected) if expected != actual => Err(Error::Conflict {
            key: key.into(),
            expected,
            actual,
        }),
        _ => Ok(value),
    }
}

impl Store for SqliteStore {
    fn get(&self, key: &str) -> BoxFuture<'_, Result<Option<KeyValue>, Error>> {
        let key = key.to_string();
        self.blocking(move |inner, conn| {
            let found = current(conn, &key).map_err(|e| inner.sql(e))?;
            Ok(found.map(|(value, revision)| KeyValue {
                key,
                value,
                revision,
            }))
        })
    }

    fn list(&self, prefix: &str) -> BoxFuture<'_, Result<ListResult, Error>> {
        let prefix = prefix.to_string();
        self.blocking(move |inner, conn| {
            let tx = conn.transaction().map_err(|e| inner.sql(e))?;
            let revision = meta(&tx, "revision").map_err(|e| inner.sql(e))?;
            let end = prefix_end(&prefix).unwrap_or_else(|| char::MAX.to_string());
            let items = {
                let mut stmt = tx
                    .prepare(
                        "SELECT key, value, revision FROM objects
                         WHERE key >= ?1 AND key < ?2 ORDER BY key",
                    )
                    .map_err(|e| inner.sql(e))?;
                stmt.query_map(params![prefix, end], |r| {
                    Ok(KeyValue {
                        key: r.get(0)?,
                        value: r.get(1)?,
                        revision: r.get::<_, i64>(2)? as u64,
                    })
                })
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .map_err(|e| inner.sql(e))?
            };
            Ok(ListResult { items, revision })
        })
    }

    fn create(&self, key: &str, value: Vec<u8>) -> BoxFuture<'_, Result<u64, Error>> {
        let key = key.to_string();
        self.blocking(move |inner, conn| {
            if current(conn, &key).map_err(|e| inner.sql(e))?.is_some() {
                return Err(Error::AlreadyExists { key });
            }
            let stored = value.clone();
            inner.write(conn, &key, EventKind::Added, value, |tx, rev| {
                tx.execute(
                    "INSERT INTO objects (key, value, revision) VALUES (?1, ?2, ?3)",
                    params![key, stored, rev as i64],
                )
                .map(drop)
            })
        })
    }

    fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected_revision: Option<u64>,
    ) -> BoxFuture<'_, Result<u64, Error>> {
        let key = key.to_string();
        self.blocking(move |inner, conn| {
            check_current(inner, conn, &key, expected_revision)?;
            let stored = value.clone();
            inner.write(conn, &key, EventKind::Modified, value, |tx, rev| {
                tx.execute(
                    "UPDATE objects SET value = ?2, revision = ?3 WHERE key = ?1",
                    params![key, stored, rev as i64],
                )
                .map(drop)
            })
        })
    }

    fn delete(
        &self,
        key: &str,
        expected_revision: Option<u64>,
    ) -> BoxFuture<'_, Result<KeyValue, Error>> {
        let key = key.to_string();
        self.blocking(move |inner, conn| {
            let value = check_current(inner, conn, &key, expected_revision)?;
            let revision =
                inner.write(conn, &key, EventKind::Deleted, value.clone(), |tx, _| {
                    tx.execute("DELETE FROM objects WHERE key = ?1", [&key])
                        .map(drop)
                })?;
            Ok(KeyValue {
                key,
                value,
                revision,
            })
        })
    }

    fn watch(&self, prefix: &str, from_revision: u64) -> BoxFuture<'_, Result<EventStream, Error>> {
        let prefix = prefix.to_string();
        let history_prefix = prefix.clone();
        let setup = self.blocking(move |inner, conn| {
            // Subscribing under the lock: every change after the history read arrives live.
            let live = inner.live.subscribe();
            let compacted = meta(conn, "compacted").map_err(|e| inner.sql(e))?;
            if from_revision < compacted {
                return Err(Error::Compacted {
                    requested: from_revision,
                    oldest: compacted + 1,
                });
            }
            let end = prefix_end(&history_prefix).unwrap_or_else(|| char::MAX.to_string());
            let mut stmt = conn
                .prepare(
                    "SELECT revision, key, kind, value FROM events
                     WHERE revision > ?1 AND key >= ?2 AND key < ?3 ORDER BY revision",
                )
                .map_err(|e| inner.sql(e))?;
            let history = stmt
                .query_map(params![from_revision as i64, history_prefix, end], |r| {
                    Ok(Event {
                        revision: r.get::<_, i64>(0)? as u64,
                        key: r.get(1)?,
                        kind: kind_from_code(r.get(2)?),
                        value: r.get(3)?,
                    })
                })
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .map_err(|e| inner.sql(e))?;
            Ok((history, live))
        });
        async move {
            let (history, live) = setup.await?;
            let last = history.last().map_or(from_revision, |e| e.revision);
            let live = futures::stream::unfold(Some(live), move |state| {
                let prefix = prefix.clone();
                async move {
                    let mut live = state?;
                    loop {
                        match live.recv().await {
                            Ok(ev) if ev.revision > last && ev.key.starts_with(&prefix) => {
                                return Some((Ok(ev), Some(live)));
                            }
                            Ok(_) => continue,
                            Err(broadcast::error::RecvError::Lagged(_)) => {
                                return Some((Err(Error::Lagged { prefix }), None));
                            }
                            Err(broadcast::error::RecvError::Closed) => return None,
                        }
                    }
                }
            });
            let stream: EventStream = futures::stream::iter(history.into_iter().map(Ok))
                .chain(live)
                .boxed();
            Ok(stream)
        }
        .boxed()
    }

    fn current_revision(&self) -> BoxFuture<'_, Result<u64, Error>> {
        self.blocking(|inner, conn| meta(conn, "revision").map_err(|e| inner.sql(e)))
    }
}

#[cfg(test)]
mod tests {
    use super::prefix_end;

    #[test]
    fn prefix_end_bounds_the_prefix() {
        assert_eq!(prefix_end("/pods/").as_deref(), Some("/pods0"));
        assert_eq!(prefix_end(""), None);
    }
}
