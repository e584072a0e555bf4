-- One-time links by which a person chooses their own web password: an admin creates one with
-- the login it sets, hands the link over out of band, and it works once, before it expires.
-- Only the SHA-256 of the link's secret is kept.
CREATE TABLE password_links (
    token_sha256 TEXT PRIMARY KEY,
    user_id      INTEGER NOT NULL REFERENCES users (id),
    login        TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    expires_at   TEXT NOT NULL,
    used_at      TEXT
) STRICT;
CREATE INDEX password_links_user ON password_links (user_id);
