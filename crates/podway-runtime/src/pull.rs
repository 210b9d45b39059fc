//! Pulling images from OCI registries (through `oci-client`), over HTTPS or, for the registries
//! named insecure, plain HTTP.
//!
//! An image index is resolved to this machine's platform (linux/amd64 on x86_64); the config and
//! layers are fetched concurrently into `DATA/images/ingest/<hex>`, hashed while written and
//! verified against their digests; a download cut short resumes from what the ingest file holds
//! (an HTTP range request). Then, under the store's lock, the blobs move into the store, the
//! layers are unpacked (gzip, zstd or plain tar) and the name points at the manifest.
use std::path::PathBuf;
use std::sync::Arc;

use futures::{StreamExt as _, TryStreamExt as _};
use oci_client::client::{BlobResponse, ClientConfig, ClientProtocol, SizedStream};
use oci_client::manifest::{
    IMAGE_MANIFEST_LIST_MEDIA_TYPE, IMAGE_MANIFEST_MEDIA_TYPE, OCI_IMAGE_INDEX_MEDIA_TYPE,
    OCI_IMAGE_MEDIA_TYPE,
};
use oci_client::secrets::RegistryAuth;
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt as _;

use crate::images::{Image, ImageStore, Manifest, digest_hex, platform_entry};
use crate::reference::Reference;
use crate::util::io_ctx;
use crate::{Error, Result};

/// Progress reports of a pull, for a progress bar or log lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PullEvent {
    /// The manifest was found: how many blobs (config and layers) it names.
    Resolved {
        /// The manifest digest.
        manifest: String,
        /// Config and layers.
        blobs: usize,
        /// Their total size in bytes.
        total: u64,
    },
    /// A blob was already in the store.
    Cached {
        /// Its digest.
        digest: String,
        /// Its size.
        size: u64,
    },
    /// Bytes of a blob arrived.
    Progress {
        /// Its digest.
        digest: String,
        /// Bytes of it held so far (a resumed download starts above zero).
        done: u64,
        /// Its size.
        size: u64,
    },
    /// A blob was downloaded and verified.
    Done {
        /// Its digest.
        digest: String,
        /// Its size.
        size: u64,
    },
    /// The blobs are in; layers are being unpacked.
    Unpacking,
}

/// A receiver of [`PullEvent`]s (called from the pulling tasks).
pub type PullProgress = Arc<dyn Fn(&PullEvent) + Send + Sync>;

/// How to pull.
#[derive(Clone, Default)]
pub struct PullOptions {
    /// Registries (`HOST:PORT`, as written in references) spoken to over plain HTTP.
    pub insecure_registries: Vec<String>,
    /// Blobs fetched at once (0 = 3).
    pub concurrency: usize,
    /// Progress receiver.
    pub progress: Option<PullProgress>,
}

impl std::fmt::Debug for PullOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PullOptions")
            .field("insecure_registries", &self.insecure_registries)
            .field("concurrency", &self.concurrency)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

/// How to authenticate to a registry.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum RegistryCredentials {
    /// No credentials (a registry that asks for them refuses the pull).
    #[default]
    Anonymous,
    /// A user name and password: HTTP Basic, or exchanged for a token where the registry
    /// points at a token service.
    Basic {
        /// The user.
        username: String,
        /// The password.
        password: String,
    },
    /// A bearer token the registry accepts as it is.
    Bearer(String),
}

impl std::fmt::Debug for RegistryCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RegistryCredentials::Anonymous => f.write_str("Anonymous"),
            RegistryCredentials::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
            RegistryCredentials::Bearer(_) => f.write_str("Bearer(<redacted>)"),
        }
    }
}

impl RegistryCredentials {
    fn registry_auth(&self) -> RegistryAuth {
        match self {
            RegistryCredentials::Anonymous => RegistryAuth::Anonymous,
            RegistryCredentials::Basic { username, password } => {
                RegistryAuth::Basic(username.clone(), password.clone())
            }
            RegistryCredentials::Bearer(token) => RegistryAuth::Bearer(token.clone()),
        }
    }
}

/// The registry (`HOST:PORT`) of `reference` when it is on a loopback address (`localhost`,
/// `127.0.0.0/8`, `[::1]`), which docker and containerd speak to over plain HTTP by default.
pub fn loopback_registry(reference: &str) -> Option<String> {
    let parsed = Reference::parse(reference).ok()?;
    let registry = parsed.repository.split_once('/')?.0;
    let host = match registry.strip_prefix('[') {
        Some(rest) => rest.split_once(']')?.0,
        None => registry.rsplit_once(':').map_or(registry, |(h, _)| h),
    };
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    loopback.then(|| registry.to_string())
}

const MANIFEST_TYPES: [&str; 4] = [
    OCI_IMAGE_INDEX_MEDIA_TYPE,
    IMAGE_MANIFEST_LIST_MEDIA_TYPE,
    OCI_IMAGE_MEDIA_TYPE,
    IMAGE_MANIFEST_MEDIA_TYPE,
];

/// Pulls `reference` (`busybox:1.35`, `127.0.0.1:5000/app:v1`, `repo@sha256:…`) into `store`;
/// returns the stored image. An image pulled by digest only is named `REPO:sha256-<12 hex>`.
pub async fn pull(store: &ImageStore, reference: &str, options: &PullOptions) -> Result<Image> {
    pull_with_credentials(store, reference, options, &RegistryCredentials::Anonymous).await
}

/// [`pull`] with `credentials` for the image's registry (sent to that registry and its token
/// service only). A registry that refuses them answers [`Error::Unauthenticated`].
pub async fn pull_with_credentials(
    store: &ImageStore,
    reference: &str,
    options: &PullOptions,
    credentials: &RegistryCredentials,
) -> Result<Image> {
    let auth = credentials.registry_auth();
    let parsed = Reference::parse(reference)?;
    let (registry, repository) = parsed
        .repository
        .split_once('/')
        .ok_or_else(|| Error::InvalidArgument(format!("image reference {reference:?}")))?;
    let remote = match (&parsed.digest, &parsed.tag) {
        (Some(digest), _) => oci_client::Reference::with_digest(
            registry.to_string(),
            repository.to_string(),
            digest.clone(),
        ),
        (None, tag) => oci_client::Reference::with_tag(
            registry.to_string(),
            repository.to_string(),
            tag.clone().unwrap_or_else(|| "latest".to_string()),
        ),
    };
    // reqwest is built without a default TLS provider; ring is the workspace's.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = oci_client::Client::new(ClientConfig {
        protocol: ClientProtocol::HttpsExcept(options.insecure_registries.clone()),
        connect_timeout: Some(std::time::Duration::from_secs(30)),
        read_timeout: Some(std::time::Duration::from_secs(60)),
        ..ClientConfig::default()
    });
    let remote_err = |what: &str, e: oci_client::errors::OciDistributionError| {
        registry_error(&format!("{what} of {reference}"), e)
    };
    let (mut bytes, mut digest) =
        fetch_manifest(&client, &remote, &auth, &parsed.digest, &remote_err).await?;
    let mut manifest: Manifest = parse_manifest(&bytes, &digest)?;
    if manifest.config.is_none() && !manifest.manifests.is_empty() {
        let chosen = platform_entry(&manifest, &digest)?;
        let by_digest = remote.clone_with_digest(chosen.clone());
        (bytes, digest) =
            fetch_manifest(&client, &by_digest, &auth, &Some(chosen), &remote_err).await?;
        manifest = parse_manifest(&bytes, &digest)?;
    }
    let config = manifest
        .config
        .as_ref()
        .ok_or_else(|| Error::InvalidArgument(format!("manifest {digest} has no config")))?;
    let blobs: Vec<(String, u64)> = std::iter::once(config)
        .chain(&manifest.layers)
        .map(|d| (d.digest.clone(), d.size))
        .collect();
    let report = |event: PullEvent| {
        if let Some(progress) = &options.progress {
            progress(&event);
        }
    };
    report(PullEvent::Resolved {
        manifest: digest.clone(),
        blobs: blobs.len(),
        total: blobs.iter().map(|(_, s)| s).sum(),
    });
    let concurrency = match options.concurrency {
        0 => 3,
        n => n.min(16),
    };
    let ingest = store.ingest_dir();
    crate::util::create_dir_all(&ingest)?;
    let fetched: Vec<Option<(String, PathBuf)>> = futures::stream::iter(blobs.iter().cloned())
        .map(|(blob, size)| {
            let (client, remote, ingest, report) = (&client, &remote, &ingest, &report);
            async move {
                if store.has_blob(&blob)? {
                    report(PullEvent::Cached { digest: blob, size });
                    return Ok(None);
                }
                let path = ingest.join(digest_hex(&blob)?);
                fetch_blob(client, remote, &blob, size, &path, report).await?;
                report(PullEvent::Done {
                    digest: blob.clone(),
                    size,
                });
                Ok::<_, Error>(Some((blob, path)))
            }
        })
        .buffer_unordered(concurrency)
        .try_collect()
        .await?;
    let fetched: Vec<(String, PathBuf)> = fetched.into_iter().flatten().collect();
    report(PullEvent::Unpacking);
    let tagged = match parsed.tagged() {
        Some(tagged) => tagged,
        None => format!(
            "{}:sha256-{}",
            parsed.repository,
            digest_hex(&digest)?.get(..12).unwrap_or_default()
        ),
    };
    let store = store.clone();
    tokio::task::spawn_blocking(move || store.commit_pull(&tagged, &digest, &bytes, &fetched))
        .await
        .map_err(|e| Error::Command(format!("storing {reference}: {e}")))?
}

/// Fetches a manifest (or index) and checks its digest (the one asked for, when pulled by digest).
async fn fetch_manifest(
    client: &oci_client::Client,
    remote: &oci_client::Reference,
    auth: &RegistryAuth,
    wanted: &Option<String>,
    remote_err: &impl Fn(&str, oci_client::errors::OciDistributionError) -> Error,
) -> Result<(Vec<u8>, String)> {
    // The token (or the Basic credentials) is kept by the client for the blob requests.
    client
        .auth(remote, auth, oci_client::RegistryOperation::Pull)
        .await
        .map_err(|e| remote_err("the credentials", e))?;
    let (bytes, _) = client
        .pull_manifest_raw(remote, auth, &MANIFEST_TYPES)
        .await
        .map_err(|e| remote_err("the manifest", e))?;
    let actual = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));
    if let Some(wanted) = wanted
        && wanted != &actual
    {
        return Err(Error::InvalidArgument(format!(
            "manifest {wanted} from {remote} has digest {actual}"
        )));
    }
    Ok((bytes.to_vec(), actual))
}

fn parse_manifest(bytes: &[u8], digest: &str) -> Result<Manifest> {
    serde_json::from_slice(bytes)
        .map_err(|e| Error::InvalidArgument(format!("manifest {digest} is not valid JSON: {e}")))
}

/// A registry failure as the runtime's error: unknown manifests and blobs are "not found".
fn registry_error(what: &str, e: oci_client::errors::OciDistributionError) -> Error {
    use oci_client::errors::OciDistributionError as E;
    match &e {
        E::ImageManifestNotFoundError(_) => Error::NotFound(format!("{what}: {e}")),
        E::AuthenticationFailure(_) | E::UnauthorizedError { .. } => {
            Error::Unauthenticated(format!("{what}: {e}"))
        }
        E::RegistryError { envelope, .. }
            if envelope.errors.iter().any(|x| {
                matches!(
                    x.code,
                    oci_client::errors::OciErrorCode::Unauthorized
                        | oci_client::errors::OciErrorCode::Denied
                )
            }) =>
        {
            Error::Unauthenticated(format!("{what}: {e}"))
        }
        E::RegistryError { envelope, .. }
            if envelope.errors.iter().any(|x| {
                matches!(
                    x.code,
                    oci_client::errors::OciErrorCode::ManifestUnknown
                        | oci_client::errors::OciErrorCode::NameUnknown
                        | oci_client::errors::OciErrorCode::BlobUnknown
                )
            }) =>
        {
            Error::NotFound(format!("{what}: {e}"))
        }
        _ => Error::Io {
            context: format!("pulling {what}"),
            source: std::io::Error::other(e.to_string()),
        },
    }
}

/// Downloads blob `digest` into `path`, resuming from what `path` holds; verifies size and digest
/// (a corrupt file is deleted; a cut-short one kept for the next try).
async fn fetch_blob(
    client: &oci_client::Client,
    remote: &oci_client::Reference,
    digest: &str,
    size: u64,
    path: &std::path::Path,
    report: &impl Fn(PullEvent),
) -> Result<()> {
    let ctx = |what: &str| format!("{what} blob {digest} of {remote}");
    let mut hasher = Sha256::new();
    let mut done = 0u64;
    if let Ok(existing) = tokio::fs::read(path).await
        && !existing.is_empty()
        && (existing.len() as u64) < size
    {
        hasher.update(&existing);
        done = existing.len() as u64;
    }
    let stream: SizedStream = if done > 0 {
        match client
            .pull_blob_stream_partial(remote, digest, done, None)
            .await
            .map_err(|e| registry_error(&ctx("fetching"), e))?
        {
            BlobResponse::Partial(stream) => stream,
            // The registry ignored the range: start over.
            BlobResponse::Full(stream) => {
                hasher = Sha256::new();
                done = 0;
                stream
            }
        }
    } else {
        client
            .pull_blob_stream(remote, digest)
            .await
            .map_err(|e| registry_error(&ctx("fetching"), e))?
    };
    let mut file = tokio::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(done == 0)
        .append(done > 0)
        .open(path)
        .await
        .map_err(io_ctx(ctx("writing")))?;
    let mut chunks = stream.stream;
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(io_ctx(ctx("downloading")))?;
        hasher.update(&chunk);
        file.write_all(&chunk)
            .await
            .map_err(io_ctx(ctx("writing")))?;
        done += chunk.len() as u64;
        if done > size {
            break;
        }
        report(PullEvent::Progress {
            digest: digest.to_string(),
            done,
            size,
        });
    }
    file.sync_all().await.map_err(io_ctx(ctx("writing")))?;
    drop(file);
    let actual = format!("sha256:{}", hex::encode(hasher.finalize()));
    if done != size || actual != digest {
        if done >= size {
            let _ = tokio::fs::remove_file(path).await;
        }
        return Err(Error::InvalidArgument(format!(
            "{}: got {done} of {size} bytes with digest {actual}",
            ctx("verifying")
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_registries_are_plain_http() {
        let r = |s: &str| loopback_registry(s);
        assert_eq!(
            r("127.0.0.1:5000/app:v1").as_deref(),
            Some("127.0.0.1:5000")
        );
        assert_eq!(r("localhost:5000/a/b").as_deref(), Some("localhost:5000"));
        assert_eq!(r("[::1]:5000/app").as_deref(), Some("[::1]:5000"));
        assert_eq!(r("127.1.2.3/app").as_deref(), Some("127.1.2.3"));
        assert_eq!(r("busybox:1.35"), None);
        assert_eq!(r("10.0.0.1:5000/app"), None);
        assert_eq!(r("registry.example:5000/app"), None);
    }

    #[test]
    fn credentials_are_redacted_in_logs() {
        let basic = RegistryCredentials::Basic {
            username: "u".into(),
            password: "secret".into(),
        };
        assert!(!format!("{basic:?}").contains("secret"));
        assert!(!format!("{:?}", RegistryCredentials::Bearer("tok".into())).contains("tok"));
    }
}
