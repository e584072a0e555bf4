-- A tenant that refused a `$batch` whole with a 429 counts each batch against its limit
-- besides the batch's requests (Microsoft documents only the requests as counted); the kept
-- limit then counts them too, and a restarted daemon must know it to pace its first wave.
ALTER TABLE graph_pace ADD COLUMN batch_counted INTEGER NOT NULL DEFAULT 0 CHECK (batch_counted IN (0, 1));
