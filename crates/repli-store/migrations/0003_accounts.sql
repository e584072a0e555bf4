-- Web sign-in: an optional login and argon2id password hash per user, and server-side sessions.
ALTER TABLE users ADD COLUMN login TEXT;
ALTER TABLE users ADD COLUMN password_phc TEXT;
CREATE UNIQUE INDEX users_login ON users (login) WHERE login IS NOT NULL;

-- Only the SHA-256 of a session id is stored, like API tokens.
CREATE TABLE sessions (
    id_sha256   TEXT PRIMARY KEY NOT NULL,
    user_id     INTEGER NOT NULL REFERENCES users (id),
    csrf        TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    expires_at  TEXT NOT NULL,
    revoked_at  TEXT
) STRICT;

-- RGPD minimisation: contact details are erased some time after a crisis ends.
ALTER TABLE crises ADD COLUMN personal_data_purged_at TEXT;
