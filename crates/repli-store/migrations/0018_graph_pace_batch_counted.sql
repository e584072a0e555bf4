-- A tenant that refused a `$batch` whole with a 429 counts each batch against its limit
-- besides the batch's requests (Microsoft's throttling page is silent on the batch request
-- itself); the kept limit then counts them too, and a restarted daemon must know it to pace
-- its first wave.
ALTER TABLE graph_pace ADD COLUMN batch_counted INTEGER NOT NULL DEFAULT 0 CHECK (batch_counted IN (0, 1));
-- Limits kept before this column were learnt counting every `$batch` as one more request,
-- whatever the tenant did: neither of the two units the column now tells apart. They are
-- dropped, so the next kit learns the limit again (one 429) instead of starting from a value
-- that may overrun it; "never throttled" stays what it was.
DELETE FROM graph_pace WHERE limit_per_second IS NOT NULL;
