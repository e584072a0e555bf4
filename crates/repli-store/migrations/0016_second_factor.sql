-- The TOTP second factor of ops, admin and auditor accounts (RFC 6238).
-- The secret is sealed by replid (ChaCha20-Poly1305, key in a file beside the database, the
-- user id as associated data): this table alone does not give it away. `last_step` is the
-- highest time step a code was accepted for: a code is accepted once (RFC 6238 § 5.2).
CREATE TABLE second_factors (
    user_id     INTEGER PRIMARY KEY REFERENCES users (id),
    sealed      TEXT NOT NULL,
    last_step   INTEGER NOT NULL,
    enrolled_at TEXT NOT NULL
) STRICT;

-- Single-use recovery codes, shown once at enrolment; only their SHA-256 is kept.
CREATE TABLE recovery_codes (
    user_id     INTEGER NOT NULL REFERENCES users (id),
    code_sha256 TEXT NOT NULL,
    used_at     TEXT,
    PRIMARY KEY (user_id, code_sha256)
) STRICT;
