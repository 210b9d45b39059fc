//! The serving TLS configuration of the debugging handlers.
use std::{io::BufReader, path::Path, sync::Arc};

use rustls::{
    RootCertStore, ServerConfig,
    crypto::ring,
    pki_types::{CertificateDer, PrivateKeyDer},
    server::WebPkiClientVerifier,
};

use crate::Error;

fn read(path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let pem = read(path)?;
    let certs = rustls_pemfile::certs(&mut BufReader::new(pem.as_slice()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::Tls(format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(Error::Tls(format!(
            "{}: no certificate in it",
            path.display()
        )));
    }
    Ok(certs)
}

fn key(path: &Path) -> Result<PrivateKeyDer<'static>, Error> {
    let pem = read(path)?;
    rustls_pemfile::private_key(&mut BufReader::new(pem.as_slice()))
        .map_err(|e| Error::Tls(format!("{}: {e}", path.display())))?
        .ok_or_else(|| Error::Tls(format!("{}: no private key in it", path.display())))
}

/// A server config presenting `cert`/`key`, speaking HTTP/1.1 (ALPN), and asking clients for a
/// certificate signed by `client_ca` (optional at the TLS level: requests without one are
/// answered 401 by the handlers).
pub(crate) fn server_config(
    cert: &Path,
    key_path: &Path,
    client_ca: &Path,
) -> Result<Arc<ServerConfig>, Error> {
    let provider = Arc::new(ring::default_provider());
    let mut roots = RootCertStore::empty();
    for ca in certs(client_ca)? {
        roots
            .add(ca)
            .map_err(|e| Error::Tls(format!("{}: {e}", client_ca.display())))?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| Error::Tls(format!("client CA {}: {e}", client_ca.display())))?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs(cert)?, key(key_path)?)
        .map_err(|e| Error::Tls(format!("{}: {e}", cert.display())))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
