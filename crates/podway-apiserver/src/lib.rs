//! podway's Kubernetes API server: core/v1 pods, nodes and namespaces over HTTPS (HTTP/1.1),
//! watch, discovery, Table output, a scheduler, client-certificate authentication and the
//! upgrade-aware proxy of the streaming subresources (`exec`, `attach`, `portforward`, `log`)
//! to the node's kubelet.
//!
//! Entry points: [`pki::ensure`] creates the certificates and kubeconfigs, [`ApiServer::bind`]
//! opens the SQLite store (`DATA/store.db`) and the listener, [`ApiServer::run`] serves until
//! cancelled (the scheduler, the namespace finalizer and the pod garbage collector run with it).
//!
//! Known differences from kube-apiserver: every authenticated user may do everything (no RBAC);
//! only legacy discovery (no aggregated discovery, no API groups); the OpenAPI v3 documents list
//! operations and parameters only (no schemas), as does the protobuf OpenAPI v2 document; `fieldValidation` is
//! accepted but unknown fields are kept, not rejected; server-side apply is a strategic merge
//! without field ownership (`managedFields`); protobuf request bodies are understood for
//! namespaces only (what `kubectl create namespace` sends); `limit`/`continue` are ignored (lists
//! are never paged); nodes are reached at their InternalIP first, then Hostname, InternalDNS,
//! ExternalIP, ExternalDNS.

mod discovery;
mod error;
mod http;
mod kubelet;
mod object;
mod openapi_v2;
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
