//! `runtime.v1.ImageService` over the runtime's image store.
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_server::ImageService;
use podway_runtime::Runtime;
use podway_runtime::images::Image;
use tonic::{Request, Response, Status};

use crate::convert;
use crate::error::status;

type Reply<T> = Result<Response<T>, Status>;

/// The ImageService: list, inspect and remove stored images.
pub(crate) struct CriImages {
    runtime: Runtime,
    /// The folder holding the image store, reported by `ImageFsInfo`.
    images_dir: PathBuf,
}

impl CriImages {
    /// A service over the image store of `runtime`, kept under `images_dir`.
    pub(crate) fn new(runtime: Runtime, images_dir: PathBuf) -> CriImages {
        CriImages {
            runtime,
            images_dir,
        }
    }

    /// Looks `spec` up in the store.
    async fn find(&self, spec: Option<cri::ImageSpec>) -> Result<(String, Option<Image>), Status> {
        let reference = spec.map(|s| s.image).unwrap_or_default();
        if reference.is_empty() {
            return Err(Status::invalid_argument(
                "image reference must not be empty",
            ));
        }
        let runtime = self.runtime.clone();
        let lookup = reference.clone();
        let image = blocking(move || runtime.images().get(&lookup)).await?;
        Ok((reference, image))
    }
}

/// Runs a (file-system bound) image store call off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> podway_runtime::Result<T> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Status::internal(format!("image store task failed: {e}")))?
        .map_err(status)
}

/// Bytes and inodes used below `dir` (not following symlinks); a missing folder uses nothing.
fn disk_usage(dir: &Path) -> std::io::Result<(u64, u64)> {
    let mut bytes = 0;
    let mut inodes = 0;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let meta = entry.metadata()?;
            inodes += 1;
            bytes += meta.len();
            if meta.is_dir() {
                pending.push(entry.path());
            }
        }
    }
    Ok((bytes, inodes))
}

#[tonic::async_trait]
impl ImageService for CriImages {
    async fn list_images(
        &self,
        request: Request<cri::ListImagesRequest>,
    ) -> Reply<cri::ListImagesResponse> {
        let filter = request
            .into_inner()
            .filter
            .and_then(|f| f.image)
            .map(|i| i.image)
            .filter(|i| !i.is_empty());
        let images = match filter {
            Some(reference) => {
                let (_, image) = self
                    .find(Some(cri::ImageSpec {
                        image: reference,
                        ..Default::default()
                    }))
                    .await?;
                image.into_iter().collect()
            }
            None => {
                let runtime = self.runtime.clone();
                blocking(move || runtime.images().list()).await?
            }
        };
        Ok(Response::new(cri::ListImagesResponse {
            images: images.iter().map(convert::image).collect(),
        }))
    }

    async fn image_status(
        &self,
        request: Request<cri::ImageStatusRequest>,
    ) -> Reply<cri::ImageStatusResponse> {
        let (_, image) = self.find(request.into_inner().image).await?;
        // The CRI: an absent image is a response without image, not an error.
        Ok(Response::new(cri::ImageStatusResponse {
            image: image.as_ref().map(convert::image),
            ..Default::default()
        }))
    }

    async fn pull_image(
        &self,
        request: Request<cri::PullImageRequest>,
    ) -> Reply<cri::PullImageResponse> {
        let (reference, image) = self.find(request.into_inner().image).await?;
        match image {
            Some(image) => Ok(Response::new(cri::PullImageResponse {
                image_ref: image.id,
            })),
            None => Err(Status::not_found(format!(
                "image {reference:?} is not present and pulling is not implemented yet \
                 (import it with `podway image import`)"
            ))),
        }
    }

    async fn remove_image(
        &self,
        request: Request<cri::RemoveImageRequest>,
    ) -> Reply<cri::RemoveImageResponse> {
        let (reference, image) = self.find(request.into_inner().image).await?;
        if image.is_none() {
            // The CRI: removing an absent image succeeds.
            return Ok(Response::new(cri::RemoveImageResponse {}));
        }
        let runtime = self.runtime.clone();
        match blocking(move || runtime.images().remove(&reference)).await {
            Err(err) if err.code() != tonic::Code::NotFound => Err(err),
            _ => Ok(Response::new(cri::RemoveImageResponse {})),
        }
    }

    async fn image_fs_info(
        &self,
        _request: Request<cri::ImageFsInfoRequest>,
    ) -> Reply<cri::ImageFsInfoResponse> {
        let dir = self.images_dir.clone();
        let (bytes, inodes) = tokio::task::spawn_blocking(move || disk_usage(&dir))
            .await
            .map_err(|e| Status::internal(format!("image usage task failed: {e}")))?
            .map_err(|e| {
                Status::internal(format!(
                    "measuring the image store {}: {e}",
                    self.images_dir.display()
                ))
            })?;
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
        Ok(Response::new(cri::ImageFsInfoResponse {
            image_filesystems: vec![cri::FilesystemUsage {
                timestamp,
                fs_id: Some(cri::FilesystemIdentifier {
                    mountpoint: self.images_dir.to_string_lossy().into_owned(),
                }),
                used_bytes: Some(cri::UInt64Value { value: bytes }),
                inodes_used: Some(cri::UInt64Value { value: inodes }),
            }],
            container_filesystems: Vec::new(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_usage_counts_files_and_folders() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/a"), b"12345").unwrap();
        let (bytes, inodes) = disk_usage(dir.path()).unwrap();
        assert_eq!(inodes, 2);
        assert!(bytes >= 5);
        assert_eq!(disk_usage(&dir.path().join("missing")).unwrap(), (0, 0));
    }
}
