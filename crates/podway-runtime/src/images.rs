//! Content-addressed image store.
//!
//! Layout under `DATA/images`: `blobs/sha256/<hex>` (every blob verified against its digest and
//! written through a temporary file and a rename) and `index.json`, a map of normalised names to
//! manifest digests, rewritten atomically under `index.lock` and re-read on every lookup so that
//! `podway image import` in another process is seen by a running runtime. Layers are unpacked
//! once each into `DATA/snapshots/<hex>/` (overlayfs whiteouts).
use std::collections::BTreeMap;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::reference::Reference;
use crate::util::{create_dir_all, io_ctx, read_json, write_json};
use crate::{Error, Result};

/// An image in the store.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Image {
    /// Image id: digest of its config blob (`sha256:…`).
    pub id: String,
    /// Names (`docker.io/library/busybox:1.35`).
    pub repo_tags: Vec<String>,
    /// Names by manifest digest (`docker.io/library/busybox@sha256:…`).
    pub repo_digests: Vec<String>,
    /// Total size of its layers in bytes.
    pub size: u64,
    /// Default user from the image config.
    pub user: String,
}

/// What a garbage collection deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Blobs (manifests, configs, layers).
    pub blobs: usize,
    /// Unpacked layer snapshots.
    pub snapshots: usize,
}

/// The image store under `DATA/images` (blobs by digest, an index of names).
#[derive(Debug, Clone)]
pub struct ImageStore {
    root: PathBuf,
    snapshots: PathBuf,
    containers: PathBuf,
    /// The last [`ImageStore::list`], with the identity of the `index.json` it was read from.
    listed: std::sync::Arc<std::sync::Mutex<Option<Listed>>>,
}

/// What tells one `index.json` from another: it is only ever replaced by a rename, so a new
/// version is a new inode (mtime and size are checked as well); `None` = no index yet.
type IndexStamp = Option<(u64, u64, i64, i64, u64)>;

/// A remembered listing and the index it came from.
type Listed = (IndexStamp, Vec<Image>);

/// The process defaults of an image config (`config` of the OCI image configuration).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ImageProcess {
    /// `User`.
    #[serde(default)]
    pub user: Option<String>,
    /// `Env` (`K=V`).
    #[serde(default)]
    pub env: Option<Vec<String>>,
    /// `Entrypoint`.
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    /// `Cmd`.
    #[serde(default)]
    pub cmd: Option<Vec<String>>,
    /// `WorkingDir`.
    #[serde(default)]
    pub working_dir: Option<String>,
}

/// An image resolved for running a container.
pub(crate) struct ResolvedImage {
    /// The image as listed.
    pub image: Image,
    /// Its process defaults.
    pub process: ImageProcess,
    /// Snapshot folders of its layers, bottom first.
    pub layers: Vec<PathBuf>,
}

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Index {
    /// Normalised name ⇒ manifest digest.
    names: BTreeMap<String, String>,
}

#[derive(Debug, serde::Deserialize)]
pub(crate) struct Descriptor {
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    pub digest: String,
    #[serde(default)]
    pub size: u64,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    #[serde(default)]
    platform: Option<Platform>,
}

#[derive(Debug, serde::Deserialize)]
struct Platform {
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    os: String,
}

/// An image manifest or an index (the fields of both, all optional).
#[derive(Debug, serde::Deserialize)]
pub(crate) struct Manifest {
    #[serde(default)]
    pub config: Option<Descriptor>,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
}

#[derive(Debug, Default, serde::Deserialize)]
struct ImageConfigBlob {
    #[serde(default)]
    config: Option<ImageProcess>,
}

/// What one manifest says about its image.
struct ManifestSummary {
    id: String,
    size: u64,
    layers: Vec<String>,
}

pub(crate) const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// The manifest digest for this machine's platform (linux/amd64 on x86_64) in the image index
/// `index` (digest `index_digest`, for the error).
pub(crate) fn platform_entry(index: &Manifest, index_digest: &str) -> Result<String> {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    index
        .manifests
        .iter()
        .find(|d| {
            d.platform
                .as_ref()
                .is_some_and(|p| p.os == "linux" && p.architecture == arch)
        })
        .map(|d| d.digest.clone())
        .ok_or_else(|| {
            Error::NotFound(format!(
                "a linux/{arch} manifest in image index {index_digest}"
            ))
        })
}

/// Opens the image store of a data dir without a running runtime (for `podway image import`).
pub fn open_store(data_dir: &Path) -> Result<ImageStore> {
    let store = ImageStore {
        root: data_dir.join("images"),
        snapshots: data_dir.join("snapshots"),
        containers: data_dir.join("containers"),
        listed: Default::default(),
    };
    create_dir_all(&store.root.join("blobs").join("sha256"))?;
    create_dir_all(&store.snapshots)?;
    Ok(store)
}

/// The hex part of a `sha256:<hex>` digest.
pub(crate) fn digest_hex(digest: &str) -> Result<&str> {
    match digest.strip_prefix("sha256:") {
        Some(hex)
            if hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) =>
        {
            Ok(hex)
        }
        _ => Err(Error::InvalidArgument(format!(
            "unsupported digest {digest:?}"
        ))),
    }
}

impl ImageStore {
    /// Every image. The answer is kept until `index.json` changes (blobs never change), so
    /// repeated calls cost one `stat`; changes by other processes (an import) are seen too.
    pub fn list(&self) -> Result<Vec<Image>> {
        use std::os::unix::fs::MetadataExt as _;
        let path = self.root.join("index.json");
        let stamp: IndexStamp = match std::fs::metadata(&path) {
            Ok(m) => Some((m.dev(), m.ino(), m.mtime(), m.mtime_nsec(), m.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_ctx(format!("reading {}", path.display()))(e)),
        };
        let cache = || {
            self.listed
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        };
        if let Some((seen, images)) = cache().as_ref()
            && *seen == stamp
        {
            return Ok(images.clone());
        }
        let images = self.list_uncached()?;
        *cache() = Some((stamp, images.clone()));
        Ok(images)
    }

    fn list_uncached(&self) -> Result<Vec<Image>> {
        let index = self.read_index()?;
        let mut by_id: BTreeMap<String, Image> = BTreeMap::new();
        for (name, manifest) in &index.names {
            let summary = match self.summarise(manifest) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(image = %name, error = %e, "skipping unreadable image");
                    continue;
                }
            };
            let image = match by_id.get_mut(&summary.id) {
                Some(image) => image,
                None => {
                    let user = self.process_of(&summary.id)?.user.unwrap_or_default();
                    by_id.entry(summary.id.clone()).or_insert(Image {
                        id: summary.id.clone(),
                        repo_tags: Vec::new(),
                        repo_digests: Vec::new(),
                        size: summary.size,
                        user,
                    })
                }
            };
            image.repo_tags.push(name.clone());
            let repository = name.rsplit_once(':').map_or(name.as_str(), |(r, _)| r);
            let by_digest = format!("{repository}@{manifest}");
            if !image.repo_digests.contains(&by_digest) {
                image.repo_digests.push(by_digest);
            }
        }
        Ok(by_id.into_values().collect())
    }

    /// An image by name (normalised like docker: `busybox` = `docker.io/library/busybox:latest`),
    /// by id, or by digest reference; `None` if absent.
    pub fn get(&self, reference: &str) -> Result<Option<Image>> {
        let images = self.list()?;
        let id = if reference.len() == 64 && reference.bytes().all(|b| b.is_ascii_hexdigit()) {
            Some(format!("sha256:{reference}"))
        } else if reference.starts_with("sha256:") {
            Some(reference.to_string())
        } else {
            None
        };
        if let Some(id) = id {
            return Ok(images.into_iter().find(|i| i.id == id));
        }
        let parsed = Reference::parse(reference)?;
        let found = match (&parsed.digest, parsed.tagged()) {
            (Some(digest), _) => {
                let wanted = format!("{}@{digest}", parsed.repository);
                images
                    .into_iter()
                    .find(|i| i.repo_digests.contains(&wanted))
            }
            (None, Some(tagged)) => images.into_iter().find(|i| i.repo_tags.contains(&tagged)),
            (None, None) => None,
        };
        Ok(found)
    }

    /// Removes an image's name(s); refuses when a container uses it.
    pub fn remove(&self, reference: &str) -> Result<()> {
        let Some(image) = self.get(reference)? else {
            return Err(Error::NotFound(format!("image {reference:?}")));
        };
        if let Some(container) = self.container_using(&image.id)? {
            return Err(Error::FailedPrecondition(format!(
                "image {reference:?} is in use by container {container}"
            )));
        }
        let _lock = self.lock()?;
        let mut index = self.read_index()?;
        index
            .names
            .retain(|name, _| !image.repo_tags.contains(name));
        write_json(&self.root.join("index.json"), &index)?;
        tracing::info!(image = %reference, id = %image.id, "removed image");
        self.collect_garbage(&index).map(drop)
    }

    /// Unpacks the layers of the stored manifest `manifest` and names it `tagged` (a normalised
    /// `repository:tag`); garbage-collects what a moved name left unnamed. Called with the lock.
    pub(crate) fn name_image(&self, tagged: &str, manifest: &str) -> Result<Image> {
        let tagged = tagged.to_string();
        let manifest = manifest.to_string();
        let summary = self.summarise(&manifest)?;
        self.unpack_layers(&summary.layers, &tagged)?;
        let mut index = self.read_index()?;
        index.names.insert(tagged.clone(), manifest.clone());
        write_json(&self.root.join("index.json"), &index)?;
        tracing::info!(image = %tagged, id = %summary.id, "stored image");
        // A name moved to a new image may leave the old one unnamed.
        self.collect_garbage(&index)?;
        self.get(&tagged)?
            .ok_or_else(|| Error::NotFound(format!("image {tagged:?} after import")))
    }

    /// Resolves an image for a container: its process defaults and unpacked layers.
    pub(crate) fn resolve(&self, reference: &str) -> Result<ResolvedImage> {
        let image = self.get(reference)?.ok_or_else(|| {
            let name = Reference::parse(reference)
                .ok()
                .and_then(|r| r.tagged())
                .unwrap_or_else(|| reference.to_string());
            Error::NotFound(format!("image {name:?}"))
        })?;
        let manifest = image
            .repo_digests
            .first()
            .and_then(|d| d.rsplit_once('@'))
            .map(|(_, digest)| digest.to_string())
            .ok_or_else(|| Error::NotFound(format!("manifest of image {reference:?}")))?;
        let summary = self.summarise(&manifest)?;
        let layers = self.unpack_layers(&summary.layers, reference)?;
        let process = self.process_of(&image.id)?;
        Ok(ResolvedImage {
            image,
            process,
            layers,
        })
    }

    /// Chooses the manifest of an archive's `index.json` and the name to store it under.
    pub(crate) fn pick_manifest(
        &self,
        archive: &Path,
        layout: &Manifest,
        name: Option<&str>,
    ) -> Result<(String, String)> {
        let bad = |why: String| Error::InvalidArgument(format!("{}: {why}", archive.display()));
        let candidates: Vec<&Descriptor> = match name {
            Some(name) if layout.manifests.len() > 1 => {
                let wanted = Reference::parse(name)?;
                layout
                    .manifests
                    .iter()
                    .filter(|d| {
                        d.annotations.get(REF_NAME).is_some_and(|r| {
                            Some(r) == wanted.tag.as_ref()
                                || Reference::parse(r).ok().as_ref() == Some(&wanted)
                        })
                    })
                    .collect()
            }
            _ => layout.manifests.iter().collect(),
        };
        let [descriptor] = candidates.as_slice() else {
            return Err(bad(format!(
                "holds {} matching images; name one that is annotated with {REF_NAME}",
                candidates.len()
            )));
        };
        let tagged = match name {
            Some(name) => Reference::parse(name)?,
            None => {
                let ref_name = descriptor
                    .annotations
                    .get(REF_NAME)
                    .ok_or_else(|| bad("the image has no name; pass one".to_string()))?;
                if !ref_name.contains(['/', ':']) {
                    return Err(bad(format!(
                        "the image is named only by the tag {ref_name:?}; pass a full name"
                    )));
                }
                Reference::parse(ref_name)?
            }
        }
        .tagged()
        .ok_or_else(|| bad("a name with a tag is needed to import".to_string()))?;
        let manifest = self.platform_manifest(descriptor)?;
        Ok((tagged, manifest))
    }

    /// The linux/amd64 manifest digest behind `descriptor` (itself, unless it is an index).
    fn platform_manifest(&self, descriptor: &Descriptor) -> Result<String> {
        let is_index = descriptor.media_type.contains("image.index")
            || descriptor.media_type.contains("manifest.list");
        if !is_index {
            return Ok(descriptor.digest.clone());
        }
        let index: Manifest = self.read_blob_json(&descriptor.digest)?;
        platform_entry(&index, &descriptor.digest)
    }

    /// Reads a manifest and checks its blobs are present.
    fn summarise(&self, manifest_digest: &str) -> Result<ManifestSummary> {
        let manifest: Manifest = self.read_blob_json(manifest_digest)?;
        let config = manifest.config.ok_or_else(|| {
            Error::InvalidArgument(format!("manifest {manifest_digest} has no config"))
        })?;
        for d in std::iter::once(&config).chain(&manifest.layers) {
            if !self.blob_path(&d.digest)?.is_file() {
                return Err(Error::NotFound(format!(
                    "blob {} of manifest {manifest_digest}",
                    d.digest
                )));
            }
        }
        Ok(ManifestSummary {
            id: config.digest,
            size: manifest.layers.iter().map(|l| l.size).sum(),
            layers: manifest.layers.into_iter().map(|l| l.digest).collect(),
        })
    }

    /// The process defaults of the image config `config_digest`.
    fn process_of(&self, config_digest: &str) -> Result<ImageProcess> {
        let config: ImageConfigBlob = self.read_blob_json(config_digest)?;
        Ok(config.config.unwrap_or_default())
    }

    /// Unpacks the layers of image `image` into snapshots (once each); returns their folders,
    /// bottom first.
    fn unpack_layers(&self, layers: &[String], image: &str) -> Result<Vec<PathBuf>> {
        layers
            .iter()
            .map(|digest| {
                let hex = digest_hex(digest)?;
                let blob = self.blob_path(digest)?;
                let layer = format!("layer {digest} of image {image:?}");
                crate::snapshots::ensure_unpacked(&self.snapshots, hex, &blob, &layer)
            })
            .collect()
    }

    /// Where partial downloads live (`DATA/images/ingest`, outside garbage collection's reach).
    pub(crate) fn ingest_dir(&self) -> PathBuf {
        self.root.join("ingest")
    }

    /// Whether the blob `digest` is stored.
    pub(crate) fn has_blob(&self, digest: &str) -> Result<bool> {
        Ok(self.blob_path(digest)?.is_file())
    }

    /// Stores a pulled image: `blobs` (digest ⇒ verified file under [`Self::ingest_dir`], moved
    /// into the store), the manifest bytes, and the name `tagged`. Takes the lock.
    pub(crate) fn commit_pull(
        &self,
        tagged: &str,
        manifest_digest: &str,
        manifest: &[u8],
        blobs: &[(String, PathBuf)],
    ) -> Result<Image> {
        let _lock = self.lock()?;
        let committed = (|| {
            for (digest, file) in blobs {
                let dest = self.blob_path(digest)?;
                if !dest.is_file() {
                    std::fs::rename(file, &dest)
                        .map_err(io_ctx(format!("storing blob {digest}")))?;
                }
            }
            self.write_blob(manifest_digest, &mut &manifest[..])?;
            self.name_image(tagged, manifest_digest)
        })();
        if committed.is_err() {
            self.drop_unnamed();
        }
        committed
    }

    /// After a failed import or pull, with the lock held: deletes the blobs and snapshots it
    /// stored that no image names (a failure here is only logged: the first error matters).
    pub(crate) fn drop_unnamed(&self) {
        let dropped = self
            .read_index()
            .and_then(|index| self.collect_garbage(&index));
        match dropped {
            Ok(p) => tracing::debug!(
                blobs = p.blobs,
                snapshots = p.snapshots,
                "dropped what a failed import stored"
            ),
            Err(e) => tracing::warn!(error = %e, "cleaning up after a failed import"),
        }
    }

    pub(crate) fn blob_path(&self, digest: &str) -> Result<PathBuf> {
        Ok(self
            .root
            .join("blobs")
            .join("sha256")
            .join(digest_hex(digest)?))
    }

    fn read_blob_json<T: serde::de::DeserializeOwned>(&self, digest: &str) -> Result<T> {
        let path = self.blob_path(digest)?;
        let bytes = std::fs::read(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::NotFound(format!("blob {digest}")),
            _ => io_ctx(format!("reading blob {digest}"))(e),
        })?;
        serde_json::from_slice(&bytes)
            .map_err(|e| Error::InvalidArgument(format!("blob {digest} is not valid JSON: {e}")))
    }

    /// Stores a blob read from `reader`, verifying its digest.
    pub(crate) fn write_blob(&self, digest: &str, reader: &mut dyn Read) -> Result<()> {
        let path = self.blob_path(digest)?;
        if path.is_file() {
            return Ok(());
        }
        let dir = self.root.join("blobs").join("sha256");
        let tmp = dir.join(format!(".tmp-{}", rand::random::<u64>()));
        let result = (|| {
            let mut file =
                std::fs::File::create(&tmp).map_err(io_ctx(format!("writing blob {digest}")))?;
            let mut hasher = Sha256::new();
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = reader
                    .read(&mut buf)
                    .map_err(io_ctx(format!("reading blob {digest}")))?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                std::io::Write::write_all(&mut file, &buf[..n])
                    .map_err(io_ctx(format!("writing blob {digest}")))?;
            }
            file.sync_all()
                .map_err(io_ctx(format!("writing blob {digest}")))?;
            let actual = format!("sha256:{}", hex::encode(hasher.finalize()));
            if actual != digest {
                return Err(Error::InvalidArgument(format!(
                    "blob {digest} has digest {actual}"
                )));
            }
            std::fs::rename(&tmp, &path).map_err(io_ctx(format!("storing blob {digest}")))
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }

    fn read_index(&self) -> Result<Index> {
        Ok(read_json(&self.root.join("index.json"))?.unwrap_or_default())
    }

    /// Takes the store's exclusive lock (`index.lock`, an `flock` released when the file closes);
    /// every change of the index or the blobs happens under it.
    pub(crate) fn lock(&self) -> Result<std::fs::File> {
        let lock_path = self.root.join("index.lock");
        let lock = std::fs::File::create(&lock_path)
            .map_err(io_ctx(format!("opening {}", lock_path.display())))?;
        // SAFETY: flock on a descriptor we own; released when `lock` is closed.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(io_ctx(format!("locking {}", lock_path.display()))(
                std::io::Error::last_os_error(),
            ));
        }
        Ok(lock)
    }

    /// Garbage collection: deletes blobs no named image refers to and snapshots neither a named
    /// image nor a container uses.
    pub fn prune(&self) -> Result<Pruned> {
        let _lock = self.lock()?;
        let index = self.read_index()?;
        self.collect_garbage(&index)
    }

    /// Deletes blobs no named image refers to, and snapshots neither a named image nor a
    /// container uses. Called with the lock held.
    fn collect_garbage(&self, index: &Index) -> Result<Pruned> {
        let mut pruned = Pruned::default();
        let mut blobs = std::collections::BTreeSet::new();
        let mut snapshots = std::collections::BTreeSet::new();
        for manifest in index.names.values() {
            blobs.insert(digest_hex(manifest)?.to_string());
            let summary = self.summarise(manifest)?;
            blobs.insert(digest_hex(&summary.id)?.to_string());
            for layer in &summary.layers {
                blobs.insert(digest_hex(layer)?.to_string());
                snapshots.insert(digest_hex(layer)?.to_string());
            }
        }
        for record in self.container_records()? {
            let layers = record.get("layers").and_then(|l| l.as_array()).cloned();
            for layer in layers.unwrap_or_default() {
                if let Some(hex) = layer.as_str() {
                    snapshots.insert(hex.to_string());
                }
            }
        }
        let blob_dir = self.root.join("blobs").join("sha256");
        for (dir, keep) in [(&blob_dir, &blobs), (&self.snapshots, &snapshots)] {
            let entries =
                std::fs::read_dir(dir).map_err(io_ctx(format!("listing {}", dir.display())))?;
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if keep.contains(&name) {
                    continue;
                }
                let path = entry.path();
                let removed = if path.is_dir() {
                    crate::util::remove_dir_all(&path)
                } else {
                    std::fs::remove_file(&path)
                        .map_err(io_ctx(format!("removing {}", path.display())))
                };
                match removed {
                    Ok(()) => {
                        tracing::debug!(path = %path.display(), "garbage collected");
                        if std::ptr::eq(dir, &blob_dir) {
                            pruned.blobs += 1;
                        } else {
                            pruned.snapshots += 1;
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "garbage collection"),
                }
            }
        }
        Ok(pruned)
    }

    /// The records (`container.json`) of every container, as JSON.
    fn container_records(&self) -> Result<Vec<serde_json::Value>> {
        let entries = match std::fs::read_dir(&self.containers) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_ctx(format!("listing {}", self.containers.display()))(e)),
        };
        let mut out = Vec::new();
        for entry in entries.flatten() {
            if let Some(record) = read_json(&entry.path().join("container.json"))? {
                out.push(record);
            }
        }
        Ok(out)
    }

    /// A container (by id) whose record names the image `id`.
    fn container_using(&self, id: &str) -> Result<Option<String>> {
        Ok(self
            .container_records()?
            .into_iter()
            .find(|r| r.get("image_id").and_then(|v| v.as_str()) == Some(id))
            .and_then(|r| r.get("id").and_then(|v| v.as_str()).map(str::to_string)))
    }
}
