//! PullImage with credentials from the request, against Debian's `docker-registry` on loopback
//! with htpasswd (bcrypt) auth; the image is pushed with `skopeo`. Needs root, docker-registry,
//! skopeo, htpasswd (apache2-utils), umoci and busybox-static.
mod common;

#[path = "../../podway-runtime/tests/common/registry.rs"]
mod registry;

use common::{Daemon, demo_archive};
use k8s_cri::v1 as cri;
use registry::Registry;

const USER: &str = "puller";
const PASSWORD: &str = "s3cret:with:colons";

/// Pushes the demo image to `registry` as `NAME`.
fn push_demo(registry: &Registry, name: &str) {
    let source = format!("oci-archive:{}", demo_archive().display());
    registry.push(&source, name, &[]);
}

fn request(image: &str, auth: Option<cri::AuthConfig>) -> cri::PullImageRequest {
    cri::PullImageRequest {
        image: Some(cri::ImageSpec {
            image: image.to_owned(),
            ..Default::default()
        }),
        auth,
        sandbox_config: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_image_with_credentials_from_an_htpasswd_registry() {
    let registry = Registry::with_credentials(USER, PASSWORD);
    push_demo(&registry, "private/app:v1");
    push_demo(&registry, "private/app:v2");
    let daemon = Daemon::start().await;
    let mut c = daemon.clients.clone();
    let v1 = format!("{}/private/app:v1", registry.addr);
    let v2 = format!("{}/private/app:v2", registry.addr);

    // Without credentials, and with a wrong password: refused, nothing stored.
    let err = c.images.pull_image(request(&v1, None)).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err:?}");
    let wrong = cri::AuthConfig {
        username: USER.into(),
        password: "nope".into(),
        ..Default::default()
    };
    let err = c
        .images
        .pull_image(request(&v1, Some(wrong)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err:?}");
    let status = |c: &mut common::Clients, image: &str| {
        let mut c = c.clone();
        let image = image.to_owned();
        async move {
            c.images
                .image_status(cri::ImageStatusRequest {
                    image: Some(cri::ImageSpec {
                        image,
                        ..Default::default()
                    }),
                    verbose: false,
                })
                .await
                .unwrap()
                .into_inner()
                .image
        }
    };
    assert!(status(&mut c, &v1).await.is_none());

    // User name and password.
    let auth = cri::AuthConfig {
        username: USER.into(),
        password: PASSWORD.into(),
        ..Default::default()
    };
    let pulled = c
        .images
        .pull_image(request(&v1, Some(auth)))
        .await
        .unwrap()
        .into_inner();
    let image = status(&mut c, &v1).await.expect("the pulled image");
    assert_eq!(pulled.image_ref, image.id);
    assert!(image.repo_tags.contains(&v1), "{:?}", image.repo_tags);

    // `auth`: base64 of user:password (the password holds colons).
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    let auth = cri::AuthConfig {
        auth: encoded,
        ..Default::default()
    };
    c.images.pull_image(request(&v2, Some(auth))).await.unwrap();
    assert!(status(&mut c, &v2).await.is_some());

    // A container runs from the pulled image.
    let logs = daemon.dir.path().join("logs");
    let sandbox = c
        .runtime
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(common::sandbox_config("pulled", &logs)),
            runtime_handler: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .pod_sandbox_id;
    let config = cri::ContainerConfig {
        image: Some(cri::ImageSpec {
            image: v1.clone(),
            ..Default::default()
        }),
        ..common::container_config("pulled", &["sleep", "1000"])
    };
    let id = c
        .runtime
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: sandbox,
            config: Some(config),
            sandbox_config: None,
        })
        .await
        .unwrap()
        .into_inner()
        .container_id;
    c.runtime
        .start_container(cri::StartContainerRequest {
            container_id: id.clone(),
        })
        .await
        .unwrap();
    let out = c
        .runtime
        .exec_sync(cri::ExecSyncRequest {
            container_id: id,
            cmd: vec!["echo".into(), "pulled".into()],
            timeout: 10,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "pulled");

    daemon.stop().await.unwrap();
}
