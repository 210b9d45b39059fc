//! `podway image import | ls | rm | prune` on a temp data dir: OCI layouts, docker-save archives
//! and plain rootfs tarballs, all made from scripts/demo-image.sh (needs umoci, busybox-static,
//! tar and gzip; root, to keep ownership). Uses `PODWAY_BIN` or the binary next to the test.
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

#[path = "../../podway-runtime/tests/common/registry.rs"]
mod registry;

fn podway_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("PODWAY_BIN") {
        return bin.into();
    }
    PathBuf::from(env!("CARGO_BIN_EXE_podway"))
}

/// Runs `podway image ARGS… --data-dir DATA`.
fn image(data: &Path, args: &[&str]) -> Output {
    Command::new(podway_bin())
        .arg("image")
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .output()
        .unwrap()
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{cmd:?}: {}", text(&out).1);
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// The demo image in three forms under `dir`: `demo.tar` (OCI layout), `saved.tar` (docker save,
/// tagged `saved/busybox:v1`) and `rootfs.tar.gz`; returns the config digest.
fn archives(dir: &Path) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/demo-image.sh");
    run(Command::new("bash").arg(script).arg(dir.join("demo.tar")));
    let oci = dir.join("oci");
    std::fs::create_dir(&oci).unwrap();
    run(Command::new("tar")
        .arg("-xf")
        .arg(dir.join("demo.tar"))
        .arg("-C")
        .arg(&oci));
    let blob = |digest: &str| oci.join("blobs/sha256").join(&digest[7..]);
    let index = json(&oci.join("index.json"));
    let manifest = json(&blob(index["manifests"][0]["digest"].as_str().unwrap()));
    let config = manifest["config"]["digest"].as_str().unwrap().to_string();
    let layer = blob(manifest["layers"][0]["digest"].as_str().unwrap());

    let saved = dir.join("saved");
    std::fs::create_dir_all(saved.join("l1")).unwrap();
    std::fs::copy(blob(&config), saved.join(format!("{}.json", &config[7..]))).unwrap();
    let tar = std::process::Command::new("gzip")
        .arg("-dc")
        .arg(&layer)
        .output()
        .unwrap();
    std::fs::write(saved.join("l1/layer.tar"), tar.stdout).unwrap();
    let docker_manifest = serde_json::json!([{
        "Config": format!("{}.json", &config[7..]),
        "RepoTags": ["saved/busybox:v1"],
        "Layers": ["l1/layer.tar"],
    }]);
    std::fs::write(
        saved.join("manifest.json"),
        serde_json::to_vec(&docker_manifest).unwrap(),
    )
    .unwrap();
    run(Command::new("tar")
        .arg("-cf")
        .arg(dir.join("saved.tar"))
        .arg("-C")
        .arg(&saved)
        .arg("."));

    let rootfs = dir.join("rootfs");
    std::fs::create_dir(&rootfs).unwrap();
    run(Command::new("tar")
        .arg("-xzf")
        .arg(&layer)
        .arg("-C")
        .arg(&rootfs));
    run(Command::new("tar")
        .arg("-czf")
        .arg(dir.join("rootfs.tar.gz"))
        .arg("-C")
        .arg(&rootfs)
        .arg("."));
    config
}

fn count(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

#[test]
fn imports_docker_save_archives_and_rootfs_tarballs() {
    let tmp = tempfile::tempdir().unwrap();
    let config = archives(tmp.path());
    let data = tmp.path().join("data");
    let saved = tmp.path().join("saved.tar");
    let out = image(&data, &["import", saved.to_str().unwrap()]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("imported docker.io/saved/busybox:v1"),
        "{stdout}"
    );
    assert!(stdout.contains(&format!("id {config}")), "{stdout}");
    let snapshot = std::fs::read_dir(data.join("snapshots"))
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    assert!(snapshot.join("bin/busybox").is_file());

    // A rootfs tarball needs a name.
    let rootfs = tmp.path().join("rootfs.tar.gz");
    let out = image(&data, &["import", rootfs.to_str().unwrap()]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("neither an OCI layout nor a docker-save archive")
            && stderr.contains("--name"),
        "{stderr}"
    );
    let out = image(
        &data,
        &["import", rootfs.to_str().unwrap(), "--name", "rootfs:1"],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("imported docker.io/library/rootfs:1"),
        "{stdout}"
    );
    assert_eq!(count(&data.join("snapshots")), 2);

    let (listing, _) = text(&image(&data, &["ls"]));
    assert!(listing.contains("docker.io/saved/busybox:v1"), "{listing}");
    assert!(listing.contains("docker.io/library/rootfs:1"), "{listing}");
    assert_eq!(count(&data.join("images/ingest")), 0, "staging left behind");
}

#[test]
fn rm_and_prune_delete_what_no_image_uses() {
    let tmp = tempfile::tempdir().unwrap();
    archives(tmp.path());
    let data = tmp.path().join("data");
    let demo = tmp.path().join("demo.tar");
    let rootfs = tmp.path().join("rootfs.tar.gz");
    for (file, name) in [(&demo, "busybox:1.35"), (&rootfs, "rootfs:1")] {
        let out = image(&data, &["import", file.to_str().unwrap(), "--name", name]);
        assert!(out.status.success(), "{}", text(&out).1);
    }
    let blobs = data.join("images/blobs/sha256");
    assert_eq!(count(&blobs), 6);
    assert_eq!(count(&data.join("snapshots")), 2);

    let out = image(&data, &["rm", "rootfs:1"]);
    assert!(out.status.success(), "{}", text(&out).1);
    assert_eq!(text(&out).0, "removed rootfs:1\n");
    assert_eq!(count(&blobs), 3);
    assert_eq!(count(&data.join("snapshots")), 1);
    let (listing, _) = text(&image(&data, &["ls"]));
    assert!(!listing.contains("rootfs"), "{listing}");
    assert!(
        listing.contains("docker.io/library/busybox:1.35"),
        "{listing}"
    );

    let out = image(&data, &["rm", "rootfs:1"]);
    assert!(!out.status.success());
    assert!(text(&out).1.contains("not found"), "{}", text(&out).1);

    // Leftovers of an interrupted run: a blob and a snapshot nothing names.
    std::fs::write(blobs.join("a".repeat(64)), b"orphan").unwrap();
    std::fs::create_dir(data.join("snapshots").join("b".repeat(64))).unwrap();
    let out = image(&data, &["prune"]);
    assert!(out.status.success(), "{}", text(&out).1);
    assert_eq!(text(&out).0, "deleted 1 blobs and 1 layer snapshots\n");
    assert_eq!(count(&blobs), 3);
    assert_eq!(count(&data.join("snapshots")), 1);
    let (listing, _) = text(&image(&data, &["ls"]));
    assert!(
        listing.contains("docker.io/library/busybox:1.35"),
        "{listing}"
    );
}

/// `podway image pull --username U --password-stdin` against a registry with htpasswd auth on
/// loopback: refused without credentials or with a wrong password, pulled with the right ones.
#[test]
fn pull_with_credentials_from_stdin() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/demo-image.sh");
    let archive = tmp.path().join("demo.tar");
    run(Command::new("bash").arg(script).arg(&archive));
    let registry = registry::Registry::with_credentials("puller", "pass word:1");
    registry.push(
        &format!("oci-archive:{}", archive.display()),
        "private/app:v1",
        &[],
    );
    let reference = format!("{}/private/app:v1", registry.addr);
    let pull = |password: Option<&str>| -> Output {
        let mut cmd = Command::new(podway_bin());
        cmd.args([
            "image",
            "pull",
            "--insecure-registry",
            &registry.addr,
            &reference,
        ])
        .arg("--data-dir")
        .arg(&data)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        if password.is_some() {
            cmd.args(["--username", "puller", "--password-stdin"]);
        }
        let mut child = cmd.spawn().unwrap();
        let mut stdin = child.stdin.take().unwrap();
        if let Some(password) = password {
            writeln!(stdin, "{password}").unwrap();
        }
        drop(stdin);
        child.wait_with_output().unwrap()
    };

    let anonymous = pull(None);
    assert!(!anonymous.status.success(), "{:?}", text(&anonymous));
    let wrong = pull(Some("not it"));
    assert!(!wrong.status.success(), "{:?}", text(&wrong));
    let (_, err) = text(&wrong);
    assert!(err.contains(&reference), "the error names the image: {err}");

    let pulled = pull(Some("pass word:1"));
    let (out, err) = text(&pulled);
    assert!(pulled.status.success(), "{out}{err}");
    assert!(out.contains(&format!("pulled {reference}")), "{out}");
    let (list, _) = text(&image(&data, &["list"]));
    assert!(list.contains(&reference), "{list}");
}
