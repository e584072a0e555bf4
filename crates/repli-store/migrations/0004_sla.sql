-- SLA suspensions: the clock pauses while ops wait on the commune.
CREATE TABLE sla_suspensions (
    id          INTEGER PRIMARY KEY,
    crisis_id   TEXT NOT NULL REFERENCES crises (id),
    started_at  TEXT NOT NULL,
    ended_at    TEXT,
    reason      TEXT NOT NULL,
    started_by  INTEGER NOT NULL,
    ended_by    INTEGER
) STRICT;
CREATE UNIQUE INDEX sla_suspensions_one_open ON sla_suspensions (crisis_id) WHERE ended_at IS NULL;

-- Legal clocks: when the commune became aware of the attack, whether personal data is involved,
-- and when the CNIL was notified and the complaint filed.
ALTER TABLE crises ADD COLUMN aware_at TEXT;
ALTER TABLE crises ADD COLUMN personal_data INTEGER CHECK (personal_data IN (0, 1));
ALTER TABLE crises ADD COLUMN cnil_notified_at TEXT;
ALTER TABLE crises ADD COLUMN complaint_filed_at TEXT;

-- Notifications to ops (SLA escalations, legal reminders), each sent once per key, retried.
CREATE TABLE notifications (
    id               INTEGER PRIMARY KEY,
    key              TEXT NOT NULL,
    channel          TEXT NOT NULL,
    crisis_id        TEXT REFERENCES crises (id),
    subject          TEXT NOT NULL,
    body             TEXT NOT NULL,
    created_at       TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'failed')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  TEXT NOT NULL,
    last_error       TEXT,
    sent_at          TEXT,
    UNIQUE (key, channel)
) STRICT;
