//! Content-addressed image store.
use std::path::Path;

use crate::Result;

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

/// The image store under `DATA/images` (blobs by digest, an index of names).
pub struct ImageStore {
    _private: (),
}

#[allow(unused_variables)]
impl ImageStore {
    /// Every image.
    pub fn list(&self) -> Result<Vec<Image>> { todo!() }
    /// An image by name (normalised like docker: `busybox` = `docker.io/library/busybox:latest`),
    /// by id, or by digest reference; `None` if absent.
    pub fn get(&self, reference: &str) -> Result<Option<Image>> { todo!() }
    /// Removes an image's name(s); refuses when a container uses it.
    pub fn remove(&self, reference: &str) -> Result<()> { todo!() }
    /// Imports an OCI image archive (a tar of an OCI layout), naming it `name` when given (else
    /// the layout's `org.opencontainers.image.ref.name`). Safe while a runtime uses the store.
    pub fn import_archive(&self, archive: &Path, name: Option<&str>) -> Result<Image> { todo!() }
}

/// Opens the image store of a data dir without a running runtime (for `podway image import`).
pub fn open_store(data_dir: &Path) -> Result<ImageStore> { let _ = data_dir; todo!() }
