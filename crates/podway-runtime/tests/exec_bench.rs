//! The measuring side of `bench/exec_fast.sh` (ignored: run by the script, never in CI): two
//! containers (one unconfined, one with the `RuntimeDefault` seccomp filter), then
//! `EXEC_BENCH_N` rounds (default 200) of `true` through each way of running it, interleaved so
//! that a busy machine slows them alike. Prints one `SAMPLE <way> <µs>` line
//! per run; the script turns them into a table. Nothing is asserted about the times.
mod common;

use std::time::Instant;

use common::{Fixture, strings};
use podway_runtime::SeccompProfile;

/// The ways `true` is run, by the names the samples carry (`-seccomp`: in the container with
/// the `RuntimeDefault` filter).
const WAYS: [&str; 6] = [
    "fast",
    "runtime-runc",
    "runc-exec",
    "nsenter",
    "fast-seccomp",
    "runtime-runc-seccomp",
];

/// Runs `cmd` to completion; panics unless it succeeds.
fn run(cmd: &mut std::process::Command) {
    let status = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(status.success(), "{cmd:?}: {status}");
}

#[tokio::test]
#[ignore = "a benchmark: run by bench/exec_fast.sh"]
async fn exec_true_latency_samples() {
    let rounds: usize = std::env::var("EXEC_BENCH_N")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(200);
    // `EXEC_BENCH_WAYS=fast,nsenter` measures only those (default: all of them).
    let ways: Vec<usize> = std::env::var("EXEC_BENCH_WAYS")
        .ok()
        .map(|w| {
            w.split(',')
                .filter_map(|name| WAYS.iter().position(|&n| n == name))
                .collect()
        })
        .unwrap_or_else(|| (0..WAYS.len()).collect());
    let f = Fixture::new().await;
    f.import_demo();
    let sandbox = f.sandbox("bench").await;
    let id = f.container(&sandbox, "main", &["sleep", "100000"]).await;
    let confined = f
        .container_with(&sandbox, "confined", &["sleep", "100000"], |s| {
            s.security.seccomp = SeccompProfile::RuntimeDefault;
        })
        .await;
    let rt = f.rt().clone();
    let pid = rt
        .container(&id)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .pid
        .to_string();
    let runc_root = f.config.state_dir.join("runc");
    let exec_true = |fast: bool, id: &str| {
        let rt = rt.clone();
        let id = id.to_string();
        async move {
            podway_runtime::nsexec::set_enabled(fast);
            let out = rt
                .exec_sync(&id, strings(&["true"]), None)
                .await
                .unwrap_or_else(|e| panic!("exec: {e}"));
            assert_eq!(out.exit_code, 0);
        }
    };
    // Warm-up: page cache, first-use paths.
    for fast in [true, false] {
        exec_true(fast, &id).await;
        exec_true(fast, &confined).await;
    }
    for round in 0..rounds {
        // Rotate the order every round so that none always runs first.
        for k in 0..ways.len() {
            let way = ways[(round + k) % ways.len()];
            let start = Instant::now();
            match way {
                0 => exec_true(true, &id).await,
                1 => exec_true(false, &id).await,
                2 => run(std::process::Command::new(&f.config.oci_runtime)
                    .arg("--root")
                    .arg(&runc_root)
                    .args(["exec", &id, "true"])),
                4 => exec_true(true, &confined).await,
                5 => exec_true(false, &confined).await,
                _ => run(std::process::Command::new("nsenter").args(["-a", "-t", &pid, "true"])),
            }
            println!("SAMPLE {} {}", WAYS[way], start.elapsed().as_micros());
        }
    }
    podway_runtime::nsexec::set_enabled(true);
}
