//! The three tiers, each startable alone (`server`, `node`, `runtime`) or together (`up`).
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

use crate::cli::{
    NodeArgs, RuntimeArgs, RuntimeFlags, ServerArgs, default_node_name, unix_endpoint,
};

/// The runtime's configuration from its flags.
pub fn runtime_config(
    flags: &RuntimeFlags,
    socket: PathBuf,
    stream_addr: SocketAddr,
    token_ttl: Duration,
) -> anyhow::Result<podway_cri::Config> {
    let podway_bin =
        std::env::current_exe().context("cannot find the podway binary for `podway shim`")?;
    let mut config = podway_cri::Config::new(
        socket,
        podway_runtime::RuntimeConfig {
            data_dir: flags.data_dir.clone(),
            state_dir: flags.state_dir.clone(),
            oci_runtime: flags.oci_runtime.clone(),
            podway_bin,
        },
    );
    config.stream_addr = stream_addr;
    config.token_ttl = token_ttl;
    Ok(config)
}

/// `podway killall`.
pub fn killall(flags: &RuntimeFlags) -> anyhow::Result<()> {
    let socket = cri_socket(&flags.state_dir);
    if std::os::unix::net::UnixStream::connect(&socket).is_ok() {
        anyhow::bail!(
            "a runtime is serving {}: stop it first (it stops its own pods), killall is for \
             folders whose runtime is gone",
            socket.display()
        );
    }
    let killed =
        podway_runtime::killall::killall(&flags.data_dir, &flags.state_dir, &flags.oci_runtime);
    let count =
        |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    println!(
        "killed {}; removed the mounts and cgroups of {} and {}",
        count(killed.processes, "process", "processes"),
        count(killed.containers, "container", "containers"),
        count(killed.sandboxes, "sandbox", "sandboxes")
    );
    Ok(())
}

/// The default CRI socket of a state dir.
pub fn cri_socket(state_dir: &Path) -> PathBuf {
    state_dir.join("cri.sock")
}

/// `podway server`.
pub async fn server(args: ServerArgs) -> anyhow::Result<()> {
    let node_name = args.node_name.unwrap_or_else(default_node_name);
    let pki = podway_apiserver::pki::ensure(&args.data_dir, &node_name, args.port)
        .with_context(|| format!("cannot prepare certificates in {}", args.data_dir.display()))?;
    let server = podway_apiserver::ApiServer::bind(podway_apiserver::Config {
        data_dir: args.data_dir.clone(),
        listen: SocketAddr::new(args.bind_address, args.port),
        pki,
        kubelet_port: args.kubelet_port,
    })
    .await
    .context("cannot start the API server")?;
    tracing::info!(address = %server.local_addr(), "API server listening");
    let shutdown = crate::shutdown::on_signal()?;
    server.run(shutdown).await.context("API server failed")
}

/// `podway node`.
pub async fn node(args: NodeArgs) -> anyhow::Result<()> {
    let agent = podway_node::NodeAgent::bind(podway_node::Config {
        node_name: args.node_name.unwrap_or_else(default_node_name),
        kubeconfig: args.kubeconfig,
        cri_socket: unix_endpoint(&args.container_runtime_endpoint),
        listen: SocketAddr::new(args.address, args.port),
        advertise_address: args.node_ip,
        tls_cert: args.tls_cert_file,
        tls_key: args.tls_private_key_file,
        client_ca: args.client_ca_file,
        pod_log_dir: args.pod_log_dir,
        root_dir: args.root_dir,
        enable_debugging_handlers: args.enable_debugging_handlers,
        log_rotation: args.log_rotation.policy(),
        stop_pods_on_exit: false,
    })
    .await
    .context("cannot start the node agent")?;
    tracing::info!(address = %agent.local_addr(), "node agent listening");
    let shutdown = crate::shutdown::on_signal()?;
    agent.run(shutdown).await.context("node agent failed")
}

/// `podway runtime`.
pub async fn runtime(args: RuntimeArgs) -> anyhow::Result<()> {
    let socket = match &args.listen {
        Some(endpoint) => unix_endpoint(endpoint),
        None => cri_socket(&args.runtime.state_dir),
    };
    let mut config = runtime_config(
        &args.runtime,
        socket.clone(),
        args.stream_address,
        Duration::from_secs(args.stream_token_ttl),
    )?;
    let nonzero = |d: Duration| (!d.is_zero()).then_some(d);
    config.stream_idle_timeout = nonzero(args.stream_idle_timeout);
    config.stream_ping_interval = nonzero(args.stream_ping_interval);
    let daemon = podway_cri::RuntimeDaemon::bind(config)
        .await
        .context("cannot start the container runtime")?;
    tracing::info!(socket = %socket.display(), streaming = %daemon.stream_addr(), "container runtime serving CRI");
    let shutdown = crate::shutdown::on_signal()?;
    daemon
        .run(shutdown)
        .await
        .context("container runtime failed")
}
