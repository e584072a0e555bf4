//! Audit entries and their hash chain.
//!
//! Every state change writes one entry in the same database transaction as the change. Each
//! entry carries the hash of the one before it, and its own hash over a canonical byte encoding
//! (version 1, documented in docs/AUDIT.md): editing, inserting, deleting or reordering entries
//! breaks the chain at the first place touched.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Version tag of the canonical encoding; part of every hashed byte string.
pub const ENCODING_V1: &[u8] = b"repli-audit-v1";
/// `prev_hash` of the first entry.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One audit entry as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub seq: i64,
    /// UTC, RFC 3339 with a `Z`, as stored.
    pub at: String,
    /// 0 for the daemon itself (`system`).
    pub actor_id: i64,
    pub actor_name: String,
    pub actor_role: String,
    /// How the actor was authenticated: `token`, `password`, `system`.
    pub auth: String,
    pub commune: Option<String>,
    pub crisis: Option<String>,
    /// Dotted verb, e.g. `crisis.request`, `crisis.activate`, `reference.sync`.
    pub action: String,
    pub target: String,
    /// A JSON object, stored and hashed as the exact text written.
    pub details: String,
    pub prev_hash: String,
    pub hash: String,
}

fn field(buf: &mut Vec<u8>, bytes: &[u8]) {
    // u32 length prefix: no field can be confused with its neighbour.
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(bytes);
}

fn opt(buf: &mut Vec<u8>, v: Option<&str>) {
    match v {
        None => buf.push(0),
        Some(s) => {
            buf.push(1);
            field(buf, s.as_bytes());
        }
    }
}

impl AuditEntry {
    /// The canonical encoding v1 of everything but `hash`.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(256 + self.details.len());
        field(&mut b, ENCODING_V1);
        b.extend_from_slice(&self.seq.to_be_bytes());
        field(&mut b, self.at.as_bytes());
        b.extend_from_slice(&self.actor_id.to_be_bytes());
        field(&mut b, self.actor_name.as_bytes());
        field(&mut b, self.actor_role.as_bytes());
        field(&mut b, self.auth.as_bytes());
        opt(&mut b, self.commune.as_deref());
        opt(&mut b, self.crisis.as_deref());
        field(&mut b, self.action.as_bytes());
        field(&mut b, self.target.as_bytes());
        field(&mut b, self.details.as_bytes());
        field(&mut b, self.prev_hash.as_bytes());
        b
    }

    /// SHA-256 of the canonical bytes, lower-case hex.
    pub fn compute_hash(&self) -> String {
        hex::encode(Sha256::digest(self.canonical_bytes()))
    }
}

/// Why a chain does not verify, at the first bad sequence number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    #[error("entry {seq}: content does not match its hash (modified)")]
    Modified { seq: i64 },
    #[error(
        "entry {seq}: previous-hash link broken (an entry was inserted, deleted or reordered before it)"
    )]
    Broken { seq: i64 },
    #[error("entry {seq}: sequence gap, expected {expected} (entries deleted or reordered)")]
    Gap { seq: i64, expected: i64 },
}

/// Checks entries one at a time, in storage order, so a long chain can be verified page by
/// page without holding it in memory.
#[derive(Debug, Clone)]
pub struct ChainVerifier {
    prev_hash: String,
    expected: i64,
}

impl Default for ChainVerifier {
    fn default() -> Self {
        Self {
            prev_hash: GENESIS_HASH.to_owned(),
            expected: 1,
        }
    }
}

impl ChainVerifier {
    /// Checks the next entry: its sequence number, its link to the previous one, its hash.
    pub fn push(&mut self, e: &AuditEntry) -> Result<(), ChainError> {
        if e.seq != self.expected {
            return Err(ChainError::Gap {
                seq: e.seq,
                expected: self.expected,
            });
        }
        if e.prev_hash != self.prev_hash {
            return Err(ChainError::Broken { seq: e.seq });
        }
        if e.compute_hash() != e.hash {
            return Err(ChainError::Modified { seq: e.seq });
        }
        self.prev_hash.clone_from(&e.hash);
        self.expected += 1;
        Ok(())
    }

    /// How many entries were verified so far.
    pub fn count(&self) -> u64 {
        u64::try_from(self.expected - 1).unwrap_or(0)
    }

    pub fn last_seq(&self) -> i64 {
        self.expected - 1
    }

    pub fn last_hash(&self) -> &str {
        &self.prev_hash
    }
}

/// Verifies entries given in storage order; returns how many were checked.
pub fn verify_chain<'a>(
    entries: impl IntoIterator<Item = &'a AuditEntry>,
) -> Result<u64, ChainError> {
    let mut v = ChainVerifier::default();
    for e in entries {
        v.push(e)?;
    }
    Ok(v.count())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: i64) -> Vec<AuditEntry> {
        let mut out: Vec<AuditEntry> = Vec::new();
        for seq in 1..=n {
            let mut e = AuditEntry {
                seq,
                at: format!("2026-11-22T10:00:{seq:02}Z"),
                actor_id: 2,
                actor_name: "Ops".into(),
                actor_role: "ops".into(),
                auth: "token".into(),
                commune: Some("13005".into()),
                crisis: None,
                action: "crisis.activate".into(),
                target: "13005-2026-001".into(),
                details: "{}".into(),
                prev_hash: out
                    .last()
                    .map_or(GENESIS_HASH.to_owned(), |p| p.hash.clone()),
                hash: String::new(),
            };
            e.hash = e.compute_hash();
            out.push(e);
        }
        out
    }

    #[test]
    fn intact_chain_verifies() {
        assert_eq!(verify_chain(&chain(5)), Ok(5));
        assert_eq!(verify_chain(&[]), Ok(0));
    }

    #[test]
    fn each_tampering_is_named() {
        let mut c = chain(5);
        c[2].details = "{\"x\":1}".into();
        assert_eq!(verify_chain(&c), Err(ChainError::Modified { seq: 3 }));

        let mut c = chain(5);
        c.remove(2);
        assert_eq!(
            verify_chain(&c),
            Err(ChainError::Gap {
                seq: 4,
                expected: 3
            })
        );

        let mut c = chain(5);
        c.swap(1, 2);
        assert_eq!(
            verify_chain(&c),
            Err(ChainError::Gap {
                seq: 3,
                expected: 2
            })
        );
    }

    #[test]
    fn fields_cannot_bleed_into_each_other() {
        let mut a = chain(1).remove(0);
        let mut b = a.clone();
        a.actor_name = "ab".into();
        a.actor_role = "c".into();
        b.actor_name = "a".into();
        b.actor_role = "bc".into();
        assert_ne!(a.compute_hash(), b.compute_hash());
        let mut c = a.clone();
        c.commune = None;
        let mut d = a.clone();
        d.commune = Some(String::new());
        assert_ne!(c.compute_hash(), d.compute_hash());
    }
}
