//! Debian's `docker-registry` on 127.0.0.1:<free port>, over a temp dir, optionally behind
//! htpasswd (bcrypt) auth; images pushed with `skopeo`. Shared by the runtime's pull tests and
//! podway-cri's PullImage tests (included there with `#[path]`).
#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

/// A running registry; killed on drop.
pub struct Registry {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// `user:password` when it wants credentials.
    creds: Option<String>,
    _tmp: tempfile::TempDir,
}

impl Registry {
    /// A registry anyone can push to and pull from.
    pub fn start() -> Registry {
        Registry::start_with(None)
    }

    /// A registry that wants `user` / `password` (htpasswd from apache2-utils makes the file).
    pub fn with_credentials(user: &str, password: &str) -> Registry {
        Registry::start_with(Some((user, password)))
    }

    fn start_with(credentials: Option<(&str, &str)>) -> Registry {
        let tmp = tempfile::tempdir().expect("temp dir");
        let auth = match credentials {
            Some((user, password)) => htpasswd_auth(tmp.path(), user, password),
            None => String::new(),
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let addr = format!("127.0.0.1:{port}");
        let config = tmp.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
                 http:\n  addr: {addr}\n{auth}",
                tmp.path().join("storage").display()
            ),
        )
        .expect("registry config");
        let log = std::fs::File::create(tmp.path().join("registry.log")).expect("log file");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("docker-registry (apt-get install docker-registry): {e}"));
        let registry = Registry {
            child,
            addr,
            creds: credentials.map(|(u, p)| format!("{u}:{p}")),
            _tmp: tmp,
        };
        for _ in 0..100 {
            if std::net::TcpStream::connect(&registry.addr).is_ok() {
                return registry;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("docker-registry did not listen on {}", registry.addr);
    }

    /// `skopeo copy [extra] SOURCE docker://ADDR/NAME`, with the registry's credentials if any.
    pub fn push(&self, source: &str, name: &str, extra: &[&str]) {
        let mut cmd = Command::new("skopeo");
        cmd.args(["copy", "--dest-tls-verify=false"]);
        if let Some(creds) = &self.creds {
            cmd.arg("--dest-creds").arg(creds);
        }
        let out = cmd
            .args(extra)
            .arg(source)
            .arg(format!("docker://{}/{name}", self.addr))
            .output()
            .unwrap_or_else(|e| panic!("skopeo: {e}"));
        assert!(
            out.status.success(),
            "skopeo copy {source}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Writes a bcrypt htpasswd file for `user` into `dir`; the registry config's `auth:` section.
fn htpasswd_auth(dir: &Path, user: &str, password: &str) -> String {
    let htpasswd = Command::new("htpasswd")
        .args(["-nbB", user, password])
        .output()
        .unwrap_or_else(|e| panic!("htpasswd (apt-get install apache2-utils): {e}"));
    assert!(htpasswd.status.success(), "htpasswd failed");
    let file = dir.join("htpasswd");
    std::fs::write(&file, &htpasswd.stdout).expect("htpasswd file");
    format!(
        "auth:\n  htpasswd:\n    realm: podway-test\n    path: {}\n",
        file.display()
    )
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
