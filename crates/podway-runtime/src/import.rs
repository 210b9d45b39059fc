//! `podway image import`: OCI layout archives, docker-save archives (`manifest.json` + config +
//! layer tars) and plain rootfs tarballs (one layer, a generated config; a name is required).
//! The archive may be gzip-compressed.
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::images::{Image, ImageStore, Manifest};
use crate::reference::Reference;
use crate::util::io_ctx;
use crate::{Error, Result};

/// One image of a docker-save `manifest.json`.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerImage {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// A file of the archive kept aside: its digest, size and copy.
struct Staged {
    digest: String,
    size: u64,
    path: PathBuf,
}

/// Removes the staging folder however the import ends.
struct StagingDir(PathBuf);

impl Drop for StagingDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";

/// What an import is doing, for a progress bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportEvent {
    /// `done` of the archive's `total` bytes read (verified and stored as it goes).
    Read {
        /// Bytes read so far.
        done: u64,
        /// The archive's size.
        total: u64,
    },
    /// The archive is read; the image is being stored and its layers unpacked into snapshots.
    Storing,
}

/// Receives [`ImportEvent`]s.
pub type ImportProgress<'a> = &'a (dyn Fn(ImportEvent) + Sync);

/// Reports `Read` events at most every this many bytes.
const REPORT_EVERY: u64 = 1 << 20;

/// A file that reports how much of it was read.
struct CountingReader<'a> {
    file: std::fs::File,
    done: u64,
    reported: u64,
    total: u64,
    progress: ImportProgress<'a>,
}

impl Read for CountingReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read(buf)?;
        self.done += n as u64;
        if self.done - self.reported >= REPORT_EVERY || (n == 0 && self.done != self.reported) {
            self.reported = self.done;
            (self.progress)(ImportEvent::Read {
                done: self.done,
                total: self.total,
            });
        }
        Ok(n)
    }
}

/// Opens `path`, decompressing it if it is gzip.
fn open_maybe_gzip(path: &Path) -> std::io::Result<Box<dyn Read>> {
    open_reporting(path, &|_| {})
}

/// Opens `path`, decompressing it if it is gzip, and reports the bytes read from the file.
fn open_reporting<'a>(
    path: &Path,
    progress: ImportProgress<'a>,
) -> std::io::Result<Box<dyn Read + 'a>> {
    let file = std::fs::File::open(path)?;
    let total = file.metadata()?.len();
    let mut reader = BufReader::new(CountingReader {
        file,
        done: 0,
        reported: 0,
        total,
        progress,
    });
    let gzip = reader.fill_buf()?.starts_with(&[0x1f, 0x8b]);
    Ok(if gzip {
        Box::new(flate2::read::GzDecoder::new(reader))
    } else {
        Box::new(reader)
    })
}

/// Whether an archive member may be a docker-save config or layer worth keeping aside.
fn docker_candidate(path: &Path) -> bool {
    let name = path.to_string_lossy();
    path.components().count() <= 2
        && (name.ends_with(".json") || name.ends_with(".tar") || name.ends_with(".tar.gz"))
}

impl ImageStore {
    /// Imports an image archive: an OCI layout (`index.json`; the image named `name`, else by
    /// its `org.opencontainers.image.ref.name`), a docker-save archive (`manifest.json`; named
    /// `name`, else by its first `RepoTags`), or, with `name`, a plain rootfs tarball. Safe
    /// while a runtime uses the store.
    pub fn import_archive(&self, archive: &Path, name: Option<&str>) -> Result<Image> {
        self.import_archive_reporting(archive, name, &|_| {})
    }

    /// [`ImageStore::import_archive`], reporting its progress to `progress`.
    pub fn import_archive_reporting(
        &self,
        archive: &Path,
        name: Option<&str>,
        progress: ImportProgress<'_>,
    ) -> Result<Image> {
        let what = || format!("importing {}", archive.display());
        let input = open_reporting(archive, progress).map_err(io_ctx(what()))?;
        // Held for the whole import so that garbage collection never sees its blobs unnamed.
        let _lock = self.lock()?;
        self.import_locked(archive, input, name, progress)
            .map_err(|e| {
                // Blobs and snapshots of a failed import are named by no image.
                self.drop_unnamed();
                match e {
                    Error::Io { context, source } if !context.starts_with("importing ") => {
                        Error::Io {
                            context: format!("{}: {context}", what()),
                            source,
                        }
                    }
                    e => e,
                }
            })
    }

    /// [`ImageStore::import_archive_reporting`] once the archive is open and the lock held.
    fn import_locked(
        &self,
        archive: &Path,
        input: Box<dyn Read + '_>,
        name: Option<&str>,
        progress: ImportProgress<'_>,
    ) -> Result<Image> {
        let what = || format!("importing {}", archive.display());
        let staging = StagingDir(
            self.ingest_dir()
                .join(format!("import-{}", rand::random::<u64>())),
        );
        crate::util::create_dir_all(&staging.0)?;
        let mut tar = tar::Archive::new(input);
        let (mut index_json, mut docker_json) = (None, None);
        let mut staged: Vec<(PathBuf, Staged)> = Vec::new();
        for entry in tar.entries().map_err(io_ctx(what()))? {
            let mut entry = entry.map_err(io_ctx(what()))?;
            if !entry.header().entry_type().is_file() {
                continue;
            }
            let path = entry.path().map_err(io_ctx(what()))?.into_owned();
            let path = path.strip_prefix("./").unwrap_or(&path).to_path_buf();
            if path == Path::new("index.json") || path == Path::new("manifest.json") {
                let mut bytes = Vec::new();
                entry.read_to_end(&mut bytes).map_err(io_ctx(what()))?;
                let slot = if path == Path::new("index.json") {
                    &mut index_json
                } else {
                    &mut docker_json
                };
                *slot = Some(bytes);
            } else if let Ok(blob) = path.strip_prefix("blobs/sha256") {
                let hex = blob.to_string_lossy().into_owned();
                self.write_blob(&format!("sha256:{hex}"), &mut entry)?;
            } else if docker_candidate(&path) {
                let copy = staging.0.join(staged.len().to_string());
                staged.push((path, stage(&mut entry, &copy).map_err(io_ctx(what()))?));
            }
        }
        progress(ImportEvent::Storing);
        if let Some(index_json) = index_json {
            let layout: Manifest = serde_json::from_slice(&index_json).map_err(|e| {
                Error::InvalidArgument(format!("{}: bad index.json: {e}", archive.display()))
            })?;
            let (tagged, manifest) = self.pick_manifest(archive, &layout, name)?;
            return self.name_image(&tagged, &manifest);
        }
        if let Some(docker_json) = docker_json {
            return self.import_docker(archive, &docker_json, &staged, name);
        }
        drop(staged);
        match name {
            Some(name) => self.import_rootfs(archive, name),
            None => Err(Error::InvalidArgument(format!(
                "{} is neither an OCI layout nor a docker-save archive (no index.json or \
                 manifest.json); to import it as a plain rootfs tarball, name it with --name",
                archive.display()
            ))),
        }
    }

    /// The docker-save image named `name` (or the only one) of `manifest.json`.
    fn import_docker(
        &self,
        archive: &Path,
        docker_json: &[u8],
        staged: &[(PathBuf, Staged)],
        name: Option<&str>,
    ) -> Result<Image> {
        let bad = |why: String| Error::InvalidArgument(format!("{}: {why}", archive.display()));
        let images: Vec<DockerImage> = serde_json::from_slice(docker_json)
            .map_err(|e| bad(format!("bad manifest.json: {e}")))?;
        let tags = |i: &DockerImage| -> Vec<String> {
            i.repo_tags
                .iter()
                .flatten()
                .filter_map(|t| Reference::parse(t).ok()?.tagged())
                .collect()
        };
        let wanted = name.map(Reference::parse).transpose()?;
        let chosen: Vec<&DockerImage> = match &wanted {
            Some(w) if images.len() > 1 => images
                .iter()
                .filter(|i| w.tagged().is_some_and(|t| tags(i).contains(&t)))
                .collect(),
            _ => images.iter().collect(),
        };
        let [image] = chosen.as_slice() else {
            return Err(bad(format!(
                "holds {} matching images in manifest.json; name one of its RepoTags",
                chosen.len()
            )));
        };
        let tagged = match &wanted {
            Some(w) => w.tagged(),
            None => tags(image).into_iter().next(),
        }
        .ok_or_else(|| bad("the image has no tag; pass a name".to_string()))?;
        let find = |member: &str| {
            let member = Path::new(member.strip_prefix("./").unwrap_or(member));
            staged
                .iter()
                .find(|(p, _)| p == member)
                .map(|(_, s)| s)
                .ok_or_else(|| bad(format!("{} is missing", member.display())))
        };
        let config = find(&image.config)?;
        let mut layers = Vec::new();
        for layer in &image.layers {
            let s = find(layer)?;
            let gzip = std::fs::File::open(&s.path)
                .and_then(|mut f| {
                    let mut magic = [0u8; 2];
                    f.read_exact(&mut magic).map(|()| magic == [0x1f, 0x8b])
                })
                .unwrap_or(false);
            let media_type = if gzip {
                "application/vnd.docker.image.rootfs.diff.tar.gzip"
            } else {
                "application/vnd.docker.image.rootfs.diff.tar"
            };
            layers.push((s, media_type));
        }
        let descriptor = |s: &Staged, media_type: &str| serde_json::json!({"mediaType": media_type, "digest": s.digest, "size": s.size});
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": descriptor(config, DOCKER_CONFIG),
            "layers": layers.iter().map(|(s, t)| descriptor(s, t)).collect::<Vec<_>>(),
        });
        for s in std::iter::once(config).chain(layers.iter().map(|(s, _)| *s)) {
            let dest = self.blob_path(&s.digest)?;
            if !dest.is_file() {
                std::fs::rename(&s.path, &dest)
                    .or_else(|_| std::fs::copy(&s.path, &dest).map(|_| ()))
                    .map_err(io_ctx(format!("storing blob {}", s.digest)))?;
            }
        }
        self.store_manifest(&tagged, &manifest)
    }

    /// A plain rootfs tarball as a one-layer image named `name`.
    fn import_rootfs(&self, archive: &Path, name: &str) -> Result<Image> {
        let what = || format!("importing {}", archive.display());
        let tagged = Reference::parse(name)?
            .tagged()
            .ok_or_else(|| Error::InvalidArgument(format!("{name:?}: a tag is needed")))?;
        let mut raw = std::fs::File::open(archive).map_err(io_ctx(what()))?;
        let mut hasher = Sha256::new();
        let size = std::io::copy(&mut raw, &mut HashWriter(&mut hasher)).map_err(io_ctx(what()))?;
        let digest = format!("sha256:{}", hex::encode(hasher.finalize()));
        let mut tar = open_maybe_gzip(archive).map_err(io_ctx(what()))?;
        let mut diff = Sha256::new();
        std::io::copy(&mut tar, &mut HashWriter(&mut diff)).map_err(io_ctx(what()))?;
        let diff_id = format!("sha256:{}", hex::encode(diff.finalize()));
        let mut raw = std::fs::File::open(archive).map_err(io_ctx(what()))?;
        self.write_blob(&digest, &mut raw)?;
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        }))
        .map_err(|e| Error::InvalidArgument(format!("image config: {e}")))?;
        let config_digest = format!("sha256:{}", hex::encode(Sha256::digest(&config)));
        self.write_blob(&config_digest, &mut &config[..])?;
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config.len()},
            "layers": [{
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": digest,
                "size": size,
            }],
        });
        // Naming unpacks the layer: a broken tarball fails here, not at container start.
        self.store_manifest(&tagged, &manifest)
    }

    /// Writes a generated manifest and names it.
    fn store_manifest(&self, tagged: &str, manifest: &serde_json::Value) -> Result<Image> {
        let bytes = serde_json::to_vec(manifest)
            .map_err(|e| Error::InvalidArgument(format!("manifest: {e}")))?;
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));
        self.write_blob(&digest, &mut &bytes[..])?;
        self.name_image(tagged, &digest)
    }
}

/// Copies `reader` to `dest`, hashing it.
fn stage(reader: &mut dyn Read, dest: &Path) -> std::io::Result<Staged> {
    let mut file = std::fs::File::create(dest)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        file.write_all(&buf[..n])?;
        size += n as u64;
    }
    Ok(Staged {
        digest: format!("sha256:{}", hex::encode(hasher.finalize())),
        size,
        path: dest.to_path_buf(),
    })
}

/// A writer that only hashes.
struct HashWriter<'a>(&'a mut Sha256);

impl Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
