//! Command-line interface: every flag of every command, with its help text.
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Kubernetes' container-streaming path (exec, attach, port-forward, logs, cp) in one binary:
/// an API server, a node agent and a CRI container runtime built on runc.
#[derive(Debug, Parser)]
#[command(name = "podway", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// Log filter (`info`, `debug`, `podway_node=debug,info`, …); RUST_LOG takes precedence.
    #[arg(long, global = true, value_name = "FILTER")]
    pub log_level: Option<String>,
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run everything on this machine: API server (SQLite store), node agent and container runtime,
    /// in the foreground. Writes an admin kubeconfig to DATA_DIR/kubeconfig. Ctrl-C or SIGTERM
    /// stops every tier and every pod.
    Up(UpArgs),
    /// Run only the API server.
    Server(ServerArgs),
    /// Run only the node agent, against a CRI runtime socket (podway's or containerd's). Its pods
    /// keep running when it stops; it adopts them again on its next start, as the kubelet does.
    Node(NodeArgs),
    /// Run only the container runtime: the CRI server and its streaming server.
    Runtime(RuntimeArgs),
    /// Manage the runtime's images.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Stop every pod and container of a runtime's folders when its runtime is gone (after a
    /// crash, or before uninstalling): kills their monitors, processes and pause processes,
    /// deletes runc's state, unmounts their filesystems and removes their cgroups. Records and
    /// logs stay. Refuses while a runtime serves STATE_DIR/cri.sock.
    Killall(RuntimeFlags),
}

/// Flags shared by every command that runs the container runtime.
#[derive(Debug, Args, Clone)]
pub struct RuntimeFlags {
    /// Folder for persistent data: store, certificates, images, snapshots, pod logs.
    #[arg(long, default_value = "/var/lib/podway", value_name = "DIR")]
    pub data_dir: PathBuf,
    /// Folder for volatile state: the CRI socket, the OCI runtime's state.
    #[arg(long, default_value = "/run/podway", value_name = "DIR")]
    pub state_dir: PathBuf,
    /// The OCI runtime binary (runc; crun and youki are command-line compatible).
    #[arg(long, default_value = "runc", value_name = "PATH")]
    pub oci_runtime: PathBuf,
}

/// `podway up`.
#[derive(Debug, Args)]
pub struct UpArgs {
    /// Runtime folders and programs.
    #[command(flatten)]
    pub runtime: RuntimeFlags,
    /// Container log rotation.
    #[command(flatten)]
    pub log_rotation: LogRotationFlags,
    /// HTTPS port of the API server.
    #[arg(long, default_value_t = 6443, value_name = "N")]
    pub api_port: u16,
    /// HTTPS port of the node agent's debugging handlers (exec, attach, port-forward, logs).
    #[arg(long, default_value_t = 10250, value_name = "N")]
    pub node_port: u16,
    /// Name of this node (default: the host name).
    #[arg(long, value_name = "NAME")]
    pub node_name: Option<String>,
}

/// `podway server`.
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Folder for the store and the certificates (generated on first start).
    #[arg(long, default_value = "/var/lib/podway", value_name = "DIR")]
    pub data_dir: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0", value_name = "IP")]
    pub bind_address: IpAddr,
    /// HTTPS port.
    #[arg(long, default_value_t = 6443, value_name = "N")]
    pub port: u16,
    /// Name of the node whose certificates are generated with the cluster's (default: the host name).
    #[arg(long, value_name = "NAME")]
    pub node_name: Option<String>,
    /// Kubelet port used for nodes that do not report one.
    #[arg(long, default_value_t = 10250, value_name = "N")]
    pub kubelet_port: u16,
}

/// When the node agent rotates container log files (the kubelet's settings of the same names).
#[derive(Debug, Args, Clone)]
pub struct LogRotationFlags {
    /// Rotate a container's log file once it is larger than this (a quantity: 10Mi, 500Ki, 1G).
    #[arg(long, default_value = "10Mi", value_name = "SIZE", value_parser = podway_node::parse_size)]
    pub container_log_max_size: u64,
    /// Log files kept per container, the current one included; older ones are removed.
    #[arg(long, default_value_t = 5, value_name = "N", value_parser = clap::value_parser!(u64).range(2..))]
    pub container_log_max_files: u64,
    /// How often the log files' sizes are checked, in seconds.
    #[arg(long, default_value_t = 10, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    pub container_log_monitor_interval: u64,
}

impl LogRotationFlags {
    /// The node agent's rotation policy.
    pub fn policy(&self) -> podway_node::LogRotation {
        podway_node::LogRotation {
            max_size: self.container_log_max_size,
            max_files: usize::try_from(self.container_log_max_files).unwrap_or(usize::MAX),
            check_every: std::time::Duration::from_secs(self.container_log_monitor_interval),
        }
    }
}

/// `podway node`.
#[derive(Debug, Args)]
pub struct NodeArgs {
    /// Name of this node (default: the host name).
    #[arg(long, value_name = "NAME")]
    pub node_name: Option<String>,
    /// Kubeconfig with this node's client certificate.
    #[arg(
        long,
        default_value = "/var/lib/podway/node.kubeconfig",
        value_name = "FILE"
    )]
    pub kubeconfig: PathBuf,
    /// CRI endpoint (unix socket path, `unix://` prefix allowed).
    #[arg(
        long,
        default_value = "unix:///run/podway/cri.sock",
        value_name = "ENDPOINT"
    )]
    pub container_runtime_endpoint: String,
    /// Address the debugging handlers listen on.
    #[arg(long, default_value = "0.0.0.0", value_name = "IP")]
    pub address: IpAddr,
    /// Port of the debugging handlers.
    #[arg(long, default_value_t = 10250, value_name = "N")]
    pub port: u16,
    /// Address reported as the node's InternalIP.
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST), value_name = "IP")]
    pub node_ip: IpAddr,
    /// Serving certificate of the debugging handlers.
    #[arg(
        long,
        default_value = "/var/lib/podway/pki/node.crt",
        value_name = "FILE"
    )]
    pub tls_cert_file: PathBuf,
    /// Key of the serving certificate.
    #[arg(
        long,
        default_value = "/var/lib/podway/pki/node.key",
        value_name = "FILE"
    )]
    pub tls_private_key_file: PathBuf,
    /// CA that signs the certificates of clients allowed to call the debugging handlers.
    #[arg(
        long,
        default_value = "/var/lib/podway/pki/ca.crt",
        value_name = "FILE"
    )]
    pub client_ca_file: PathBuf,
    /// Folder of the pods' container log files.
    #[arg(long, default_value = "/var/lib/podway/pods", value_name = "DIR")]
    pub pod_log_dir: PathBuf,
    /// The agent's own files: the pods' volumes (emptyDir).
    #[arg(long, default_value = "/var/lib/podway/node", value_name = "DIR")]
    pub root_dir: PathBuf,
    /// Container log rotation.
    #[command(flatten)]
    pub log_rotation: LogRotationFlags,
    /// Serve exec, attach, port-forward, logs and run (false answers 405).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub enable_debugging_handlers: bool,
}

/// `podway runtime`.
#[derive(Debug, Args)]
pub struct RuntimeArgs {
    /// Runtime folders and programs.
    #[command(flatten)]
    pub runtime: RuntimeFlags,
    /// CRI endpoint to serve (default: STATE_DIR/cri.sock).
    #[arg(long, value_name = "unix://PATH")]
    pub listen: Option<String>,
    /// Address of the streaming server (exec, attach, port-forward URLs); port 0 picks one.
    #[arg(long, default_value = "127.0.0.1:0", value_name = "IP:PORT")]
    pub stream_address: std::net::SocketAddr,
    /// How long a streaming URL stays valid, in seconds (each URL is single-use).
    #[arg(long, default_value_t = 60, value_name = "SECONDS")]
    pub stream_token_ttl: u64,
    /// Close an exec, attach or port-forward session after this long without data in either
    /// direction (the server's keep-alive pings do not count); 0 never closes one. 4h is
    /// containerd's and the kubelet's stream idle timeout. Durations look like 30s, 5m, 4h or
    /// 1h30m.
    #[arg(long, default_value = "4h", value_name = "DURATION", value_parser = parse_duration)]
    pub stream_idle_timeout: std::time::Duration,
    /// Ping every WebSocket exec, attach and port-forward session this often; 0 never pings.
    /// Keeps a silent interactive session alive through proxies that cut connections idle for
    /// 60 s, and notices a vanished client early. SPDY sessions answer pings but send none
    /// (on SPDY a ping counts as activity, so it would defeat the idle timeout).
    #[arg(long, default_value = "30s", value_name = "DURATION", value_parser = parse_duration)]
    pub stream_ping_interval: std::time::Duration,
}

/// Parses a duration as Go writes them: one or more `<integer><unit>` with units `ms`, `s`, `m`,
/// `h` (`90s`, `5m`, `1h30m`), or a bare `0`.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    use std::time::Duration;
    let text = text.trim();
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let bad = || format!("invalid duration {text:?}: expected e.g. 30s, 5m, 4h or 1h30m");
    let mut total = Duration::ZERO;
    let mut rest = text;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        let number: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let part = match &rest[..unit_len] {
            "ms" => Duration::from_millis(number),
            "s" => Duration::from_secs(number),
            "m" => Duration::from_secs(number.checked_mul(60).ok_or_else(bad)?),
            "h" => Duration::from_secs(number.checked_mul(3600).ok_or_else(bad)?),
            _ => return Err(bad()),
        };
        total = total.checked_add(part).ok_or_else(bad)?;
        rest = &rest[unit_len..];
    }
    Ok(total)
}

/// `podway image …`.
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Import an image archive: an OCI layout tar (from `umoci` or `skopeo copy …
    /// oci-archive:FILE`), a `docker save` tar, or a plain rootfs tarball (with `--name`);
    /// gzip-compressed or not. Works while the runtime runs on the same data dir.
    Import(ImageImportArgs),
    /// Pull an image from an OCI registry (HTTPS, or plain HTTP for `--insecure-registry`).
    Pull(ImagePullArgs),
    /// List the images of the runtime.
    #[command(alias = "ls")]
    List(ImageDataDir),
    /// Remove images (by name, id or digest reference); refuses an image a container uses.
    #[command(alias = "remove")]
    Rm(ImageRmArgs),
    /// Delete blobs and layer snapshots no image or container uses.
    Prune(ImageDataDir),
}

/// `podway image import`.
#[derive(Debug, Args)]
pub struct ImageImportArgs {
    /// The archive to import.
    pub file: PathBuf,
    /// Name to give the image (`busybox:1.35` = `docker.io/library/busybox:1.35`); default: the
    /// archive's `org.opencontainers.image.ref.name` or first `RepoTags`; required for a rootfs.
    #[arg(long, value_name = "REF")]
    pub name: Option<String>,
    /// The runtime's data folder.
    #[command(flatten)]
    pub data: ImageDataDir,
}

/// `podway image rm`.
#[derive(Debug, Args)]
pub struct ImageRmArgs {
    /// The images.
    #[arg(required = true)]
    pub references: Vec<String>,
    /// The runtime's data folder.
    #[command(flatten)]
    pub data: ImageDataDir,
}

/// `podway image pull`.
#[derive(Debug, Args)]
pub struct ImagePullArgs {
    /// The image (`busybox:1.35`, `127.0.0.1:5000/app:v1`, `repo@sha256:…`).
    pub reference: String,
    /// A registry (`HOST:PORT`) to speak plain HTTP to; repeatable.
    #[arg(long = "insecure-registry", value_name = "HOST:PORT")]
    pub insecure_registries: Vec<String>,
    /// Blobs downloaded at once.
    #[arg(long, default_value_t = 3)]
    pub concurrency: usize,
    /// User name for a registry that wants credentials (the password comes from stdin).
    #[arg(long, value_name = "USER", requires = "password_stdin")]
    pub username: Option<String>,
    /// Read the password for --username from stdin (one line), as `docker login` does.
    #[arg(long, requires = "username")]
    pub password_stdin: bool,
    /// The runtime's data folder.
    #[command(flatten)]
    pub data: ImageDataDir,
}

/// The data dir flag of the image commands.
#[derive(Debug, Args)]
pub struct ImageDataDir {
    /// The runtime's data folder.
    #[arg(long, default_value = "/var/lib/podway", value_name = "DIR")]
    pub data_dir: PathBuf,
}

/// Runs a parsed command.
pub async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Up(args) => crate::up::run(args).await,
        Command::Server(args) => crate::daemons::server(args).await,
        Command::Node(args) => crate::daemons::node(args).await,
        Command::Runtime(args) => crate::daemons::runtime(args).await,
        Command::Image(command) => crate::image::run(command).await,
        Command::Killall(flags) => crate::daemons::killall(&flags),
    }
}

/// The host name, the default node name.
pub fn default_node_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|name| name.into_string().ok())
        .map(|name| name.to_lowercase())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "podway".to_owned())
}

/// A `unix://PATH` or plain `PATH` endpoint as a path.
pub fn unix_endpoint(endpoint: &str) -> PathBuf {
    PathBuf::from(endpoint.strip_prefix("unix://").unwrap_or(endpoint))
}

#[cfg(test)]
mod duration_tests {
    use std::time::Duration;

    use super::parse_duration;

    #[test]
    fn go_style_durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("4h"), Ok(Duration::from_secs(4 * 3600)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1500ms"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        for bad in ["", "4", "h", "4d", "-1s", "1.5h", "s4"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
