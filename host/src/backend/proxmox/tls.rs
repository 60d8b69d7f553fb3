//! How the API client trusts a Proxmox host's certificate. Proxmox nodes
//! use self-signed certificates, so the operator names a CA file or pins the
//! certificate's SHA-256 fingerprint (as the PVE web UI shows it). There is
//! no silent "accept anything": `Insecure` exists, and says so every start.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};

use crate::backend::BackendError;

#[derive(Clone, Debug)]
pub enum PveTls {
    /// The system's CA roots (a node behind a publicly trusted certificate).
    SystemRoots,
    /// A PEM CA certificate (e.g. the cluster's `pve-root-ca.pem`).
    CaFile(PathBuf),
    /// The server certificate's SHA-256 fingerprint, `AB:CD:…` or plain hex.
    Fingerprint(String),
    /// Accept any certificate. Logged as a warning whenever a client is made.
    Insecure,
}

/// Normalises `AB:CD:ef…` or `abcdef…` to lowercase hex without colons.
pub fn normalise_fingerprint(text: &str) -> Result<String, BackendError> {
    let hex: String = text.chars().filter(|c| *c != ':').collect::<String>().to_ascii_lowercase();
    if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(hex)
    } else {
        Err(BackendError::InvalidInput(format!(
            "`{text}` is not a SHA-256 certificate fingerprint (64 hex digits, colons allowed)"
        )))
    }
}

/// `AB:CD:…`, as the PVE UI shows fingerprints.
pub fn display_fingerprint(der: &[u8]) -> String {
    let digest = Sha256::digest(der);
    digest.iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}

/// Apply the policy to a reqwest client builder.
pub fn configure(builder: reqwest::ClientBuilder, tls: &PveTls) -> Result<reqwest::ClientBuilder, BackendError> {
    match tls {
        PveTls::SystemRoots => Ok(builder),
        PveTls::CaFile(path) => {
            let pem = std::fs::read(path)
                .map_err(|err| BackendError::InvalidInput(format!("CA file {}: {err}", path.display())))?;
            let ca = reqwest::Certificate::from_pem(&pem)
                .map_err(|err| BackendError::InvalidInput(format!("CA file {}: {err}", path.display())))?;
            Ok(builder.tls_built_in_root_certs(false).add_root_certificate(ca))
        }
        PveTls::Fingerprint(text) => {
            let expected = normalise_fingerprint(text)?;
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let verifier = PinnedCertificate { expected, provider: provider.clone() };
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|err| BackendError::Failed(format!("TLS setup: {err}")))?
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verifier))
                .with_no_client_auth();
            Ok(builder.use_preconfigured_tls(config))
        }
        PveTls::Insecure => {
            tracing::warn!(
                "TLS verification of the Proxmox API is OFF (insecure): anyone on the path can read the API token"
            );
            Ok(builder.danger_accept_invalid_certs(true))
        }
    }
}

/// Accepts exactly the certificate with the pinned fingerprint; signatures
/// are still checked, so the peer must hold that certificate's key.
#[derive(Debug)]
struct PinnedCertificate {
    expected: String,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for PinnedCertificate {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let got = hex::encode(Sha256::digest(end_entity.as_ref()));
        if got == self.expected {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "the Proxmox host's certificate has fingerprint {}, not the pinned one",
                display_fingerprint(end_entity.as_ref())
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_read_with_or_without_colons() {
        let hex = "ab".repeat(32);
        let colons = vec!["AB"; 32].join(":");
        assert_eq!(normalise_fingerprint(&colons).unwrap(), hex);
        assert_eq!(normalise_fingerprint(&hex).unwrap(), hex);
        assert!(normalise_fingerprint("AB:CD").is_err());
        assert!(normalise_fingerprint(&"zz".repeat(32)).is_err());
    }

    #[test]
    fn display_matches_the_pve_style() {
        let shown = display_fingerprint(b"x");
        assert_eq!(shown.len(), 32 * 3 - 1);
        assert_eq!(normalise_fingerprint(&shown).unwrap(), hex::encode(Sha256::digest(b"x")));
    }
}
