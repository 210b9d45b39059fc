//! Shared harness: an API server on 127.0.0.1:0 with its own data dir, driven by kubectl 1.32.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use podway_apiserver::{ApiServer, Config, pki};
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

pub const KUBECTL: &str = "/usr/lib/google-cloud-sdk/bin/kubectl.1.32";

/// Upper bound for one kubectl call (a hang is a failure, not a timing assertion).
pub const CALL_LIMIT: Duration = Duration::from_secs(120);

/// A running API server on 127.0.0.1:0 with its own data dir; stopped on drop.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
    pub node_kubeconfig: PathBuf,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.shutdown.cancel();
        self.task.abort();
    }
}

pub struct Output {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Cluster {
    pub async fn start() -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        // Certificates first (port unknown yet), then again to write kubeconfigs with the port.
        let first = pki::ensure(&data, "n1", 0).expect("pki");
        let config = Config {
            data_dir: data.clone(),
            listen: "127.0.0.1:0".parse().expect("addr"),
            pki: first,
            kubelet_port: 10250,
        };
        let server = ApiServer::bind(config).await.expect("bind");
        let port = server.local_addr().port();
        let pki = pki::ensure(&data, "n1", port).expect("pki with port");
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        let task = tokio::spawn(async move {
            if let Err(e) = server.run(token).await {
                eprintln!("server failed: {e}");
            }
        });
        Cluster {
            kubeconfig: pki.admin_kubeconfig,
            node_kubeconfig: pki.node_kubeconfig,
            dir,
            shutdown,
            task,
        }
    }

    pub fn command(&self, kubeconfig: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(KUBECTL);
        cmd.arg("--kubeconfig")
            .arg(kubeconfig)
            .args(args)
            .env("HOME", self.dir.path())
            .stdin(Stdio::null())
            .kill_on_drop(true);
        cmd
    }

    pub async fn run_as(&self, kubeconfig: &Path, args: &[&str]) -> Output {
        let out = tokio::time::timeout(CALL_LIMIT, self.command(kubeconfig, args).output())
            .await
            .unwrap_or_else(|_| panic!("kubectl {args:?} hung"))
            .expect("run kubectl");
        Output {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    pub async fn kubectl(&self, args: &[&str]) -> Output {
        self.run_as(&self.kubeconfig, args).await
    }

    /// Runs kubectl and expects success; returns stdout.
    pub async fn ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args).await;
        assert!(
            out.ok,
            "kubectl {args:?} failed:\n{}\n{}",
            out.stdout, out.stderr
        );
        out.stdout
    }

    pub fn write(&self, name: &str, contents: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, contents).expect("write manifest");
        path.display().to_string()
    }
}
