//! Store errors.

/// What can go wrong in a store operation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// There is no object at the key.
    #[error("{key} not found")]
    NotFound {
        /// The key asked for.
        key: String,
    },
    /// An object already exists at the key.
    #[error("{key} already exists")]
    AlreadyExists {
        /// The key asked for.
        key: String,
    },
    /// The object's revision is not the expected one.
    #[error("{key} was modified: expected revision {expected}, current revision {actual}")]
    Conflict {
        /// The key asked for.
        key: String,
        /// The revision the caller expected.
        expected: u64,
        /// The object's current revision.
        actual: u64,
    },
    /// The events after the asked revision are no longer retained.
    #[error("revision {requested} is too old: the oldest retained revision is {oldest}")]
    Compacted {
        /// The revision the watch asked to start after.
        requested: u64,
        /// The oldest revision still retained.
        oldest: u64,
    },
    /// A watcher fell too far behind the live events and was dropped.
    #[error("watch on {prefix} fell behind the live events")]
    Lagged {
        /// The watched prefix.
        prefix: String,
    },
    /// The SQLite database failed.
    #[error("sqlite store {path}: {source}")]
    Sqlite {
        /// The database file.
        path: String,
        /// The cause.
        #[source]
        source: rusqlite::Error,
    },
    /// The blocking worker of the store went away.
    #[error("store worker failed: {0}")]
    Worker(String),
}
