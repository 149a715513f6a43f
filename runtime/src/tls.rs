//! rustls plumbing written once: PEM loading that names the config key at
//! fault, the client config (fleet CA as the only root, optional client
//! certificate) that MQTT and HTTPS clients share, the mutual-TLS server
//! config of the cloud's store-facing HTTPS services, and the fleet
//! identity a client certificate carries.
//!
//! An agent's certificate (issued by `deploy/pki/o2c-certs.sh issue-agent`)
//! names its store and agent in a URI SAN, `o2c://stores/STORE/agents/AGENT`;
//! that, not a URL or a header, is who a store-facing service serves.

use std::path::Path;
use std::sync::Arc;

use o2c_protocol::{AgentId, StoreId};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A TLS file is missing, unreadable or not what its key says, or the
/// files do not fit together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {path}: {reason}")]
pub struct TlsError {
    /// The config key that names the file (`mqtt.tls.key_file`, ...).
    pub key: &'static str,
    /// The file.
    pub path: String,
    /// What is wrong with it.
    pub reason: String,
}

fn error(key: &'static str, path: &Path, reason: impl ToString) -> TlsError {
    TlsError {
        key,
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// Reads every certificate of a PEM file; an empty file is an error.
pub fn certificates(
    key: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    // Read first, so a missing or unreadable file says so plainly.
    let pem = std::fs::read(path).map_err(|e| error(key, path, e))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| error(key, path, format!("not a PEM certificate file ({e})")))?;
    if certs.is_empty() {
        return Err(error(key, path, "no PEM certificate in the file"));
    }
    Ok(certs)
}

/// Reads a PEM private key.
pub fn private_key(key: &'static str, path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = std::fs::read(path).map_err(|e| error(key, path, e))?;
    PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|e| error(key, path, format!("no usable PEM private key ({e})")))
}

/// A root store holding every certificate of a PEM bundle.
pub fn roots(key: &'static str, path: &Path) -> Result<rustls::RootCertStore, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in certificates(key, path)? {
        roots.add(cert).map_err(|e| error(key, path, e))?;
    }
    Ok(roots)
}

/// A PEM file and the config key that names it.
pub type KeyedPath<'a> = (&'static str, &'a Path);

/// The PEM files of one side of a connection, each with its config key.
#[derive(Debug, Clone, Copy)]
pub struct Files<'a> {
    /// The CA bundle: the server's trust root for a client, the client CA
    /// for a server.
    pub ca: KeyedPath<'a>,
    /// Own certificate and key: optional for a client, required for a
    /// server.
    pub identity: Option<(KeyedPath<'a>, KeyedPath<'a>)>,
}

/// A client config: `files.ca` as the only trust root and, for mutual TLS,
/// the client certificate and key.
pub fn client_config(files: Files<'_>) -> Result<rustls::ClientConfig, TlsError> {
    let (ca_key, ca) = files.ca;
    let builder = rustls::ClientConfig::builder().with_root_certificates(roots(ca_key, ca)?);
    match files.identity {
        Some(((cert_key, cert), (key_key, key))) => builder
            .with_client_auth_cert(certificates(cert_key, cert)?, private_key(key_key, key)?)
            .map_err(|e| error(key_key, key, e)),
        None => Ok(builder.with_no_client_auth()),
    }
}

/// A server config that requires a client certificate signed by
/// `files.ca`.
pub fn mtls_server_config(files: Files<'_>) -> Result<rustls::ServerConfig, TlsError> {
    let (ca_key, ca) = files.ca;
    let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots(ca_key, ca)?))
        .build()
        .map_err(|e| error(ca_key, ca, e))?;
    let ((cert_key, cert), (key_key, key)) = files.identity.ok_or_else(|| TlsError {
        key: "tls.cert_file",
        path: String::new(),
        reason: "a server needs its certificate and key".into(),
    })?;
    rustls::ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_single_cert(certificates(cert_key, cert)?, private_key(key_key, key)?)
        .map_err(|e| error(key_key, key, e))
}

/// Who a verified client certificate says it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FleetIdentity {
    /// A store agent: its URI SAN `o2c://stores/STORE/agents/AGENT`.
    Agent {
        /// The store.
        store: StoreId,
        /// The agent.
        agent: AgentId,
    },
    /// Anything else the fleet CA signed (a cloud service): no store.
    Other,
}

/// Reads the fleet identity of a client's end-entity certificate.
pub fn fleet_identity(cert: &CertificateDer<'_>) -> FleetIdentity {
    use x509_parser::extensions::GeneralName;
    let Ok((_, parsed)) = x509_parser::parse_x509_certificate(cert.as_ref()) else {
        return FleetIdentity::Other;
    };
    let Ok(Some(san)) = parsed.subject_alternative_name() else {
        return FleetIdentity::Other;
    };
    let mut found = san.value.general_names.iter().filter_map(|n| match n {
        GeneralName::URI(uri) => parse_agent_uri(uri),
        _ => None,
    });
    match (found.next(), found.next()) {
        (Some((store, agent)), None) => FleetIdentity::Agent { store, agent },
        // None, or two agent URIs: ambiguous, so no store.
        _ => FleetIdentity::Other,
    }
}

/// Parses `o2c://stores/STORE/agents/AGENT`.
pub fn parse_agent_uri(uri: &str) -> Option<(StoreId, AgentId)> {
    let rest = uri.strip_prefix("o2c://stores/")?;
    let (store, rest) = rest.split_once('/')?;
    let agent = rest.strip_prefix("agents/")?;
    Some((StoreId::new(store).ok()?, AgentId::new(agent).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_uris_parse_and_nothing_else_does() {
        let (s, a) = parse_agent_uri("o2c://stores/S001/agents/S001-A1").unwrap();
        assert_eq!((s.as_str(), a.as_str()), ("S001", "S001-A1"));
        for bad in [
            "o2c://stores/S001",
            "o2c://stores/S001/agents/",
            "o2c://stores//agents/A",
            "https://stores/S001/agents/A",
            "o2c://stores/S0 1/agents/A",
            "o2c://stores/S001/agents/A/x",
        ] {
            assert!(parse_agent_uri(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn missing_files_name_their_key() {
        let e = certificates("catalog.tls.cert_file", Path::new("/nonexistent.pem")).unwrap_err();
        assert_eq!(e.key, "catalog.tls.cert_file");
        assert!(e.to_string().contains("/nonexistent.pem"));
    }
}
