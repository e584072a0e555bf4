-- Repli schema v1. Timestamps are UTC RFC 3339 text ("2026-05-13T08:00:00Z").

CREATE TABLE communes (
    insee       TEXT PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL,
    population  INTEGER NOT NULL CHECK (population >= 0)
) STRICT;

CREATE TABLE conventions (
    insee             TEXT PRIMARY KEY NOT NULL REFERENCES communes (insee),
    signed_on         TEXT NOT NULL,
    deliberation_ref  TEXT NOT NULL
) STRICT;

CREATE TABLE users (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL,
    role        TEXT NOT NULL CHECK (role IN ('admin', 'ops', 'dgs', 'auditor')),
    commune     TEXT REFERENCES communes (insee),
    created_at  TEXT NOT NULL,
    CHECK ((role = 'dgs') = (commune IS NOT NULL))
) STRICT;

-- Only the SHA-256 of a token is stored; the token itself is shown once at creation.
CREATE TABLE api_tokens (
    id            INTEGER PRIMARY KEY,
    user_id       INTEGER NOT NULL REFERENCES users (id),
    token_sha256  TEXT NOT NULL UNIQUE,
    created_at    TEXT NOT NULL,
    expires_at    TEXT,
    revoked_at    TEXT
) STRICT;

CREATE TABLE crises (
    id                TEXT PRIMARY KEY NOT NULL,
    commune           TEXT NOT NULL REFERENCES communes (insee),
    year              INTEGER NOT NULL,
    seq               INTEGER NOT NULL,
    state             TEXT NOT NULL CHECK (state IN ('requested', 'activated', 'provisioning', 'ready',
                          'delivered', 'handback', 'closed', 'rejected', 'cancelled')),
    requested_at      TEXT NOT NULL,
    requested_by      INTEGER NOT NULL REFERENCES users (id),
    contact_name      TEXT NOT NULL,
    contact_phone     TEXT NOT NULL,
    contact_email     TEXT,
    agents            INTEGER NOT NULL CHECK (agents > 0),
    delivery_address  TEXT,
    notes             TEXT NOT NULL DEFAULT '',
    due_at            TEXT NOT NULL,
    activated_at      TEXT,
    provisioning_at   TEXT,
    ready_at          TEXT,
    delivered_at      TEXT,
    handback_at       TEXT,
    closed_at         TEXT,
    end_reason        TEXT,
    updated_at        TEXT NOT NULL,
    UNIQUE (commune, year, seq)
) STRICT;

-- At most one open crisis per commune, enforced by the database itself.
CREATE UNIQUE INDEX crises_one_open_per_commune ON crises (commune)
    WHERE state NOT IN ('closed', 'rejected', 'cancelled');

CREATE TABLE idempotency_keys (
    user_id         INTEGER NOT NULL REFERENCES users (id),
    key             TEXT NOT NULL,
    request_sha256  TEXT NOT NULL,
    crisis_id       TEXT NOT NULL REFERENCES crises (id),
    created_at      TEXT NOT NULL,
    PRIMARY KEY (user_id, key)
) STRICT;

-- The audit chain: see docs/AUDIT.md for the canonical encoding hashed into `hash`.
CREATE TABLE audit_log (
    seq         INTEGER PRIMARY KEY,
    at          TEXT NOT NULL,
    actor_id    INTEGER NOT NULL,
    actor_name  TEXT NOT NULL,
    actor_role  TEXT NOT NULL,
    auth        TEXT NOT NULL,
    commune     TEXT,
    crisis      TEXT,
    action      TEXT NOT NULL,
    target      TEXT NOT NULL,
    details     TEXT NOT NULL,
    prev_hash   TEXT NOT NULL,
    hash        TEXT NOT NULL
) STRICT;
CREATE INDEX audit_log_crisis ON audit_log (crisis, seq);

-- Append-only: the daemon never updates or deletes audit entries, and the database refuses it.
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
