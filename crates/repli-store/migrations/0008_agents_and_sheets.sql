-- How many agents the commune named (kept with the crisis row, updated in the transaction that
-- changes the list), and the count ops accepted as the whole list when it is shorter than
-- declared (NULL: not accepted; the accounts step waits for the missing names).
ALTER TABLE crises ADD COLUMN agents_named INTEGER NOT NULL DEFAULT 0;
ALTER TABLE crises ADD COLUMN agents_short_ok INTEGER;
UPDATE crises SET agents_named = (SELECT COUNT(*) FROM agents a WHERE a.crisis_id = crises.id);

-- Which accounts had their credential sheet handed over: a new account gets its sheet once;
-- a re-issue (audited, with its reason) hands every sheet over again. Erased by the RGPD purge.
CREATE TABLE credential_sheets (
    crisis_id  TEXT NOT NULL REFERENCES crises (id),
    upn        TEXT NOT NULL,
    issued_at  TEXT NOT NULL,
    PRIMARY KEY (crisis_id, upn)
) STRICT;
