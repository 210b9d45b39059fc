//! Behaviour of the SQLite store: CRUD, preconditions, watch replay + live streaming.

use futures::StreamExt;
use podway_store::{Error, EventKind, SqliteStore, Store};

fn open(dir: &tempfile::TempDir) -> SqliteStore {
    match SqliteStore::open(&dir.path().join("store.db")) {
        Ok(s) => s,
        Err(e) => panic!("open store: {e}"),
    }
}

#[tokio::test]
async fn crud_and_revisions() -> Result<(), Error> {
    let dir = tempfile::tempdir().map_err(|e| Error::Worker(e.to_string()))?;
    let store = open(&dir);
    assert_eq!(store.current_revision().await?, 0);
    let r1 = store
        .create("/pods/default/a", b"{\"a\":1}".to_vec())
        .await?;
    let r2 = store
        .create("/pods/default/b", b"{\"b\":1}".to_vec())
        .await?;
    store.create("/pods/other/c", b"{}".to_vec()).await?;
    assert!(r2 > r1);
    let got = store.get("/pods/default/a").await?;
    assert_eq!(
        got.map(|kv| (kv.value, kv.revision)),
        Some((b"{\"a\":1}".to_vec(), r1))
    );
    assert!(store.get("/pods/default/zz").await?.is_none());

    let list = store.list("/pods/default/").await?;
    let keys: Vec<_> = list.items.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(keys, ["/pods/default/a", "/pods/default/b"]);
    assert_eq!(list.revision, store.current_revision().await?);
    assert_eq!(store.list("/pods/").await?.items.len(), 3);

    let r4 = store
        .update("/pods/default/a", b"{\"a\":2}".to_vec(), Some(r1))
        .await?;
    assert!(r4 > r2);
    let deleted = store.delete("/pods/default/a", None).await?;
    assert_eq!(deleted.value, b"{\"a\":2}".to_vec());
    assert!(store.get("/pods/default/a").await?.is_none());
    Ok(())
}

#[tokio::test]
async fn conflicts_and_missing_objects() -> Result<(), Error> {
    let dir = tempfile::tempdir().map_err(|e| Error::Worker(e.to_string()))?;
    let store = open(&dir);
    let r1 = store.create("/nodes/n1", b"{}".to_vec()).await?;
    assert!(matches!(
        store.create("/nodes/n1", b"{}".to_vec()).await,
        Err(Error::AlreadyExists { .. })
    ));
    store
        .update("/nodes/n1", b"{\"x\":1}".to_vec(), Some(r1))
        .await?;
    assert!(matches!(
        store.update("/nodes/n1", b"{}".to_vec(), Some(r1)).await,
        Err(Error::Conflict { expected, .. }) if expected == r1
    ));
    assert!(matches!(
        store.delete("/nodes/n1", Some(r1)).await,
        Err(Error::Conflict { .. })
    ));
    assert!(matches!(
        store.update("/nodes/none", b"{}".to_vec(), None).await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        store.delete("/nodes/none", None).await,
        Err(Error::NotFound { .. })
    ));
    Ok(())
}

#[tokio::test]
async fn watch_replays_history_then_streams_live() -> Result<(), Error> {
    let dir = tempfile::tempdir().map_err(|e| Error::Worker(e.to_string()))?;
    let store = open(&dir);
    let r1 = store.create("/pods/default/a", b"1".to_vec()).await?;
    store.create("/nodes/n1", b"n".to_vec()).await?;
    store.update("/pods/default/a", b"2".to_vec(), None).await?;

    let mut watch = store.watch("/pods/", r1 - 1).await?;
    let first = watch.next().await.transpose()?;
    assert_eq!(
        first.map(|e| (e.kind, e.value)),
        Some((EventKind::Added, b"1".to_vec()))
    );
    let second = watch.next().await.transpose()?;
    assert_eq!(
        second.map(|e| (e.kind, e.value)),
        Some((EventKind::Modified, b"2".to_vec()))
    );

    store.create("/nodes/n2", b"n".to_vec()).await?;
    let deleted = store.delete("/pods/default/a", None).await?;
    let third = watch.next().await.transpose()?;
    assert_eq!(
        third.map(|e| (e.kind, e.key, e.value, e.revision)),
        Some((
            EventKind::Deleted,
            "/pods/default/a".into(),
            b"2".to_vec(),
            deleted.revision
        ))
    );
    Ok(())
}

#[tokio::test]
async fn watch_from_a_trimmed_revision_is_compacted() -> Result<(), Error> {
    let dir = tempfile::tempdir().map_err(|e| Error::Worker(e.to_string()))?;
    let store = SqliteStore::open_with_history(&dir.path().join("s.db"), 2)?;
    for i in 0..5 {
        store.create(&format!("/k/{i}"), b"{}".to_vec()).await?;
    }
    assert!(matches!(
        store.watch("/k/", 0).await,
        Err(Error::Compacted { .. })
    ));
    // Revisions 1..=5 are /k/0../k/4; history keeps revisions 4 and 5.
    let mut watch = store.watch("/k/", 3).await?;
    let ev = watch.next().await.transpose()?;
    assert_eq!(ev.map(|e| e.key), Some("/k/3".to_string()));
    Ok(())
}

#[tokio::test]
async fn data_survives_reopen() -> Result<(), Error> {
    let dir = tempfile::tempdir().map_err(|e| Error::Worker(e.to_string()))?;
    let rev = {
        let store = open(&dir);
        store.create("/namespaces/default", b"{}".to_vec()).await?
    };
    let store = open(&dir);
    assert_eq!(store.current_revision().await?, rev);
    assert!(store.get("/namespaces/default").await?.is_some());
    Ok(())
}
