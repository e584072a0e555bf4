//! The token endpoint's two client credentials (a secret, or a certificate's signed client
//! assertion) and the access tokens it mints: JWT-shaped, carrying the app's `roles` and
//! `wids` as Entra ID's do, so a client can read what it was granted.

use crate::access::Grants;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The app's registered certificate.
#[derive(Clone)]
pub struct Certificate {
    key: DecodingKey,
    /// base64url(SHA-256(DER)): the `x5t#S256` a client assertion names it by.
    thumbprint: String,
    not_after: SystemTime,
}

impl std::fmt::Debug for Certificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certificate").field("thumbprint", &self.thumbprint).finish_non_exhaustive()
    }
}

impl Certificate {
    pub fn from_pem(pem: &str) -> Result<Self, String> {
        let (_, pem_block) =
            x509_parser::pem::parse_x509_pem(pem.as_bytes()).map_err(|e| format!("certificate PEM: {e}"))?;
        let cert = pem_block.parse_x509().map_err(|e| format!("certificate: {e}"))?;
        let not_after =
            UNIX_EPOCH + Duration::from_secs(u64::try_from(cert.validity().not_after.timestamp()).unwrap_or(0));
        let key = DecodingKey::from_rsa_pem(pem.as_bytes()).map_err(|e| format!("certificate key: {e}"))?;
        Ok(Certificate { key, thumbprint: URL_SAFE_NO_PAD.encode(Sha256::digest(&pem_block.contents)), not_after })
    }
}

/// An OAuth error: (status, error, AADSTS description).
pub type OAuthError = (u16, &'static str, String);

/// Checks a `private_key_jwt` client assertion (Microsoft identity platform certificate
/// credentials): RS256 or PS256, `x5t#S256` naming the registered certificate, `aud` the token
/// endpoint, `iss` = `sub` = the client id, a `jti`, unexpired (with `nbf` honoured).
pub fn verify_assertion(
    cert: Option<&Certificate>,
    assertion: &str,
    client_id: &str,
    token_endpoint: &str,
    now: SystemTime,
) -> Result<(), OAuthError> {
    let invalid = |d: &str| (401, "invalid_client", d.to_string());
    let Some(cert) = cert else {
        return Err(invalid(
            "AADSTS700027: Client assertion failed signature validation: no certificate is registered for the application.",
        ));
    };
    let header = jsonwebtoken::decode_header(assertion)
        .map_err(|_| (400, "invalid_request", "AADSTS50027: JWT token is invalid or malformed.".to_string()))?;
    if !matches!(header.alg, Algorithm::RS256 | Algorithm::PS256) {
        return Err(invalid("AADSTS5002738: Invalid JWT token. 'alg' must be RS256 or PS256."));
    }
    if header.x5t_s256.as_deref() != Some(cert.thumbprint.as_str()) {
        return Err(invalid(
            "AADSTS700027: Client assertion failed signature validation: the key was not found (x5t#S256 names no registered certificate).",
        ));
    }
    if now >= cert.not_after {
        return Err(invalid("AADSTS700027: The certificate used to sign the client assertion is expired."));
    }
    let mut validation = Validation::new(header.alg);
    validation.set_audience(&[token_endpoint]);
    validation.set_issuer(&[client_id]);
    validation.sub = Some(client_id.to_string());
    validation.set_required_spec_claims(&["exp", "aud", "iss", "sub"]);
    validation.leeway = 0;
    validation.validate_nbf = true;
    let data = jsonwebtoken::decode::<serde_json::Value>(assertion, &cert.key, &validation).map_err(|e| {
        use jsonwebtoken::errors::ErrorKind;
        match e.kind() {
            ErrorKind::ExpiredSignature => {
                invalid("AADSTS700024: Client assertion is not within its valid time range.")
            }
            ErrorKind::InvalidAudience => {
                invalid("AADSTS700016: The client assertion's audience is not the token endpoint.")
            }
            ErrorKind::InvalidSignature => invalid("AADSTS700027: Client assertion failed signature validation."),
            _ => invalid(&format!("AADSTS700023: Invalid client assertion ({e}).")),
        }
    })?;
    if data.claims.get("jti").and_then(|j| j.as_str()).is_none_or(str::is_empty) {
        return Err(invalid("AADSTS700023: The client assertion has no jti claim."));
    }
    Ok(())
}

/// A JWT-shaped access token (header.claims.signature) with the grants as claims; the
/// simulator looks it up rather than verifying it, as only it reads it.
pub fn mint(grants: &Grants, audience: &str, tenant: &str, client_id: &str, ttl: Duration, nonce: &str) -> String {
    #[allow(clippy::disallowed_methods)] // the simulator is the remote server: its own wall clock
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let header = json!({"typ": "JWT", "alg": "RS256", "kid": "repli-sim"});
    let claims = json!({
        "aud": audience, "iss": format!("https://sts.windows.net/{tenant}/"), "tid": tenant,
        "appid": client_id, "idtyp": "app", "iat": now, "nbf": now, "exp": now + ttl.as_secs(),
        "roles": grants.app_roles, "wids": grants.wids(),
    });
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        URL_SAFE_NO_PAD.encode(nonce)
    )
}
