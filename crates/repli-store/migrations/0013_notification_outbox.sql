-- The notifications table is the outbox: one row per message and recipient (ops' configured
-- recipients are written out when queued, so a resend goes only to the one that failed).
-- The crisis page lists a crisis's rows; delivery reads the due ones.
CREATE INDEX notifications_crisis ON notifications (crisis_id, id);
CREATE INDEX notifications_due ON notifications (status, next_attempt_at);
-- Who a message is for: 'dgs' (the commune's out-of-band contact), 'ops' (on call), 'auditors'.
-- Older rows: ops when they had no recipient, the DGS otherwise.
ALTER TABLE notifications ADD COLUMN audience TEXT CHECK (audience IN ('dgs', 'ops', 'auditors'));
