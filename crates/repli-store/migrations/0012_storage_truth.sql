-- One row the readiness check rewrites when the storage has failed a write or runs low on
-- space: a write that commits is the only proof that the storage takes writes again.
CREATE TABLE write_probe (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    at TEXT NOT NULL
);

-- The chain's head, signed by the audit key in the transaction of every append: no entry is
-- ever unsigned, and a tail rewritten behind replid's back no longer matches its signature.
-- A database upgraded to this version starts with its head unsigned (NULL), signed by the
-- next append after replid verified the chain at start.
CREATE TABLE audit_head (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL,
    hash TEXT NOT NULL,
    at TEXT NOT NULL,
    public_key TEXT,
    signature TEXT
);
INSERT INTO audit_head (id, seq, hash, at)
SELECT 1, seq, hash, at FROM audit_log ORDER BY seq DESC LIMIT 1;
