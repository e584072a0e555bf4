//! Audit entries, their hash chain, and signed checkpoints.
//!
//! Every state change writes one entry in the same database transaction as the change. Each
//! entry carries the hash of the one before it, and its own hash over a canonical byte encoding
//! (version 1, documented in docs/AUDIT.md). Every so often the daemon signs (seq, hash) with
//! its Ed25519 key: a checkpoint. Verification names the first bad sequence number and why:
//! modified, deleted, inserted, reordered, or truncated (entries a checkpoint covers are gone).

use std::collections::BTreeMap;
use std::fmt;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

mod action;

pub use action::{ActionFilter, AuditAction, UnknownAuditAction};

/// Version tag of the canonical entry encoding; part of every hashed byte string.
pub const ENCODING_V1: &[u8] = b"repli-audit-v1";
/// Version tag of the checkpoint message; part of every signed byte string.
pub const CHECKPOINT_V1: &[u8] = b"repli-checkpoint-v1";
/// Domain tag of a key change's signature.
pub const KEY_CHANGE_V1: &[u8] = b"repli-key-change-v1";

/// The details of a `service.audit_key_changed` entry: the previous key hands over to the new
/// one, signing `field("repli-key-change-v1") ‖ seq ‖ field(prev_hash) ‖ field(new_key)`. A
/// verifier that trusts the previous key trusts the new one from that entry on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyChange {
    /// Hex public keys.
    pub previous_key: String,
    pub new_key: String,
    /// Hex Ed25519 signature by the previous key.
    pub signature: String,
}

impl KeyChange {
    pub fn message(seq: i64, prev_hash: &str, new_key: &str) -> Vec<u8> {
        let mut b = Vec::with_capacity(160);
        let mut out = |bytes: &[u8]| b.extend_from_slice(bytes);
        field(&mut out, KEY_CHANGE_V1);
        out(&seq.to_be_bytes());
        field(&mut out, prev_hash.as_bytes());
        field(&mut out, new_key.as_bytes());
        b
    }

    /// The hand-over from `previous` to `new` for the entry at `seq` after `prev_hash`.
    pub fn sign(previous: &SigningKey, new: &VerifyingKey, seq: i64, prev_hash: &str) -> Self {
        let new_key = hex::encode(new.to_bytes());
        let sig = previous.sign(&Self::message(seq, prev_hash, &new_key));
        Self {
            previous_key: hex::encode(previous.verifying_key().to_bytes()),
            new_key,
            signature: hex::encode(sig.to_bytes()),
        }
    }

    /// The new key, when the hand-over is signed by a key `trusted` accepts.
    fn verified_new_key(&self, seq: i64, prev_hash: &str, trusted: &[KeyPin]) -> Option<VerifyingKey> {
        let previous = parse_public_key(&self.previous_key)?;
        if !trusted.iter().any(|p| p.accepts(&previous)) {
            return None;
        }
        let sig = <[u8; 64]>::try_from(hex::decode(&self.signature).ok()?.as_slice()).ok()?;
        previous.verify_strict(&Self::message(seq, prev_hash, &self.new_key), &Signature::from_bytes(&sig)).ok()?;
        parse_public_key(&self.new_key)
    }
}
/// `prev_hash` of the first entry.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// How far from its position a moved entry is looked for when diagnosing a broken chain.
const MOVE_WINDOW: i64 = 16;

/// One audit entry as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEntry {
    pub seq: i64,
    /// UTC, RFC 3339 with a `Z`, as stored.
    pub at: String,
    /// 0 for the daemon itself (`system`).
    pub actor_id: i64,
    pub actor_name: String,
    pub actor_role: String,
    /// How the actor was authenticated: `token`, `password`, `local`, `system`.
    pub auth: String,
    pub commune: Option<String>,
    pub crisis: Option<String>,
    /// Dotted verb, e.g. `crisis.request`, `crisis.activate`, `log.decision`: the string as
    /// stored and hashed, kept as it is so that an entry whose action this version does not
    /// know still reads and verifies. [`AuditEntry::action_kind`] gives the [`AuditAction`].
    pub action: String,
    pub target: String,
    /// A JSON object, stored and hashed as the exact text written.
    pub details: String,
    pub prev_hash: String,
    pub hash: String,
}

/// An audit head an auditor pinned (`repli audit head`): the chain must still hold this entry
/// with this hash, which a deletion of the tail, or a rewrite before it, cannot keep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    pub seq: i64,
    pub hash: String,
}

impl std::str::FromStr for Pin {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("{s:?}: expected SEQ:HASH as printed by `repli audit head`");
        let (seq, hash) = s.split_once(':').ok_or_else(bad)?;
        let seq: i64 = seq.trim().parse().map_err(|_| bad())?;
        let hash = hash.trim().to_ascii_lowercase();
        if seq < 1 || hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        Ok(Pin { seq, hash })
    }
}

impl Pin {
    /// Checks the entry found at the pinned sequence (none: the log was cut before it).
    pub fn check(&self, found: Option<&AuditEntry>) -> Result<(), String> {
        match found {
            Some(e) if e.seq == self.seq && e.hash.eq_ignore_ascii_case(&self.hash) => Ok(()),
            Some(e) => {
                Err(format!("entry {} has hash {}, not the pinned {}: the log was rewritten", e.seq, e.hash, self.hash))
            }
            None => Err(format!("entry {} is missing: the log was cut after it was pinned", self.seq)),
        }
    }
}

fn field(out: &mut impl FnMut(&[u8]), bytes: &[u8]) {
    // u32 length prefix: no field can be confused with its neighbour.
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    out(&len.to_be_bytes());
    out(bytes);
}

fn opt(out: &mut impl FnMut(&[u8]), v: Option<&str>) {
    match v {
        None => out(&[0]),
        Some(s) => {
            out(&[1]);
            field(out, s.as_bytes());
        }
    }
}

impl AuditEntry {
    /// The action this entry records, or `None` when its stored string is not one this version
    /// knows (see [`AuditAction`]).
    pub fn action_kind(&self) -> Option<AuditAction> {
        self.action.parse().ok()
    }

    /// The reason a person gave for the action (the `reason` every audited action with one
    /// records in its details), when there is one.
    pub fn reason(&self) -> Option<String> {
        let details: serde_json::Value = serde_json::from_str(&self.details).ok()?;
        details.get("reason")?.as_str().filter(|r| !r.is_empty()).map(str::to_owned)
    }

    /// Feeds the canonical encoding v1 of everything but `hash`, with `seq` given separately
    /// (so a moved entry can be re-checked at another position).
    fn encode(&self, seq: i64, out: &mut impl FnMut(&[u8])) {
        field(out, ENCODING_V1);
        out(&seq.to_be_bytes());
        field(out, self.at.as_bytes());
        out(&self.actor_id.to_be_bytes());
        field(out, self.actor_name.as_bytes());
        field(out, self.actor_role.as_bytes());
        field(out, self.auth.as_bytes());
        opt(out, self.commune.as_deref());
        opt(out, self.crisis.as_deref());
        field(out, self.action.as_bytes());
        field(out, self.target.as_bytes());
        field(out, self.details.as_bytes());
        field(out, self.prev_hash.as_bytes());
    }

    /// The canonical encoding v1 of everything but `hash`.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(256 + self.details.len());
        self.encode(self.seq, &mut |bytes| b.extend_from_slice(bytes));
        b
    }

    fn hash_at(&self, seq: i64) -> String {
        let mut h = Sha256::new();
        self.encode(seq, &mut |bytes| h.update(bytes));
        hex::encode(h.finalize())
    }

    /// SHA-256 of the canonical bytes, lower-case hex.
    pub fn compute_hash(&self) -> String {
        self.hash_at(self.seq)
    }

    /// Whether the stored `hash` is the hash of this entry (no allocation: the hot path of
    /// verification).
    pub fn hash_matches(&self) -> bool {
        let mut h = Sha256::new();
        self.encode(self.seq, &mut |bytes| h.update(bytes));
        let mut hex_buf = [0u8; 64];
        hex::encode_to_slice(h.finalize(), &mut hex_buf).is_ok() && hex_buf.as_slice() == self.hash.as_bytes()
    }

    /// The position this entry was hashed at, if it is not where it stands now.
    fn original_seq(&self) -> Option<i64> {
        (self.seq - MOVE_WINDOW..=self.seq + MOVE_WINDOW)
            .filter(|&m| m >= 1 && m != self.seq)
            .find(|&m| self.hash_at(m) == self.hash)
    }
}

/// A signed statement that the chain had `hash` at `seq`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Checkpoint {
    pub seq: i64,
    pub hash: String,
    /// When it was signed (RFC 3339 UTC).
    pub at: String,
    /// Hex Ed25519 public key of the signer.
    pub public_key: String,
    /// Hex Ed25519 signature over [`Checkpoint::message`].
    pub signature: String,
}

impl Checkpoint {
    /// The signed bytes: `field("repli-checkpoint-v1") ‖ seq ‖ field(hash) ‖ field(at)`.
    pub fn message(seq: i64, hash: &str, at: &str) -> Vec<u8> {
        let mut b = Vec::with_capacity(128);
        let mut out = |bytes: &[u8]| b.extend_from_slice(bytes);
        field(&mut out, CHECKPOINT_V1);
        out(&seq.to_be_bytes());
        field(&mut out, hash.as_bytes());
        field(&mut out, at.as_bytes());
        b
    }

    /// Signs (seq, hash) at `at`.
    pub fn sign(key: &SigningKey, seq: i64, hash: &str, at: &str) -> Self {
        let sig = key.sign(&Self::message(seq, hash, at));
        Self {
            seq,
            hash: hash.to_owned(),
            at: at.to_owned(),
            public_key: hex::encode(key.verifying_key().to_bytes()),
            signature: hex::encode(sig.to_bytes()),
        }
    }

    /// Checks the signature against `key` (and that the checkpoint names that key).
    pub fn verify(&self, key: &VerifyingKey) -> bool {
        let Ok(sig) = hex::decode(&self.signature) else {
            return false;
        };
        let Ok(sig) = <[u8; 64]>::try_from(sig.as_slice()) else {
            return false;
        };
        self.public_key == hex::encode(key.to_bytes())
            && key.verify_strict(&Self::message(self.seq, &self.hash, &self.at), &Signature::from_bytes(&sig)).is_ok()
    }
}

/// Parses a hex Ed25519 public key.
pub fn parse_public_key(hex_key: &str) -> Option<VerifyingKey> {
    let bytes = hex::decode(hex_key.trim()).ok()?;
    VerifyingKey::from_bytes(&<[u8; 32]>::try_from(bytes.as_slice()).ok()?).ok()
}

/// The fingerprint of an audit public key, as shown to auditors and pinned in configs:
/// `SHA256:` and the first 32 hex digits of the SHA-256 of the key's 32 bytes.
pub fn fingerprint(key: &VerifyingKey) -> String {
    let digest = Sha256::digest(key.to_bytes());
    format!("SHA256:{}", &hex::encode(digest)[..32])
}

/// A key the verifier trusts, given by the verifier (a config line, a file, a command-line
/// argument), never read from the data being verified: either the public key itself, or its
/// [`fingerprint`], which then accepts only the key with that fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyPin {
    Key(VerifyingKey),
    Fingerprint(String),
}

impl KeyPin {
    /// Parses 64 hex digits (a public key) or `SHA256:` and 32 hex digits (a fingerprint).
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        if let Some(rest) = t.strip_prefix("SHA256:") {
            let rest = rest.to_ascii_lowercase();
            if rest.len() == 32 && rest.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Ok(KeyPin::Fingerprint(format!("SHA256:{rest}")));
            }
            return Err(format!("{t:?} is not a key fingerprint (SHA256: and 32 hexadecimal digits)"));
        }
        parse_public_key(t).map(KeyPin::Key).ok_or_else(|| {
            format!("{t:?} is neither a public key (64 hexadecimal digits) nor a fingerprint (SHA256:…)")
        })
    }

    /// Whether `key` is the pinned key.
    pub fn accepts(&self, key: &VerifyingKey) -> bool {
        match self {
            KeyPin::Key(k) => k == key,
            KeyPin::Fingerprint(f) => *f == fingerprint(key),
        }
    }

    /// The pinned key, when the pin is a key (a fingerprint needs the candidate key).
    pub fn key(&self) -> Option<&VerifyingKey> {
        match self {
            KeyPin::Key(k) => Some(k),
            KeyPin::Fingerprint(_) => None,
        }
    }
}

impl fmt::Display for KeyPin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyPin::Key(k) => f.write_str(&fingerprint(k)),
            KeyPin::Fingerprint(fp) => f.write_str(fp),
        }
    }
}

/// How the chain was tampered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Tamper {
    Modified,
    Deleted,
    Inserted,
    Reordered,
    Truncated,
}

impl fmt::Display for Tamper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Modified => "modified",
            Self::Deleted => "deleted",
            Self::Inserted => "inserted",
            Self::Reordered => "reordered",
            Self::Truncated => "truncated",
        })
    }
}

/// Why a chain does not verify, at the first bad sequence number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    #[error("entry {seq}: {kind}: {detail}")]
    Tampered { seq: i64, kind: Tamper, detail: String },
    #[error("checkpoint at entry {seq}: invalid signature for the trusted public key")]
    BadCheckpoint { seq: i64 },
    /// A checkpoint or head signed by a key the verifier does not trust.
    #[error("checkpoint at entry {seq} is signed by key {fingerprint}, which is not a trusted key")]
    UntrustedKey { seq: i64, fingerprint: String },
    /// A key change not signed by a trusted key.
    #[error("entry {seq} changes the audit key without a valid signature by a trusted key")]
    BadKeyChange { seq: i64 },
    /// The signed head does not match the chain's last entry.
    #[error("the signed head says entry {seq} has hash {signed}; {found}")]
    HeadMismatch { seq: i64, signed: String, found: String },
}

impl ChainError {
    fn at(seq: i64, kind: Tamper, detail: impl Into<String>) -> Self {
        Self::Tampered { seq, kind, detail: detail.into() }
    }

    /// The first bad sequence number.
    pub fn seq(&self) -> i64 {
        match self {
            Self::Tampered { seq, .. }
            | Self::BadCheckpoint { seq }
            | Self::UntrustedKey { seq, .. }
            | Self::BadKeyChange { seq }
            | Self::HeadMismatch { seq, .. } => *seq,
        }
    }

    pub fn kind(&self) -> Option<Tamper> {
        match self {
            Self::Tampered { kind, .. } => Some(*kind),
            Self::BadCheckpoint { .. } | Self::UntrustedKey { .. } => None,
            Self::HeadMismatch { .. } | Self::BadKeyChange { .. } => Some(Tamper::Modified),
        }
    }
}

/// What a successful verification established.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainSummary {
    pub entries: u64,
    pub last_seq: i64,
    pub last_hash: String,
    /// The last signed checkpoint, if any: everything up to it is covered by a signature.
    pub last_checkpoint: Option<i64>,
}

/// Checks entries one at a time, in storage order, so a long chain can be verified page by
/// page. Each [`ChainVerifier::push`] is given the entry after it too (when there is one), to
/// tell an inserted or reordered entry from a modified one.
#[derive(Debug, Clone)]
pub struct ChainVerifier {
    prev_hash: String,
    expected: i64,
    checkpoints: BTreeMap<i64, Checkpoint>,
    /// Verification resumed at this trusted checkpoint: its entry is checked for its own hash
    /// and the checkpoint's, not for its link to the entry before.
    resumed: Option<Checkpoint>,
    /// With pinned keys ([`ChainVerifier::with_trusted`]): the keys trusted so far, checkpoints
    /// checked as the walk reaches them.
    trusted: Option<Vec<KeyPin>>,
}

impl Default for ChainVerifier {
    fn default() -> Self {
        Self {
            prev_hash: GENESIS_HASH.to_owned(),
            expected: 1,
            checkpoints: BTreeMap::new(),
            resumed: None,
            trusted: None,
        }
    }
}

/// Checks that `c` is signed, validly, by a key one of `pins` accepts.
pub fn trusted_signature(c: &Checkpoint, pins: &[KeyPin]) -> Result<(), ChainError> {
    let Some(key) = parse_public_key(&c.public_key) else {
        return Err(ChainError::BadCheckpoint { seq: c.seq });
    };
    if !pins.iter().any(|p| p.accepts(&key)) {
        return Err(ChainError::UntrustedKey { seq: c.seq, fingerprint: fingerprint(&key) });
    }
    if !c.verify(&key) {
        return Err(ChainError::BadCheckpoint { seq: c.seq });
    }
    Ok(())
}

impl ChainVerifier {
    /// A verifier that also checks `checkpoints`, each signed by `key`.
    pub fn with_checkpoints(checkpoints: Vec<Checkpoint>, key: &VerifyingKey) -> Result<Self, ChainError> {
        let mut map = BTreeMap::new();
        for c in checkpoints {
            if !c.verify(key) {
                return Err(ChainError::BadCheckpoint { seq: c.seq });
            }
            map.insert(c.seq, c);
        }
        Ok(Self { checkpoints: map, ..Self::default() })
    }

    /// A verifier that checks `checkpoints` against the keys the verifier pinned: each must be
    /// signed by a key some pin accepts, with a valid signature. The key a checkpoint names is
    /// only a candidate, never trusted for being there.
    ///
    /// Each checkpoint's signature is checked when the walk reaches its entry, against the keys
    /// trusted at that point: the pins, and each key a `service.audit_key_changed` entry hands
    /// over to, signed by a key already trusted.
    pub fn with_trusted(checkpoints: Vec<Checkpoint>, pins: &[KeyPin]) -> Result<Self, ChainError> {
        if pins.is_empty() {
            return Err(ChainError::UntrustedKey { seq: 0, fingerprint: "none: no key is pinned".into() });
        }
        let map = checkpoints.into_iter().map(|c| (c.seq, c)).collect();
        Ok(Self { checkpoints: map, trusted: Some(pins.to_vec()), ..Self::default() })
    }

    /// The keys trusted at this point of the walk (pins and keys handed over to).
    pub fn trusted(&self) -> &[KeyPin] {
        self.trusted.as_deref().unwrap_or(&[])
    }

    /// A verifier that starts after a checkpoint already checked (the entry at `c.seq` must be
    /// read again and pushed first: its hash must be the checkpoint's): for verifying only what
    /// was appended since.
    pub fn resume_at(c: Checkpoint, later: Vec<Checkpoint>, pins: &[KeyPin]) -> Result<Self, ChainError> {
        trusted_signature(&c, pins)?;
        let mut v = Self::with_trusted(later, pins)?;
        v.expected = c.seq;
        v.checkpoints.insert(c.seq, c.clone());
        v.resumed = Some(c);
        Ok(v)
    }

    /// Checks the next entry: its position, its hash, its link to the previous one, and the
    /// checkpoint at its position if any. `next` is the entry stored after it.
    pub fn push(&mut self, e: &AuditEntry, next: Option<&AuditEntry>) -> Result<(), ChainError> {
        if let Some(c) = self.resumed.take() {
            if e.seq != c.seq || !e.hash_matches() || e.hash != c.hash {
                return Err(ChainError::at(
                    c.seq,
                    Tamper::Modified,
                    format!("the entry signed by the checkpoint at {} was rewritten", c.at),
                ));
            }
            self.prev_hash.clone_from(&e.hash);
            self.expected = c.seq + 1;
            return Ok(());
        }
        let n = self.expected;
        if e.seq > n {
            let last = e.seq - 1;
            let which = if last == n { format!("entry {n} is") } else { format!("entries {n} to {last} are") };
            return Err(ChainError::at(n, Tamper::Deleted, format!("{which} missing")));
        }
        if e.seq < n {
            return Err(ChainError::at(e.seq, Tamper::Inserted, "duplicate sequence number"));
        }
        if !e.hash_matches() {
            if let Some(m) = e.original_seq() {
                if m < n {
                    return Err(ChainError::at(
                        n - 1,
                        Tamper::Inserted,
                        format!("entry {} is not original: the original entry {m} now stands at {n}", n - 1),
                    ));
                }
                if next.is_some_and(|x| x.original_seq() == Some(n)) {
                    return Err(ChainError::at(n, Tamper::Reordered, format!("entries {n} and {m} were swapped")));
                }
                return Err(ChainError::at(
                    n,
                    Tamper::Deleted,
                    format!("entries {n} to {} were deleted and later entries renumbered", m - 1),
                ));
            }
            if next.is_some_and(|x| x.seq == n + 1 && x.original_seq() == Some(n)) {
                return Err(ChainError::at(
                    n,
                    Tamper::Inserted,
                    format!("entry {n} was inserted before the original entry {n}"),
                ));
            }
            return Err(ChainError::at(n, Tamper::Modified, "its content does not match its hash"));
        }
        if e.prev_hash != self.prev_hash {
            return Err(ChainError::at(
                n - 1,
                Tamper::Modified,
                format!("entry {} was altered and re-hashed: entry {n} no longer links to it", n - 1),
            ));
        }
        if let Some(trusted) = self.trusted.as_mut() {
            if e.action == AuditAction::ServiceAuditKeyChanged.as_str() {
                let handed = serde_json::from_str::<KeyChange>(&e.details)
                    .ok()
                    .and_then(|k| k.verified_new_key(e.seq, &e.prev_hash, trusted));
                match handed {
                    Some(k) => trusted.push(KeyPin::Key(k)),
                    None => return Err(ChainError::BadKeyChange { seq: n }),
                }
            }
            if let Some(c) = self.checkpoints.get(&n) {
                trusted_signature(c, trusted)?;
            }
        }
        if let Some(c) = self.checkpoints.get(&n)
            && c.hash != e.hash
        {
            return Err(ChainError::at(
                n,
                Tamper::Modified,
                format!("the chain up to entry {n} was rewritten after the checkpoint signed at {}", c.at),
            ));
        }
        self.prev_hash.clone_from(&e.hash);
        self.expected += 1;
        Ok(())
    }

    /// Ends verification: checkpoints beyond the last entry mean entries were cut off the end.
    pub fn finish(self) -> Result<ChainSummary, ChainError> {
        if let Some(c) = &self.resumed {
            return Err(ChainError::at(
                c.seq,
                Tamper::Truncated,
                format!("entry {}, signed by the checkpoint at {}, is missing", c.seq, c.at),
            ));
        }
        let last_seq = self.expected - 1;
        if let Some((&seq, c)) = self.checkpoints.range(last_seq + 1..).next_back() {
            return Err(ChainError::at(
                last_seq + 1,
                Tamper::Truncated,
                format!("entries {} to {seq}, covered by the checkpoint signed at {}, are missing", last_seq + 1, c.at),
            ));
        }
        Ok(ChainSummary {
            entries: u64::try_from(last_seq).unwrap_or(0),
            last_checkpoint: self.checkpoints.range(..=last_seq).next_back().map(|(s, _)| *s),
            last_seq,
            last_hash: self.prev_hash,
        })
    }
}

/// Verifies entries given in storage order, without checkpoints.
pub fn verify_chain(entries: &[AuditEntry]) -> Result<ChainSummary, ChainError> {
    verify_entries(ChainVerifier::default(), entries)
}

/// Runs `v` over `entries` and finishes it.
pub fn verify_entries(mut v: ChainVerifier, entries: &[AuditEntry]) -> Result<ChainSummary, ChainError> {
    for (i, e) in entries.iter().enumerate() {
        v.push(e, entries.get(i + 1))?;
    }
    v.finish()
}

/// Everything an auditor needs to verify the log away from Repli.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditBundle {
    /// `repli-audit-bundle-v1`.
    pub format: String,
    /// The daemon's checkpoint public key (hex), as it reported it.
    pub public_key: Option<String>,
    pub entries: Vec<AuditEntry>,
    pub checkpoints: Vec<Checkpoint>,
    /// The signed head: the last entry, signed in the transaction that wrote it (absent from
    /// bundles of versions before signed heads).
    #[serde(default)]
    pub head: Option<Checkpoint>,
}

impl AuditBundle {
    /// Verifies the bundle against the keys the verifier pinned: every entry and link, every
    /// checkpoint, and the signed head (which must be the last entry). Without pins, only the
    /// chain's integrity is checked, against nothing the bundle could not have forged itself:
    /// callers say so.
    pub fn verify(&self, pins: &[KeyPin]) -> Result<ChainSummary, ChainError> {
        if pins.is_empty() {
            return verify_entries(ChainVerifier::default(), &self.entries);
        }
        let mut v = ChainVerifier::with_trusted(self.checkpoints.clone(), pins)?;
        for (i, e) in self.entries.iter().enumerate() {
            v.push(e, self.entries.get(i + 1))?;
        }
        let trusted = v.trusted().to_vec();
        let s = v.finish()?;
        match &self.head {
            Some(h) => {
                trusted_signature(h, &trusted)?;
                if (h.seq, h.hash.as_str()) != (s.last_seq, s.last_hash.as_str()) {
                    return Err(ChainError::HeadMismatch {
                        seq: h.seq,
                        signed: h.hash.clone(),
                        found: format!("the bundle ends at entry {} with hash {}", s.last_seq, s.last_hash),
                    });
                }
            }
            None if s.last_seq > s.last_checkpoint.unwrap_or(0) => {
                return Err(ChainError::HeadMismatch {
                    seq: s.last_seq,
                    signed: "nothing".into(),
                    found: format!(
                        "entries {} to {} are covered by no signature",
                        s.last_checkpoint.unwrap_or(0) + 1,
                        s.last_seq
                    ),
                });
            }
            None => {}
        }
        Ok(s)
    }
}

pub const BUNDLE_FORMAT: &str = "repli-audit-bundle-v1";

/// Entries as CSV, every text cell neutralised against formula injection.
pub fn write_csv(out: &mut impl std::io::Write, entries: &[AuditEntry]) -> Result<(), csv::Error> {
    let mut w = csv::Writer::from_writer(out);
    w.write_record([
        "seq",
        "at",
        "actor_id",
        "actor_name",
        "actor_role",
        "auth",
        "commune",
        "crisis",
        "action",
        "target",
        "details",
        "prev_hash",
        "hash",
    ])?;
    for e in entries {
        let seq = e.seq.to_string();
        let actor_id = e.actor_id.to_string();
        w.write_record([
            seq.as_str(),
            &crate::text::csv_cell(&e.at),
            actor_id.as_str(),
            &crate::text::csv_cell(&e.actor_name),
            &crate::text::csv_cell(&e.actor_role),
            &crate::text::csv_cell(&e.auth),
            &crate::text::csv_cell(e.commune.as_deref().unwrap_or("")),
            &crate::text::csv_cell(e.crisis.as_deref().unwrap_or("")),
            &crate::text::csv_cell(&e.action),
            &crate::text::csv_cell(&e.target),
            &crate::text::csv_cell(&e.details),
            &e.prev_hash,
            &e.hash,
        ])?;
    }
    w.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[7u8; 32])
    }

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
                action: AuditAction::CrisisActivate.to_string(),
                target: format!("t{seq}"),
                details: "{}".into(),
                prev_hash: out.last().map_or(GENESIS_HASH.to_owned(), |p| p.hash.clone()),
                hash: String::new(),
            };
            e.hash = e.compute_hash();
            out.push(e);
        }
        out
    }

    fn relink(c: &mut [AuditEntry]) {
        for i in 0..c.len() {
            c[i].prev_hash = if i == 0 { GENESIS_HASH.into() } else { c[i - 1].hash.clone() };
            c[i].hash = c[i].compute_hash();
        }
    }

    fn err(c: &[AuditEntry]) -> (i64, Tamper) {
        let e = verify_chain(c).unwrap_err();
        (e.seq(), e.kind().unwrap())
    }

    #[test]
    fn intact_chain_verifies() {
        assert_eq!(verify_chain(&chain(5)).unwrap().entries, 5);
        assert_eq!(verify_chain(&[]).unwrap().last_seq, 0);
    }

    #[test]
    fn each_tampering_is_named() {
        let mut c = chain(8);
        c[2].details = "{\"x\":1}".into();
        assert_eq!(err(&c), (3, Tamper::Modified));

        let mut c = chain(8);
        c.remove(4);
        assert_eq!(err(&c), (5, Tamper::Deleted));

        // Deleted, then later entries renumbered to hide the gap.
        let mut c = chain(8);
        c.remove(4);
        for e in &mut c[4..] {
            e.seq -= 1;
        }
        assert_eq!(err(&c), (5, Tamper::Deleted));

        // Inserted with a correct hash by someone who read docs/AUDIT.md, later ones shifted.
        let mut c = chain(8);
        let mut forged = c[3].clone();
        forged.seq = 5;
        forged.details = "{\"forged\":true}".into();
        forged.prev_hash = c[3].hash.clone();
        forged.hash = forged.compute_hash();
        for e in &mut c[4..] {
            e.seq += 1;
        }
        c.insert(4, forged.clone());
        assert_eq!(err(&c), (5, Tamper::Inserted));
        // Inserted naively (hash not recomputed).
        let mut c2 = c.clone();
        c2[4].hash = "00".into();
        assert_eq!(err(&c2), (5, Tamper::Inserted));

        // Two entries swapped.
        let mut c = chain(8);
        c.swap(4, 5);
        c[4].seq = 5;
        c[5].seq = 6;
        assert_eq!(err(&c), (5, Tamper::Reordered));

        // Modified and re-hashed: the next entry's link names it.
        let mut c = chain(8);
        c[2].details = "{\"x\":1}".into();
        c[2].hash = c[2].compute_hash();
        assert_eq!(err(&c), (3, Tamper::Modified));
    }

    #[test]
    fn checkpoints_catch_truncation_and_rewrites() {
        let k = key();
        let c = chain(10);
        let cp = |seq: usize| Checkpoint::sign(&k, c[seq - 1].seq, &c[seq - 1].hash, "2026-11-22T11:00:00Z");
        let v = ChainVerifier::with_checkpoints(vec![cp(5), cp(10)], &k.verifying_key()).unwrap();
        let s = verify_entries(v, &c).unwrap();
        assert_eq!((s.entries, s.last_checkpoint), (10, Some(10)));

        // Truncated: the last three entries removed; the chain alone would still verify.
        let v = ChainVerifier::with_checkpoints(vec![cp(5), cp(10)], &k.verifying_key()).unwrap();
        let e = verify_entries(v, &c[..7]).unwrap_err();
        assert_eq!((e.seq(), e.kind()), (8, Some(Tamper::Truncated)));

        // Entirely rewritten and re-linked after entry 3: the checkpoint at 5 disagrees.
        let mut r = c.clone();
        r[2].details = "{\"x\":1}".into();
        relink(&mut r);
        let v = ChainVerifier::with_checkpoints(vec![cp(5)], &k.verifying_key()).unwrap();
        let e = verify_entries(v, &r).unwrap_err();
        assert_eq!((e.seq(), e.kind()), (5, Some(Tamper::Modified)));

        // A checkpoint signed by another key, or altered, is refused.
        let other = SigningKey::from_bytes(&[9u8; 32]);
        let forged = Checkpoint::sign(&other, 10, &c[9].hash, "2026-11-22T11:00:00Z");
        assert!(ChainVerifier::with_checkpoints(vec![forged], &k.verifying_key()).is_err());
        let mut altered = cp(10);
        altered.seq = 9;
        assert!(!altered.verify(&k.verifying_key()));
        assert!(parse_public_key(&hex::encode(k.verifying_key().to_bytes())).is_some());
        assert!(parse_public_key("zz").is_none());
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
        // The streamed hash is the hash of the canonical bytes.
        assert_eq!(a.compute_hash(), hex::encode(Sha256::digest(a.canonical_bytes())));
    }

    #[test]
    fn a_pin_accepts_its_key_and_nothing_else() {
        let key = SigningKey::from_bytes(&[7; 32]).verifying_key();
        let other = SigningKey::from_bytes(&[8; 32]).verifying_key();
        let fp = fingerprint(&key);
        assert!(fp.starts_with("SHA256:") && fp.len() == 7 + 32, "{fp}");
        for text in
            [hex::encode(key.to_bytes()), fp.clone(), format!("SHA256:{}", fp["SHA256:".len()..].to_uppercase())]
        {
            let pin = KeyPin::parse(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert!(pin.accepts(&key), "{text}");
            assert!(!pin.accepts(&other), "{text}");
        }
        for bad in ["", "SHA256:", "SHA256:zz", &hex::encode([0u8; 31]), "sha256:00", &"0".repeat(64 + 1)] {
            assert!(KeyPin::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
