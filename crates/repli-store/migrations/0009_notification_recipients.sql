-- Notifications now also reach the commune's out-of-band contact (SMS, e-mail): the recipient
-- is kept with the message. NULL: the channel's configured ops recipients.
ALTER TABLE notifications ADD COLUMN recipient TEXT;
