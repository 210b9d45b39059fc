//! TLS: the serving configuration (client certificates optional, verified against the CA), the
//! client configuration towards kubelets, and the identity in a client certificate.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::Error;
use crate::pki::Pki;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let pem = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::pki(path, e))?;
    if certs.is_empty() {
        return Err(Error::pki(path, "no certificate in file"));
    }
    Ok(certs)
}

fn key(path: &Path) -> Result<PrivateKeyDer<'static>, Error> {
    let pem = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|e| Error::pki(path, e))?
        .ok_or_else(|| Error::pki(path, "no private key in file"))
}

fn roots(pki: &Pki) -> Result<RootCertStore, Error> {
    let mut roots = RootCertStore::empty();
    for cert in certs(&pki.ca_cert)? {
        roots.add(cert).map_err(|e| Error::pki(&pki.ca_cert, e))?;
    }
    Ok(roots)
}

/// The API server's TLS configuration: HTTP/1.1 only, client certificates verified when given.
pub(crate) fn server_config(pki: &Pki) -> Result<Arc<ServerConfig>, Error> {
    let provider = provider();
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots(pki)?), provider.clone())
            .allow_unauthenticated()
            .build()
            .map_err(|e| Error::Tls(e.to_string()))?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs(&pki.apiserver_cert)?, key(&pki.apiserver_key)?)
        .map_err(|e| Error::Tls(format!("{}: {e}", pki.apiserver_cert.display())))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The client configuration towards kubelets: the apiserver-kubelet-client certificate, the
/// node's serving certificate verified against the CA.
pub(crate) fn kubelet_client_config(pki: &Pki) -> Result<Arc<ClientConfig>, Error> {
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_root_certificates(roots(pki)?)
        .with_client_auth_cert(
            certs(&pki.kubelet_client_cert)?,
            key(&pki.kubelet_client_key)?,
        )
        .map_err(|e| Error::Tls(format!("{}: {e}", pki.kubelet_client_cert.display())))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// An authenticated user: the certificate's CN and O values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct User {
    /// The user name (CN).
    pub name: String,
    /// The groups (O).
    pub groups: Vec<String>,
}

/// The user named by a verified client certificate.
pub(crate) fn user_of(cert: &CertificateDer<'_>) -> Option<User> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let subject = parsed.subject();
    let name = subject
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())?
        .to_string();
    let groups = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_string))
        .collect();
    Some(User { name, groups })
}
