//! `runtime.v1.ImageService` over the runtime's image store.
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_server::ImageService;
use podway_runtime::Runtime;
use podway_runtime::images::Image;
use podway_runtime::pull::{self, PullOptions, RegistryCredentials};
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

/// The registry credentials of a CRI `AuthConfig`: a registry token as a bearer token, else a
/// user name and password, else `auth` (base64 of `user:password`), else none.
fn credentials(auth: Option<cri::AuthConfig>) -> Result<RegistryCredentials, Status> {
    let Some(auth) = auth else {
        return Ok(RegistryCredentials::Anonymous);
    };
    if !auth.registry_token.is_empty() {
        return Ok(RegistryCredentials::Bearer(auth.registry_token));
    }
    if !auth.username.is_empty() {
        return Ok(RegistryCredentials::Basic {
            username: auth.username,
            password: auth.password,
        });
    }
    if !auth.auth.is_empty() {
        use base64::Engine as _;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.auth.trim())
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or_else(|| Status::invalid_argument("auth is not base64 of user:password"))?;
        let (username, password) = decoded
            .split_once(':')
            .ok_or_else(|| Status::invalid_argument("auth does not decode to user:password"))?;
        return Ok(RegistryCredentials::Basic {
            username: username.to_owned(),
            password: password.to_owned(),
        });
    }
    if !auth.identity_token.is_empty() {
        return Err(Status::invalid_argument(
            "identity_token (an OAuth refresh token) is not supported by podway; \
             give registry_token or username and password",
        ));
    }
    Ok(RegistryCredentials::Anonymous)
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
        let request = request.into_inner();
        let credentials = credentials(request.auth)?;
        let (reference, image) = self.find(request.image).await?;
        // An image already stored is not fetched again (containerd re-resolves a tag at the
        // registry; podway keeps what it has, so nodes without a registry keep working).
        if let Some(image) = image {
            return Ok(Response::new(cri::PullImageResponse {
                image_ref: image.id,
            }));
        }
        // As docker: a registry on a loopback address is spoken to over plain HTTP.
        let options = PullOptions {
            insecure_registries: pull::loopback_registry(&reference).into_iter().collect(),
            ..PullOptions::default()
        };
        tracing::info!(image = %reference, ?credentials, "pulling image");
        let image = self
            .runtime
            .pull_image_with_credentials(&reference, &options, &credentials)
            .await
            .map_err(status)?;
        Ok(Response::new(cri::PullImageResponse {
            image_ref: image.id,
        }))
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
    fn credentials_from_auth_config() {
        let basic = |u: &str, p: &str| RegistryCredentials::Basic {
            username: u.into(),
            password: p.into(),
        };
        assert_eq!(credentials(None).unwrap(), RegistryCredentials::Anonymous);
        let auth = |f: fn(&mut cri::AuthConfig)| {
            let mut a = cri::AuthConfig::default();
            f(&mut a);
            credentials(Some(a))
        };
        assert_eq!(
            auth(|a| {
                a.username = "u".into();
                a.password = "p".into();
            })
            .unwrap(),
            basic("u", "p")
        );
        // base64("user:pa:ss")
        assert_eq!(
            auth(|a| a.auth = "dXNlcjpwYTpzcw==".into()).unwrap(),
            basic("user", "pa:ss")
        );
        assert_eq!(
            auth(|a| a.registry_token = "t".into()).unwrap(),
            RegistryCredentials::Bearer("t".into())
        );
        let err = auth(|a| a.auth = "!!".into()).unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        let err = auth(|a| a.identity_token = "refresh".into()).unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert_eq!(
            auth(|_| {}).unwrap(),
            RegistryCredentials::Anonymous,
            "an empty AuthConfig"
        );
    }

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
