//! Certificate sign-in (Microsoft identity platform certificate credentials). Access tokens
//! are opaque to clients (Microsoft identity platform, "Access tokens"): nothing here reads
//! one; what the app was granted is read from Graph (`preflight.rs`).

use crate::{Error, Result, Secret};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use sha2::{Digest, Sha256};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long a client assertion stays valid: Microsoft asks for a short expiry.
const ASSERTION_LIFETIME: Duration = Duration::from_secs(300);

/// The app's certificate and its private key.
#[derive(Clone)]
pub struct ClientCertificate {
    key: EncodingKey,
    /// base64url(SHA-256(certificate DER)): the assertion's `x5t#S256` header.
    thumbprint: String,
    not_after: SystemTime,
    subject: String,
}

impl std::fmt::Debug for ClientCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCertificate")
            .field("thumbprint", &self.thumbprint)
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

impl ClientCertificate {
    /// From the PEM of the RSA private key (PKCS#8 or PKCS#1) and of the certificate uploaded to
    /// the app registration.
    pub fn from_pem(key_pem: &Secret, cert_pem: &str) -> Result<Self> {
        let (_, block) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes())
            .map_err(|e| Error::Auth(format!("certificate is not PEM: {e}")))?;
        let cert = block.parse_x509().map_err(|e| Error::Auth(format!("certificate does not parse: {e}")))?;
        let not_after =
            UNIX_EPOCH + Duration::from_secs(u64::try_from(cert.validity().not_after.timestamp()).unwrap_or(0));
        let key = EncodingKey::from_rsa_pem(key_pem.expose().as_bytes())
            .map_err(|e| Error::Auth(format!("private key is not an RSA PEM key: {e}")))?;
        Ok(ClientCertificate {
            key,
            thumbprint: URL_SAFE_NO_PAD.encode(Sha256::digest(&block.contents)),
            not_after,
            subject: cert.subject().to_string(),
        })
    }

    /// When the certificate stops being accepted.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// A fresh signed client assertion for the token endpoint `audience` (PS256, as Microsoft
    /// recommends; `x5t#S256` names the certificate).
    pub fn assertion(&self, client_id: &str, audience: &str) -> Result<Secret> {
        #[allow(clippy::disallowed_methods)] // Entra ID checks exp/nbf against the wall clock
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let mut header = Header::new(Algorithm::PS256);
        header.x5t_s256 = Some(self.thumbprint.clone());
        let mut jti = [0u8; 16];
        getrandom::fill(&mut jti).map_err(|e| Error::Auth(format!("no randomness for the assertion: {e}")))?;
        let claims = serde_json::json!({
            "aud": audience, "iss": client_id, "sub": client_id, "jti": hex::encode(jti),
            "nbf": now, "iat": now, "exp": now + ASSERTION_LIFETIME.as_secs(),
        });
        jsonwebtoken::encode(&header, &claims, &self.key)
            .map(Secret::new)
            .map_err(|e| Error::Auth(format!("cannot sign the client assertion: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_keys_and_certificates_are_refused_without_echoing_the_key() {
        let key = Secret::new("-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----\n");
        for cert in ["", "not a certificate", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"] {
            let err = ClientCertificate::from_pem(&key, cert).unwrap_err().to_string();
            assert!(err.contains("certificate") && !err.contains("c2VjcmV0"), "{err}");
        }
    }
}
