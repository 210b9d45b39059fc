//! podway's Kubernetes API server: core/v1 pods, nodes and namespaces over HTTPS (HTTP/1.1),
//! watch, discovery, Table output, a scheduler, client-certificate authentication and the
//! upgrade-aware proxy of the streaming subresources (`exec`, `attach`, `portforward`, `log`)
//! to the node's kubelet.

mod discovery;
mod error;
mod http;
mod kubelet;
mod object;
mod patch;
pub mod pki;
mod proto;
mod resource;
mod rest;
mod scheduler;
mod selector;
mod server;
mod table;
mod tls;
mod validate;
mod watch;

pub use error::Error;
pub use server::{ApiServer, Config};
