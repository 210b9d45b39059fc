//! The container runtime: content-addressed images, overlayfs snapshots, pod sandboxes held by a
//! `podway pause` process, containers run through an OCI runtime CLI (runc) under a detached
//! monitor (`podway shim`, one per pod), and the exec / attach / port-forward /
//! log primitives.
//!
//! CONTRACT (fixed by the lead; `podway-cri` and the `podway` binary compile against it):
//! [`Runtime`] and its methods, [`ProcessIo`], [`images::ImageStore`], [`shim::main`], [`pause::main`].
//!
//! On disk (`DATA` = [`RuntimeConfig::data_dir`], `STATE` = [`RuntimeConfig::state_dir`]):
//!
//! ```text
//! DATA/images/blobs/sha256/<hex>      blobs, digest-verified, written by temp file + rename
//! DATA/images/index.json              { "names": { "docker.io/library/busybox:1.35": "sha256:<manifest>" } }
//! DATA/images/ingest/<hex>           partial registry downloads (resumed by range requests)
//! DATA/images/index.lock              flock held by imports, removals and garbage collection
//! DATA/snapshots/<layer hex>/         each layer unpacked once (overlayfs whiteouts)
//! DATA/sandboxes/<id>/sandbox.json    spec, pause and pod monitor pids + start times, stopped flag
//! DATA/sandboxes/<id>/{hostname,hosts,resolv.conf,pause.log,shim.log}
//! DATA/sandboxes/<id>/shm/            the pod's /dev/shm (tmpfs), bound into its containers
//! DATA/containers/<id>/container.json spec, image id, layers, pids + start times, start error
//! DATA/containers/<id>/config.json    the OCI bundle (rootfs/ = overlay of snapshots + upper/ work/)
//! DATA/containers/<id>/exit.json      written by the shim: exit code, finish time
//! DATA/containers/<id>/{runc.log,init.pid}
//! STATE/runc/                         runc --root
//! STATE/shims/<sandbox id[..16]>.sock the pod monitor's control socket (protocol: `shim`)
//! STATE/attach/<id[..16]>.sock        a container's attach socket, served by the pod's monitor
//!                                     (.console: runc's console socket)
//! STATE/exec/                         process.json and pid files of running execs
//! ```
//!
//! The records are also held in memory (`index.rs`), loaded from disk when the runtime opens and
//! updated with every write, so listing and status read no file; the process checks (pid + start
//! time) stay live, so a reopened runtime finds the containers its monitors kept running. One
//! runtime process owns a data folder's containers and sandboxes.

pub mod api;
mod attach;
mod bundle;
mod container;
mod cri_log;
mod detached;
mod exec;
pub mod images;
pub mod import;
mod index;
pub mod killall;
mod netns;
pub mod nsexec;
mod oci_runtime;
pub mod pause;
pub mod pull;
mod reference;
mod resident;
mod resources;
mod sandbox;
mod seccomp_bpf;
mod security;
pub mod shim;
mod snapshots;
pub mod stats;
mod tty;
mod util;

pub use api::*;
