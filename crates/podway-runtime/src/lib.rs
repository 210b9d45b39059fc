//! The container runtime: content-addressed images, overlayfs snapshots, pod sandboxes held by a
//! `podway pause` process, containers run through an OCI runtime CLI (runc) under a detached
//! per-pod monitor (`podway shim`), and the exec / attach / port-forward / log primitives.
//!
//! CONTRACT (fixed by the lead; `podway-cri` and the `podway` binary compile against it):
//! [`Runtime`] and its methods, [`ProcessIo`], [`images::ImageStore`], [`shim::main`], [`pause::main`].

pub mod api;
pub mod images;
pub mod pause;
pub mod shim;

pub use api::*;
