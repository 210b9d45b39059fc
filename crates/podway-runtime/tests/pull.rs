//! Pulls from a real registry on loopback: Debian's `docker-registry` (started here with its own
//! config and storage), images pushed with `skopeo` from OCI layouts made offline (umoci, via
//! scripts/demo-image.sh). Needs root, docker-registry, skopeo, umoci, busybox-static.
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

#[path = "common/registry.rs"]
mod registry;

use podway_runtime::Error;
use podway_runtime::pull::{PullEvent, PullOptions};
use registry::Registry;
use sha2::Digest as _;

/// Pull options that reach `registry` over plain HTTP.
fn pull_options(registry: &Registry) -> PullOptions {
    PullOptions {
        insecure_registries: vec![registry.addr.clone()],
        ..PullOptions::default()
    }
}

fn sha(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

/// An OCI layout dir built from the demo archive, with extra images: `zstd` (the busybox layer
/// recompressed with zstd) and `multi` (an index of a bogus linux/arm64 manifest and the zstd
/// linux/amd64 one). Returns the layout dir, the amd64 config digest and the zstd layer digest.
fn layouts(dir: &Path) -> (PathBuf, String, String) {
    let archive = dir.join("demo.tar");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/demo-image.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg(&archive)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let layout = dir.join("layout");
    tar::Archive::new(std::fs::File::open(&archive).unwrap())
        .unpack(&layout)
        .unwrap();
    let blobs = layout.join("blobs/sha256");
    let read = |digest: &str| std::fs::read(blobs.join(&digest[7..])).unwrap();
    let write = |bytes: &[u8]| {
        let digest = sha(bytes);
        std::fs::write(blobs.join(&digest[7..]), bytes).unwrap();
        digest
    };
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let manifest_digest = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let manifest: serde_json::Value = serde_json::from_slice(&read(&manifest_digest)).unwrap();
    let gz_layer = read(manifest["layers"][0]["digest"].as_str().unwrap());
    let mut tar_bytes = Vec::new();
    flate2::read::GzDecoder::new(&gz_layer[..])
        .read_to_end(&mut tar_bytes)
        .unwrap();
    let zst = zstd::encode_all(&tar_bytes[..], 3).unwrap();
    let zst_digest = write(&zst);
    let mut zstd_manifest = manifest.clone();
    zstd_manifest["layers"][0] = serde_json::json!({
        "mediaType": "application/vnd.oci.image.layer.v1.tar+zstd",
        "digest": zst_digest,
        "size": zst.len(),
    });
    let zstd_bytes = serde_json::to_vec(&zstd_manifest).unwrap();
    let zstd_manifest_digest = write(&zstd_bytes);
    let config_digest = manifest["config"]["digest"].as_str().unwrap().to_string();
    let mut arm_config: serde_json::Value = serde_json::from_slice(&read(&config_digest)).unwrap();
    arm_config["architecture"] = "arm64".into();
    let arm_config = serde_json::to_vec(&arm_config).unwrap();
    let mut arm_manifest = zstd_manifest.clone();
    arm_manifest["config"]["digest"] = write(&arm_config).into();
    arm_manifest["config"]["size"] = arm_config.len().into();
    let arm_bytes = serde_json::to_vec(&arm_manifest).unwrap();
    let manifest_type = "application/vnd.oci.image.manifest.v1+json";
    let image_index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": manifest_type, "digest": write(&arm_bytes), "size": arm_bytes.len(),
             "platform": {"os": "linux", "architecture": "arm64"}},
            {"mediaType": manifest_type, "digest": zstd_manifest_digest, "size": zstd_bytes.len(),
             "platform": {"os": "linux", "architecture": "amd64"}},
        ],
    }))
    .unwrap();
    let layout_index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [
            {"mediaType": manifest_type, "digest": zstd_manifest_digest, "size": zstd_bytes.len(),
             "annotations": {"org.opencontainers.image.ref.name": "zstd"}},
            {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": write(&image_index),
             "size": image_index.len(),
             "annotations": {"org.opencontainers.image.ref.name": "multi"}},
        ],
    });
    std::fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&layout_index).unwrap(),
    )
    .unwrap();
    (archive, config_digest, zst_digest)
}

/// The snapshot folders of a data dir.
fn snapshots(data: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(data.join("snapshots"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn pulls_gzip_zstd_and_multi_arch_images_from_a_registry() {
    let registry = Registry::start();
    let work = tempfile::tempdir().unwrap();
    let (archive, amd64_config, zst_layer) = layouts(work.path());
    let layout = work.path().join("layout");
    registry.push(
        &format!("oci-archive:{}", archive.display()),
        "busybox:1.35",
        &[],
    );
    registry.push(
        &format!("oci:{}:zstd", layout.display()),
        "busybox:zstd",
        &[],
    );
    registry.push(
        &format!("oci:{}:multi", layout.display()),
        "busybox:multi",
        &["--all"],
    );

    // gzip layers, with progress reported.
    let data = work.path().join("data");
    let store = podway_runtime::images::open_store(&data).unwrap();
    let events = Arc::new(Mutex::new(Vec::new()));
    let mut options = pull_options(&registry);
    options.progress = Some({
        let events = Arc::clone(&events);
        Arc::new(move |e: &PullEvent| events.lock().unwrap().push(e.clone()))
    });
    let reference = format!("{}/busybox:1.35", registry.addr);
    let image = podway_runtime::pull::pull(&store, &reference, &options)
        .await
        .unwrap_or_else(|e| panic!("pull: {e}"));
    assert_eq!(image.repo_tags, vec![reference.clone()]);
    assert_eq!(image.id, amd64_config);
    let done = events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| matches!(e, PullEvent::Done { .. }))
        .count();
    assert_eq!(done, 2, "config and layer downloaded");
    let [snapshot] = snapshots(&data).try_into().unwrap();
    let out = Command::new(snapshot.join("bin/busybox"))
        .args(["echo", "unpacked"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "unpacked\n");
    assert!(snapshot.join("var/www/index.html").is_file());

    // Pulled again: nothing downloaded.
    events.lock().unwrap().clear();
    podway_runtime::pull::pull(&store, &reference, &options)
        .await
        .unwrap();
    assert!(
        events
            .lock()
            .unwrap()
            .iter()
            .all(|e| !matches!(e, PullEvent::Done { .. } | PullEvent::Progress { .. }))
    );

    // A zstd layer, from a store that holds half of it already (a download cut short).
    let data = work.path().join("data-zstd");
    let store = podway_runtime::images::open_store(&data).unwrap();
    let whole = std::fs::read(layout.join("blobs/sha256").join(&zst_layer[7..])).unwrap();
    let ingest = data.join("images/ingest");
    std::fs::create_dir_all(&ingest).unwrap();
    std::fs::write(ingest.join(&zst_layer[7..]), &whole[..whole.len() / 2]).unwrap();
    let image = podway_runtime::pull::pull(
        &store,
        &format!("{}/busybox:zstd", registry.addr),
        &pull_options(&registry),
    )
    .await
    .unwrap_or_else(|e| panic!("pull zstd: {e}"));
    assert_eq!(image.id, amd64_config);
    let stored = std::fs::read(data.join("images/blobs/sha256").join(&zst_layer[7..])).unwrap();
    assert_eq!(stored, whole);
    assert!(stored.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]));
    assert_eq!(std::fs::read_dir(&ingest).unwrap().count(), 0);
    let [snapshot] = snapshots(&data).try_into().unwrap();
    assert!(snapshot.join("bin/busybox").is_file());

    // A multi-arch index: the linux/amd64 image is chosen.
    let image = podway_runtime::pull::pull(
        &store,
        &format!("{}/busybox:multi", registry.addr),
        &pull_options(&registry),
    )
    .await
    .unwrap_or_else(|e| panic!("pull multi: {e}"));
    assert_eq!(image.id, amd64_config);

    // An unknown tag, and a registry spoken to over HTTPS when it talks HTTP.
    let err = podway_runtime::pull::pull(
        &store,
        &format!("{}/busybox:nope", registry.addr),
        &pull_options(&registry),
    )
    .await
    .err();
    assert!(
        matches!(&err, Some(Error::NotFound(m)) if m.contains("busybox:nope")),
        "{err:?}"
    );
    let err = podway_runtime::pull::pull(&store, &reference, &PullOptions::default())
        .await
        .err();
    assert!(
        matches!(&err, Some(Error::Io { context, .. }) if context.contains(&reference)),
        "{err:?}"
    );
    drop(registry);
}
