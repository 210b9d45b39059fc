//! `podway`: Kubernetes' container-streaming path in one binary.
//!
//! `podway up` runs the API server, the node agent and the container runtime in one process tree;
//! `server`, `node` and `runtime` run one tier each; `image` manages the runtime's images. The
//! hidden `shim` and `pause` commands are re-executed by the runtime and must start before any
//! async runtime exists, so they are dispatched first.

mod cli;
mod daemons;
mod image;
mod shutdown;
mod up;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    // The runtime's helper processes: no tokio, no tracing setup, no clap.
    match args.get(1).and_then(|a| a.to_str()) {
        Some("shim") => return exit_code(podway_runtime::shim::main(args[2..].to_vec())),
        Some("pause") => return exit_code(podway_runtime::pause::main(args[2..].to_vec())),
        _ => {}
    }
    let cli = cli::Cli::parse_from(args);
    init_tracing(cli.log_level.as_deref());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("podway: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("podway: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn exit_code(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

fn init_tracing(level: Option<&str>) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level.unwrap_or("info")))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        // When stderr is gone (`podway up 2>&1 | tee` after Ctrl-C killed tee), reporting the
        // failed write would eprintln! and panic whichever task logged, e.g. the one that turns
        // the signal into a shutdown. Logs are best effort; shutting down is not.
        .log_internal_errors(false)
        .init();
}
