//! The second factor of ops, admin and auditor accounts: TOTP (RFC 6238, through `totp-rs`:
//! HMAC-SHA1, 6 digits, 30-second steps, one step of skew either way), enrolled at the first
//! sign-in by scanning a QR code, with ten single-use recovery codes.
//!
//! - The secret is sealed at rest with ChaCha20-Poly1305 (ring), under a key in a file beside
//!   the database (`accounts.totp_key_file`), the user id as associated data (a sealed secret
//!   moved to another account does not open). The database alone does not give it away.
//! - A code is accepted once: the store keeps the last time step used and only a later step
//!   passes (RFC 6238 § 5.2).
//! - Recovery codes are 80 random bits each, shown once; only their SHA-256 is kept.
//! - Between the password and the code, the sign-in is a *ticket* held here, in memory, for
//!   five minutes (a restart forgets it: the person types their password again). The ticket
//!   of an account still to enrol carries the secret being enrolled: nothing is written before
//!   the first code proves the authenticator holds it.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use jiff::{SignedDuration, Timestamp};
use ring::aead;
use totp_rs::{Algorithm, Builder, Totp};

use crate::AppError;
use crate::audit_key::{self, KeyError};

/// The name authenticator apps show above the code.
pub const ISSUER: &str = "Repli";
/// Recovery codes issued at enrolment.
pub const RECOVERY_CODES: usize = 10;
/// How long a sign-in waits for its second factor.
pub const TICKET_MINUTES: i64 = 5;
/// Most sign-ins waiting at once (beyond, the oldest are dropped).
const TICKETS_MAX: usize = 10_000;
/// A recovery code: 16 characters of this alphabet (Crockford's base32, lower case: no i, l,
/// o, u), 80 bits, shown in groups of four.
const RECOVERY_ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
const RECOVERY_LEN: usize = 16;

/// The key sealing TOTP secrets.
pub struct SealKey(aead::LessSafeKey);

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealKey(<redacted>)")
    }
}

impl SealKey {
    /// The key in `path`, made (mode 0600) when the file does not exist.
    pub fn load_or_create(path: &Path) -> Result<Self, KeyError> {
        let seed = audit_key::load_or_create_seed(path)?;
        Self::from_bytes(&seed).ok_or_else(|| KeyError::Format { path: path.display().to_string() })
    }

    /// The key of 32 bytes (None only if ring refused it, which it does for a wrong length).
    pub fn from_bytes(seed: &[u8; 32]) -> Option<Self> {
        let unbound = aead::UnboundKey::new(&aead::CHACHA20_POLY1305, seed).ok()?;
        Some(Self(aead::LessSafeKey::new(unbound)))
    }

    fn aad(user_id: i64) -> String {
        format!("repli-totp-v1:user:{user_id}")
    }

    /// `secret` sealed for `user_id`: hex of nonce ‖ ciphertext ‖ tag.
    pub fn seal(&self, user_id: i64, secret: &[u8]) -> Result<String, AppError> {
        let mut nonce = [0u8; aead::NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|e| AppError::Internal(format!("no randomness available: {e}")))?;
        let mut data = secret.to_vec();
        let aad = Self::aad(user_id);
        self.0
            .seal_in_place_append_tag(
                aead::Nonce::assume_unique_for_key(nonce),
                aead::Aad::from(aad.as_bytes()),
                &mut data,
            )
            .map_err(|_| AppError::Internal("cannot seal the TOTP secret".into()))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&data);
        Ok(hex::encode(out))
    }

    /// The secret sealed for `user_id`; None when it does not open (another key, another
    /// account, altered text).
    pub fn open(&self, user_id: i64, sealed: &str) -> Option<Vec<u8>> {
        let bytes = hex::decode(sealed).ok()?;
        if bytes.len() < aead::NONCE_LEN + aead::CHACHA20_POLY1305.tag_len() {
            return None;
        }
        let (nonce, body) = bytes.split_at(aead::NONCE_LEN);
        let nonce = aead::Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut body = body.to_vec();
        let aad = Self::aad(user_id);
        let plain = self.0.open_in_place(nonce, aead::Aad::from(aad.as_bytes()), &mut body).ok()?;
        Some(plain.to_vec())
    }
}

/// A new TOTP secret: 160 random bits (RFC 4226 § 4).
pub fn new_secret() -> Result<Vec<u8>, AppError> {
    let mut s = vec![0u8; 20];
    getrandom::fill(&mut s).map_err(|e| AppError::Internal(format!("no randomness available: {e}")))?;
    Ok(s)
}

/// The TOTP of `secret` for the account `login`.
pub fn totp(secret: &[u8], login: &str) -> Result<Totp, AppError> {
    // The otpauth label refuses ':'; a login cannot hold one (accounts::login_errors).
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(6)
        .with_skew(1)
        .with_step_duration(30)
        .with_secret(secret.to_vec())
        .with_issuer(Some(ISSUER))
        .with_account_name(login.replace(':', "_"))
        .build()
        .map_err(|e| AppError::Internal(format!("TOTP: {e}")))
}

/// The time step `code` is valid for at `now` (one step of skew either way); None when wrong.
pub fn check(totp: &Totp, code: &str, now: Timestamp) -> Option<i64> {
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs = u64::try_from(now.as_second()).ok()?;
    totp.check(&code, secs).and_then(|step| i64::try_from(step).ok())
}

/// The code of `secret` at `now` (tests, the demo's own enrolment).
pub fn code_at(secret: &[u8], now: Timestamp) -> Result<String, AppError> {
    let secs = u64::try_from(now.as_second()).map_err(|_| AppError::Internal("time before 1970".into()))?;
    Ok(totp(secret, "x")?.generate(secs).to_string())
}

/// The otpauth:// address an authenticator app reads from the QR code.
pub fn otpauth_url(secret: &[u8], login: &str) -> Result<String, AppError> {
    totp(secret, login)?.to_url().map_err(|e| AppError::Internal(format!("TOTP: {e}")))
}

/// The secret as people type it into an app that cannot scan: base32 in groups of four.
pub fn secret_for_typing(secret: &[u8]) -> String {
    let b32 = totp_rs::Secret::from(secret.to_vec()).to_base32();
    b32.as_bytes().chunks(4).map(|c| String::from_utf8_lossy(c).into_owned()).collect::<Vec<_>>().join(" ")
}

/// New recovery codes (`abcd-efgh-jkmn-pqrs`), to show once.
pub fn recovery_codes() -> Result<Vec<String>, AppError> {
    (0..RECOVERY_CODES)
        .map(|_| {
            let mut raw = [0u8; RECOVERY_LEN];
            getrandom::fill(&mut raw).map_err(|e| AppError::Internal(format!("no randomness available: {e}")))?;
            let chars: Vec<u8> = raw.iter().map(|b| RECOVERY_ALPHABET[usize::from(b % 32)]).collect();
            Ok(chars.chunks(4).map(|c| String::from_utf8_lossy(c).into_owned()).collect::<Vec<_>>().join("-"))
        })
        .collect()
}

/// A recovery code as typed (any case, spaces or dashes anywhere) in its one stored form;
/// None when it cannot be one.
pub fn normalize_recovery(typed: &str) -> Option<String> {
    let s: String = typed.chars().filter(|c| !c.is_whitespace() && *c != '-').flat_map(char::to_lowercase).collect();
    (s.len() == RECOVERY_LEN && s.bytes().all(|b| RECOVERY_ALPHABET.contains(&b))).then_some(s)
}

/// What is stored for a recovery code.
pub fn recovery_hash(normalized: &str) -> String {
    crate::accounts::token_hash(&format!("repli-recovery-v1:{normalized}"))
}

// ---------------------------------------------------------------- sign-ins waiting

/// A sign-in whose password was right, waiting for its second factor.
#[derive(Clone)]
pub struct Pending {
    pub user_id: i64,
    pub login: String,
    pub created: Timestamp,
    /// The secret being enrolled (an account without a second factor yet).
    pub enrolling: Option<Vec<u8>>,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("user_id", &self.user_id)
            .field("login", &self.login)
            .field("enrolling", &self.enrolling.is_some())
            .finish_non_exhaustive()
    }
}

/// The sign-ins waiting, by the SHA-256 of their ticket (the cookie holds the ticket).
#[derive(Debug, Default)]
pub struct Tickets(Mutex<HashMap<String, Pending>>);

impl Tickets {
    fn fresh(p: &Pending, now: Timestamp) -> bool {
        now.duration_since(p.created) < SignedDuration::from_mins(TICKET_MINUTES)
    }

    /// Holds `p`; returns its ticket.
    pub fn open(&self, p: Pending) -> Result<String, AppError> {
        let ticket = crate::accounts::random_hex()?;
        let now = p.created;
        let mut map = self.0.lock().map_err(|_| AppError::Internal("tickets lock poisoned".into()))?;
        map.retain(|_, q| Self::fresh(q, now));
        if map.len() >= TICKETS_MAX {
            map.clear();
        }
        map.insert(crate::accounts::token_hash(&ticket), p);
        Ok(ticket)
    }

    /// The sign-in a ticket holds, while fresh.
    pub fn get(&self, ticket: &str, now: Timestamp) -> Option<Pending> {
        if ticket.len() != 64 {
            return None;
        }
        let map = self.0.lock().ok()?;
        map.get(&crate::accounts::token_hash(ticket)).filter(|p| Self::fresh(p, now)).cloned()
    }

    /// The ticket is used: forgotten.
    pub fn close(&self, ticket: &str) {
        if let Ok(mut map) = self.0.lock() {
            map.remove(&crate::accounts::token_hash(ticket));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).unwrap()
    }

    /// RFC 6238 Appendix B: the test vectors (8 digits; SHA-1, SHA-256, SHA-512 with the
    /// appendix's seeds), through the crate we use.
    #[test]
    fn rfc_6238_test_vectors() {
        let sha1 = b"12345678901234567890".to_vec();
        let sha256 = b"12345678901234567890123456789012".to_vec();
        let sha512 = b"1234567890123456789012345678901234567890123456789012345678901234".to_vec();
        let vectors: [(u64, &str, &str, &str); 6] = [
            (59, "94287082", "46119246", "90693936"),
            (1_111_111_109, "07081804", "68084774", "25091201"),
            (1_111_111_111, "14050471", "67062674", "99943326"),
            (1_234_567_890, "89005924", "91819424", "93441116"),
            (2_000_000_000, "69279037", "90698825", "38618901"),
            (20_000_000_000, "65353130", "77737706", "47863826"),
        ];
        let make = |alg, secret: &Vec<u8>| {
            Builder::new().with_algorithm(alg).with_digits(8).with_secret(secret.clone()).build().unwrap()
        };
        let (a, b, c) =
            (make(Algorithm::SHA1, &sha1), make(Algorithm::SHA256, &sha256), make(Algorithm::SHA512, &sha512));
        for (t, h1, h256, h512) in vectors {
            assert_eq!(a.generate(t).to_string(), h1, "SHA-1 at {t}");
            assert_eq!(b.generate(t).to_string(), h256, "SHA-256 at {t}");
            assert_eq!(c.generate(t).to_string(), h512, "SHA-512 at {t}");
        }
    }

    #[test]
    fn a_code_is_checked_within_one_step_and_names_its_step() {
        let secret = b"12345678901234567890".to_vec();
        let t = totp(&secret, "anne.ops").unwrap();
        let now = at(1_111_111_111);
        let code = code_at(&secret, now).unwrap();
        assert_eq!(code.len(), 6);
        assert_eq!(check(&t, &code, now), Some(1_111_111_111 / 30));
        assert_eq!(check(&t, &format!(" {} {} ", &code[..3], &code[3..]), now), Some(1_111_111_111 / 30), "spaces");
        // One step either way passes (clock drift), two do not.
        assert!(check(&t, &code, at(1_111_111_111 + 30)).is_some());
        assert!(check(&t, &code, at(1_111_111_111 - 30)).is_some());
        assert!(check(&t, &code, at(1_111_111_111 + 90)).is_none());
        for bad in ["", "12345", "1234567", "abcdef", "12345é", &"9".repeat(10_000)] {
            assert!(check(&t, bad, now).is_none(), "{bad:?}");
        }
        let url = otpauth_url(&secret, "anne.ops").unwrap();
        assert!(url.starts_with("otpauth://totp/Repli:anne.ops?"), "{url}");
        assert!(url.contains("secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ") && url.contains("issuer=Repli"), "{url}");
        assert_eq!(secret_for_typing(&secret), "GEZD GNBV GY3T QOJQ GEZD GNBV GY3T QOJQ");
    }

    #[test]
    fn sealed_secrets_open_only_with_their_key_and_account() {
        let key = SealKey::from_bytes(&[7; 32]).unwrap();
        let secret = new_secret().unwrap();
        let sealed = key.seal(42, &secret).unwrap();
        assert!(!sealed.contains(&hex::encode(&secret)), "not in clear");
        assert_ne!(sealed, key.seal(42, &secret).unwrap(), "a fresh nonce each time");
        assert_eq!(key.open(42, &sealed), Some(secret.clone()));
        assert_eq!(key.open(43, &sealed), None, "another account");
        assert_eq!(SealKey::from_bytes(&[8; 32]).unwrap().open(42, &sealed), None, "another key");
        let mut altered = sealed.into_bytes();
        let last = altered.len() - 1;
        altered[last] = if altered[last] == b'0' { b'1' } else { b'0' };
        assert_eq!(key.open(42, &String::from_utf8(altered).unwrap()), None, "altered");
        for junk in ["", "zz", "00", &"0".repeat(100)] {
            assert_eq!(key.open(42, junk), None);
        }
        assert_eq!(format!("{key:?}"), "SealKey(<redacted>)");
    }

    #[test]
    fn recovery_codes_are_random_typable_and_normalised() {
        let codes = recovery_codes().unwrap();
        assert_eq!(codes.len(), RECOVERY_CODES);
        let distinct: std::collections::HashSet<_> = codes.iter().collect();
        assert_eq!(distinct.len(), RECOVERY_CODES);
        for c in &codes {
            assert_eq!(c.len(), 19, "{c}");
            let n = normalize_recovery(c).unwrap();
            assert_eq!(normalize_recovery(&c.to_uppercase().replace('-', " ")), Some(n.clone()));
            assert_eq!(recovery_hash(&n).len(), 64);
        }
        for bad in ["", "123456", "abcd-efgh-jkmn-pqr", "abcd-efgh-jkmn-pqrst", "abcd-efgh-jkmn-pqro", "<script>"] {
            assert_eq!(normalize_recovery(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn tickets_expire_and_are_used_once() {
        let tickets = Tickets::default();
        let now = at(1_800_000_000);
        let p = Pending { user_id: 1, login: "anne".into(), created: now, enrolling: None };
        let ticket = tickets.open(p).unwrap();
        assert_eq!(tickets.get(&ticket, now).map(|p| p.user_id), Some(1));
        assert!(tickets.get(&ticket, at(1_800_000_000 + 60 * TICKET_MINUTES)).is_none(), "expired");
        assert!(tickets.get("forged", now).is_none());
        assert!(tickets.get(&"0".repeat(64), now).is_none());
        tickets.close(&ticket);
        assert!(tickets.get(&ticket, now).is_none());
        let debug =
            format!("{:?}", Pending { user_id: 1, login: "a".into(), created: now, enrolling: Some(vec![1; 20]) });
        assert!(!debug.contains("[1, 1"), "{debug}");
    }
}
