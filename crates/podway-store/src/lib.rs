//! Storage for the podway API server.
//!
//! One trait, [`Store`], holds JSON objects under string keys with one global, monotonically
//! increasing revision (it becomes `metadata.resourceVersion`). Every change is also an
//! [`Event`] that [`Store::watch`] can replay from an older revision and then stream live.
//! [`SqliteStore`] is the embedded backend.

mod error;
mod sqlite;

pub use error::Error;
pub use sqlite::{DEFAULT_HISTORY, SqliteStore};

use futures::future::BoxFuture;
use futures::stream::BoxStream;

/// One stored object: its key, its JSON bytes and the revision that last modified it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The object's key, e.g. `/pods/default/web`.
    pub key: String,
    /// The object's JSON bytes.
    pub value: Vec<u8>,
    /// The revision of the last change to this object.
    pub revision: u64,
}

/// What a change did to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// The object was created.
    Added,
    /// The object was updated.
    Modified,
    /// The object was deleted.
    Deleted,
}

/// One change, as seen by a watcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// What happened.
    pub kind: EventKind,
    /// The key of the object.
    pub key: String,
    /// The new value, or for [`EventKind::Deleted`] the last value before deletion.
    pub value: Vec<u8>,
    /// The revision of this change.
    pub revision: u64,
}

/// A list result: the objects under a prefix and the store revision the list was read at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListResult {
    /// The objects, ordered by key.
    pub items: Vec<KeyValue>,
    /// The store's current revision when the list was read.
    pub revision: u64,
}

/// A stream of watch events; an `Err` item ends the stream.
pub type EventStream = BoxStream<'static, Result<Event, Error>>;

/// The storage interface of the API server. Implementations must be cheap to share (`Arc`).
pub trait Store: Send + Sync + 'static {
    /// Reads the object at `key`; `Ok(None)` when there is none.
    fn get(&self, key: &str) -> BoxFuture<'_, Result<Option<KeyValue>, Error>>;

    /// Lists every object whose key starts with `prefix`.
    fn list(&self, prefix: &str) -> BoxFuture<'_, Result<ListResult, Error>>;

    /// Creates the object at `key`; [`Error::AlreadyExists`] if one is there. Returns its revision.
    fn create(&self, key: &str, value: Vec<u8>) -> BoxFuture<'_, Result<u64, Error>>;

    /// Replaces the object at `key`. With `expected_revision`, fails with [`Error::Conflict`] unless
    /// the object's current revision is that one. [`Error::NotFound`] if there is no object.
    /// Returns the new revision.
    fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected_revision: Option<u64>,
    ) -> BoxFuture<'_, Result<u64, Error>>;

    /// Deletes the object at `key` (same precondition rules as [`Store::update`]) and returns the
    /// deleted object with the revision of the deletion.
    fn delete(
        &self,
        key: &str,
        expected_revision: Option<u64>,
    ) -> BoxFuture<'_, Result<KeyValue, Error>>;

    /// Streams every change under `prefix` with a revision greater than `from_revision`: first the
    /// retained history, then live changes. [`Error::Compacted`] if that history is gone.
    fn watch(&self, prefix: &str, from_revision: u64) -> BoxFuture<'_, Result<EventStream, Error>>;

    /// The revision of the latest change.
    fn current_revision(&self) -> BoxFuture<'_, Result<u64, Error>>;
}
