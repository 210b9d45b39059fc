//! `podway up`: every tier in one process tree, SQLite store, generated certificates.
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::cli::{UpArgs, default_node_name};
use crate::daemons::{cri_socket, runtime_config};

/// Starts the runtime, the API server and the node agent; on a signal stops the node agent first
/// (it stops every pod), then the other two.
pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    // Before anything is started or announced: a Ctrl-C right after the banner (or during
    // start-up) must stop every tier, not kill the process with the default action.
    let signal = crate::shutdown::on_signal()?;
    let data_dir = args.runtime.data_dir.clone();
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create {}", data_dir.display()))?;
    let node_name = args.node_name.clone().unwrap_or_else(default_node_name);
    let pki = podway_apiserver::pki::ensure(&data_dir, &node_name, args.api_port)
        .with_context(|| format!("cannot prepare certificates in {}", data_dir.display()))?;

    let socket = cri_socket(&args.runtime.state_dir);
    let stream_addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
    let runtime = podway_cri::RuntimeDaemon::bind(runtime_config(
        &args.runtime,
        socket.clone(),
        stream_addr,
        Duration::from_secs(60),
    )?)
    .await
    .context("cannot start the container runtime")?;

    let api = podway_apiserver::ApiServer::bind(podway_apiserver::Config {
        data_dir: data_dir.clone(),
        listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), args.api_port),
        pki: pki.clone(),
        kubelet_port: args.node_port,
    })
    .await
    .context("cannot start the API server")?;

    let node = podway_node::NodeAgent::bind(podway_node::Config {
        node_name: node_name.clone(),
        kubeconfig: data_dir.join("node.kubeconfig"),
        cri_socket: socket,
        listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), args.node_port),
        advertise_address: IpAddr::V4(Ipv4Addr::LOCALHOST),
        tls_cert: data_dir.join("pki/node.crt"),
        tls_key: data_dir.join("pki/node.key"),
        client_ca: data_dir.join("pki/ca.crt"),
        pod_log_dir: data_dir.join("pods"),
        root_dir: data_dir.join("node"),
        enable_debugging_handlers: true,
        log_rotation: args.log_rotation.policy(),
        stop_pods_on_exit: true,
    })
    .await
    .context("cannot start the node agent")?;

    let kubeconfig = data_dir.join("kubeconfig");
    say(&format!(
        "podway is up: API server https://127.0.0.1:{}, node {node_name}\n\
         kubeconfig: {kc}\n\
         try:\n  export KUBECONFIG={kc}\n  kubectl get nodes\n  \
         kubectl apply -f examples/demo-pod.yaml && kubectl exec -it demo -- sh\n\
         stop with Ctrl-C",
        api.local_addr().port(),
        kc = kubeconfig.display()
    ));

    let node_stop = CancellationToken::new();
    let rest_stop = CancellationToken::new();
    let mut node_task = tokio::spawn(node.run(node_stop.clone()));
    let mut api_task = tokio::spawn(api.run(rest_stop.clone()));
    let mut runtime_task = tokio::spawn(runtime.run(rest_stop.clone()));

    // Whichever ends first (a signal or a tier failing) stops the others, node agent first.
    let early = tokio::select! {
        _ = signal.cancelled() => None,
        result = &mut node_task => Some(("node agent", flatten(result))),
        result = &mut api_task => Some(("API server", flatten(result))),
        result = &mut runtime_task => Some(("container runtime", flatten(result))),
    };
    if let Some((tier, result)) = &early {
        tracing::error!(%tier, "stopped unexpectedly: {:?}", result);
    }
    node_stop.cancel();
    let node_result = if node_task.is_finished() && early.is_some() {
        Ok(())
    } else {
        flatten(node_task.await)
    };
    rest_stop.cancel();
    let api_result = if api_task.is_finished() && early.is_some() {
        Ok(())
    } else {
        flatten(api_task.await)
    };
    let runtime_result = if runtime_task.is_finished() && early.is_some() {
        Ok(())
    } else {
        flatten(runtime_task.await)
    };
    if let Some((tier, Err(err))) = early {
        return Err(err.context(format!("{tier} stopped")));
    }
    node_result.context("node agent")?;
    api_result.context("API server")?;
    runtime_result.context("container runtime")?;
    say("podway stopped");
    Ok(())
}

fn flatten<E>(joined: Result<Result<(), E>, tokio::task::JoinError>) -> anyhow::Result<()>
where
    E: std::error::Error + Send + Sync + 'static,
{
    match joined {
        Ok(result) => result.map_err(anyhow::Error::from),
        Err(err) => Err(anyhow::Error::from(err)),
    }
}

/// Prints a line for the person at the terminal. A closed stdout (the reader of a pipe is gone)
/// must not turn into a panic in the middle of starting or stopping pods.
fn say(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}").and_then(|()| out.flush());
}
