//! The container runtime: content-addressed images, overlayfs snapshots, pod sandboxes held by a
//! `podway pause` process, containers run through an OCI runtime CLI (runc) under a detached
//! per-pod monitor (`podway shim`), and the exec / attach / port-forward / log primitives.
//!
//! CONTRACT (fixed by the lead; `podway-cri` and the `podway` binary compile against it):
//! [`Runtime`] and its methods, [`ProcessIo`], [`images::ImageStore`], [`shim::main`], [`pause::main`].

pub mod api;
mod attach;
mod bundle;
mod container;
mod cri_log;
mod detached;
mod exec;
pub mod images;
mod netns;
mod oci_runtime;
pub mod pause;
mod reference;
mod sandbox;
pub mod shim;
mod snapshots;
mod tty;
mod util;

pub use api::*;
