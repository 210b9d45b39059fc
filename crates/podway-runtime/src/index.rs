//! In-memory copies of the container and sandbox records, keyed by id: the runtime reads these
//! instead of the files, and every write of a record goes through both (file first, then here).
use std::collections::HashMap;
use std::sync::RwLock;

/// Records of one kind by id.
pub(crate) struct Index<T> {
    map: RwLock<HashMap<String, T>>,
}

impl<T> Default for Index<T> {
    fn default() -> Self {
        Index {
            map: RwLock::new(HashMap::new()),
        }
    }
}

impl<T: Clone> Index<T> {
    /// A copy of record `id`.
    pub(crate) fn get(&self, id: &str) -> Option<T> {
        self.read().get(id).cloned()
    }

    /// Copies of every record (in no particular order).
    pub(crate) fn all(&self) -> Vec<T> {
        self.read().values().cloned().collect()
    }

    /// Stores (or replaces) record `id`.
    pub(crate) fn put(&self, id: &str, record: T) {
        self.write().insert(id.to_string(), record);
    }

    /// Changes record `id` in place, if it is there.
    pub(crate) fn update(&self, id: &str, change: impl FnOnce(&mut T)) {
        if let Some(record) = self.write().get_mut(id) {
            change(record);
        }
    }

    /// Forgets record `id`.
    pub(crate) fn remove(&self, id: &str) {
        self.write().remove(id);
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, T>> {
        // A panic while holding the lock leaves a map that is still whole (single inserts).
        self.map
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, T>> {
        self.map
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_get_update_remove() {
        let index = Index::default();
        index.put("a", 1);
        index.put("b", 2);
        index.update("a", |v| *v += 10);
        index.update("missing", |v| *v += 10);
        assert_eq!(index.get("a"), Some(11));
        let mut all = index.all();
        all.sort();
        assert_eq!(all, [2, 11]);
        index.remove("a");
        assert_eq!(index.get("a"), None);
    }
}
