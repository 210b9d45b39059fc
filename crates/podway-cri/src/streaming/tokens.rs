//! The cache of streaming requests behind single-use URL tokens.
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use podway_stream::remotecommand::StreamOptions;

/// Random bytes per token: 128 bits, 22 base64url characters (the kubelet uses only 48 bits).
const TOKEN_BYTES: usize = 16;

/// A streaming request accepted over gRPC, waiting for its HTTP client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StreamRequest {
    /// `Exec`: run `cmd` in a container.
    Exec {
        /// The container.
        container_id: String,
        /// The command.
        cmd: Vec<String>,
        /// The streams, from the gRPC request.
        options: StreamOptions,
    },
    /// `Attach`: join a container's main process.
    Attach {
        /// The container.
        container_id: String,
        /// The streams, from the gRPC request.
        options: StreamOptions,
    },
    /// `PortForward`: connect to ports inside a sandbox's network namespace.
    PortForward {
        /// The sandbox.
        sandbox_id: String,
        /// Ports named in the gRPC request (used by the legacy WebSocket protocol).
        ports: Vec<u16>,
    },
}

impl StreamRequest {
    /// The URL path segment serving this kind of request.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            StreamRequest::Exec { .. } => "exec",
            StreamRequest::Attach { .. } => "attach",
            StreamRequest::PortForward { .. } => "portforward",
        }
    }
}

/// The cache is full.
#[derive(Debug, thiserror::Error)]
#[error("maximum number of in-flight requests exceeded")]
pub(crate) struct CacheFull;

/// Outstanding streaming requests by token; each token works once and only until its deadline.
pub(crate) struct TokenCache {
    entries: Mutex<HashMap<String, (Instant, StreamRequest)>>,
    ttl: Duration,
    max_in_flight: usize,
}

impl TokenCache {
    /// An empty cache.
    pub(crate) fn new(ttl: Duration, max_in_flight: usize) -> TokenCache {
        TokenCache {
            entries: Mutex::new(HashMap::new()),
            ttl,
            max_in_flight,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, (Instant, StreamRequest)>> {
        // A panic while holding the lock cannot leave the map half-updated: keep serving.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Stores `request` under a fresh random token and returns the token.
    pub(crate) fn insert(&self, request: StreamRequest) -> Result<String, CacheFull> {
        let now = Instant::now();
        let mut entries = self.lock();
        if entries.len() >= self.max_in_flight {
            entries.retain(|_, (deadline, _)| *deadline > now);
            if entries.len() >= self.max_in_flight {
                return Err(CacheFull);
            }
        }
        loop {
            let token = URL_SAFE_NO_PAD.encode(rand::random::<[u8; TOKEN_BYTES]>());
            if let std::collections::hash_map::Entry::Vacant(slot) = entries.entry(token.clone()) {
                slot.insert((now + self.ttl, request));
                return Ok(token);
            }
        }
    }

    /// Takes the request stored under `token` for a URL of `kind`. The token is spent by any
    /// lookup, even one of the wrong kind or after its deadline, which then finds nothing.
    pub(crate) fn take(&self, kind: &str, token: &str) -> Option<StreamRequest> {
        let (deadline, request) = self.lock().remove(token)?;
        (deadline > Instant::now() && request.kind() == kind).then_some(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port_forward() -> StreamRequest {
        StreamRequest::PortForward {
            sandbox_id: "sb".into(),
            ports: vec![80],
        }
    }

    #[test]
    fn token_is_single_use_and_long_enough() {
        let cache = TokenCache::new(Duration::from_secs(60), 10);
        let token = cache.insert(port_forward()).unwrap();
        assert_eq!(token.len(), 22);
        assert!(
            token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_eq!(cache.take("portforward", &token), Some(port_forward()));
        assert_eq!(cache.take("portforward", &token), None);
    }

    #[test]
    fn wrong_kind_spends_the_token() {
        let cache = TokenCache::new(Duration::from_secs(60), 10);
        let token = cache.insert(port_forward()).unwrap();
        assert_eq!(cache.take("exec", &token), None);
        assert_eq!(cache.take("portforward", &token), None);
    }

    #[test]
    fn expired_token_finds_nothing() {
        let cache = TokenCache::new(Duration::ZERO, 10);
        let token = cache.insert(port_forward()).unwrap();
        assert_eq!(cache.take("portforward", &token), None);
    }

    #[test]
    fn full_cache_refuses_until_entries_expire_or_are_taken() {
        let cache = TokenCache::new(Duration::from_secs(60), 2);
        let first = cache.insert(port_forward()).unwrap();
        cache.insert(port_forward()).unwrap();
        assert!(cache.insert(port_forward()).is_err());
        assert!(cache.take("portforward", &first).is_some());
        assert!(cache.insert(port_forward()).is_ok());

        let expiring = TokenCache::new(Duration::ZERO, 1);
        expiring.insert(port_forward()).unwrap();
        assert!(expiring.insert(port_forward()).is_ok());
    }
}
