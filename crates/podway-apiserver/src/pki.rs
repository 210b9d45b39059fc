//! The cluster's certificates: a CA, the API server's serving cert, client certs for the admin,
//! for the API server towards kubelets, and for the node; plus the two kubeconfig files.
//!
//! Everything is created once into `DATA/pki/` and reused on later starts.

use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

use crate::Error;

/// Paths of the cluster's certificates and kubeconfigs.
#[derive(Debug, Clone)]
pub struct Pki {
    /// The CA certificate (PEM).
    pub ca_cert: PathBuf,
    /// The CA private key (PEM).
    pub ca_key: PathBuf,
    /// The API server's serving certificate.
    pub apiserver_cert: PathBuf,
    /// The API server's serving key.
    pub apiserver_key: PathBuf,
    /// The admin client certificate (CN admin, O system:masters).
    pub admin_cert: PathBuf,
    /// The admin client key.
    pub admin_key: PathBuf,
    /// The API server's client certificate towards kubelets (CN podway-apiserver).
    pub kubelet_client_cert: PathBuf,
    /// The API server's client key towards kubelets.
    pub kubelet_client_key: PathBuf,
    /// The node's certificate (CN system:node:NODE, O system:nodes), client and serving.
    pub node_cert: PathBuf,
    /// The node's key.
    pub node_key: PathBuf,
    /// The admin kubeconfig (`DATA/kubeconfig`).
    pub admin_kubeconfig: PathBuf,
    /// The node kubeconfig (`DATA/node.kubeconfig`).
    pub node_kubeconfig: PathBuf,
}

/// The CA's distinguished name; issued certificates name it as their issuer.
const CA_CN: &str = "podway-ca";

/// Creates (or reuses) the certificates under `data_dir/pki` and writes both kubeconfigs for
/// `https://127.0.0.1:<api_port>`. `node_name` names the node certificate.
pub fn ensure(data_dir: &Path, node_name: &str, api_port: u16) -> Result<Pki, Error> {
    let dir = data_dir.join("pki");
    fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let file = |name: &str| dir.join(name);
    let pki = Pki {
        ca_cert: file("ca.crt"),
        ca_key: file("ca.key"),
        apiserver_cert: file("apiserver.crt"),
        apiserver_key: file("apiserver.key"),
        admin_cert: file("admin.crt"),
        admin_key: file("admin.key"),
        kubelet_client_cert: file("apiserver-kubelet-client.crt"),
        kubelet_client_key: file("apiserver-kubelet-client.key"),
        node_cert: file("node.crt"),
        node_key: file("node.key"),
        admin_kubeconfig: data_dir.join("kubeconfig"),
        node_kubeconfig: data_dir.join("node.kubeconfig"),
    };

    let ca_key = if pki.ca_cert.exists() && pki.ca_key.exists() {
        let pem = read(&pki.ca_key)?;
        KeyPair::from_pem(&pem).map_err(|e| Error::pki(&pki.ca_key, e))?
    } else {
        let key = new_key(&pki.ca_key)?;
        let cert = ca_params()
            .self_signed(&key)
            .map_err(|e| Error::pki(&pki.ca_cert, e))?;
        write(&pki.ca_cert, &cert.pem())?;
        write(&pki.ca_key, &key.serialize_pem())?;
        key
    };
    let issuer = Issuer::new(ca_params(), ca_key);
    let host = hostname();
    let serving_sans = serving_sans(&host);

    let specs = [
        (
            &pki.apiserver_cert,
            &pki.apiserver_key,
            "podway-apiserver",
            None,
            true,
            false,
        ),
        (
            &pki.admin_cert,
            &pki.admin_key,
            "admin",
            Some("system:masters"),
            false,
            true,
        ),
        (
            &pki.kubelet_client_cert,
            &pki.kubelet_client_key,
            "podway-apiserver",
            Some("system:masters"),
            false,
            true,
        ),
    ];
    for (cert, key, cn, org, server, client) in specs {
        let sans = if server {
            serving_sans.clone()
        } else {
            Vec::new()
        };
        issue(&issuer, cert, key, cn, org, sans, server, client)?;
    }
    let node_cn = format!("system:node:{node_name}");
    issue(
        &issuer,
        &pki.node_cert,
        &pki.node_key,
        &node_cn,
        Some("system:nodes"),
        serving_sans,
        true,
        true,
    )?;

    let server = format!("https://127.0.0.1:{api_port}");
    write_kubeconfig(
        &pki,
        &pki.admin_kubeconfig,
        &server,
        "admin",
        &pki.admin_cert,
        &pki.admin_key,
    )?;
    write_kubeconfig(
        &pki,
        &pki.node_kubeconfig,
        &server,
        &node_cn,
        &pki.node_cert,
        &pki.node_key,
    )?;
    Ok(pki)
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, CA_CN);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_after = rcgen::date_time_ymd(2099, 1, 1);
    params
}

fn serving_sans(host: &str) -> Vec<SanType> {
    let mut sans = vec![
        SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        SanType::IpAddress(IpAddr::V6(Ipv6Addr::LOCALHOST)),
    ];
    let mut names = vec!["localhost".to_string()];
    if !host.is_empty() && host != "localhost" {
        names.push(host.to_string());
    }
    for name in names {
        if let Ok(dns) = name.clone().try_into() {
            sans.push(SanType::DnsName(dns));
        }
    }
    sans
}

/// Issues one leaf certificate unless both files already exist.
#[allow(clippy::too_many_arguments)]
fn issue(
    issuer: &Issuer<'_, KeyPair>,
    cert_path: &Path,
    key_path: &Path,
    cn: &str,
    org: Option<&str>,
    sans: Vec<SanType>,
    server: bool,
    client: bool,
) -> Result<(), Error> {
    if cert_path.exists() && key_path.exists() {
        return Ok(());
    }
    let key = new_key(key_path)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, cn);
    if let Some(org) = org {
        params
            .distinguished_name
            .push(DnType::OrganizationName, org);
    }
    params.subject_alt_names = sans;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    if server {
        params
            .extended_key_usages
            .push(ExtendedKeyUsagePurpose::ServerAuth);
    }
    if client {
        params
            .extended_key_usages
            .push(ExtendedKeyUsagePurpose::ClientAuth);
    }
    params.use_authority_key_identifier_extension = true;
    params.not_after = rcgen::date_time_ymd(2099, 1, 1);
    let cert = params
        .signed_by(&key, issuer)
        .map_err(|e| Error::pki(cert_path, e))?;
    write(key_path, &key.serialize_pem())?;
    write(cert_path, &cert.pem())?;
    Ok(())
}

fn new_key(path: &Path) -> Result<KeyPair, Error> {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| Error::pki(path, e))
}

fn write_kubeconfig(
    pki: &Pki,
    path: &Path,
    server: &str,
    user: &str,
    cert: &Path,
    key: &Path,
) -> Result<(), Error> {
    let b64 = |p: &Path| -> Result<String, Error> {
        Ok(base64::engine::general_purpose::STANDARD.encode(read(p)?))
    };
    let config = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "podway", "cluster": {
            "server": server,
            "certificate-authority-data": b64(&pki.ca_cert)?,
        }}],
        "users": [{"name": user, "user": {
            "client-certificate-data": b64(cert)?,
            "client-key-data": b64(key)?,
        }}],
        "contexts": [{"name": "podway", "context": {"cluster": "podway", "user": user}}],
        "current-context": "podway",
    });
    let yaml = serde_yaml::to_string(&config).map_err(|e| Error::pki(path, e))?;
    write(path, &yaml)
}

fn read(path: &Path) -> Result<String, Error> {
    fs::read_to_string(path).map_err(|e| Error::io(path, e))
}

fn write(path: &Path, contents: &str) -> Result<(), Error> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    file.write_all(contents.as_bytes())
        .map_err(|e| Error::io(path, e))
}

/// The machine's host name (empty when it cannot be read).
pub(crate) fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}
