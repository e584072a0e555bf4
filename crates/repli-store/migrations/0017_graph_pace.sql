-- What each Microsoft 365 tenant's Graph throttle taught replid (repli_core::m365::GraphPace):
-- the requests it admitted a second when it last throttled, or that it never did. Read at
-- start so a restarted daemon does not learn it again from a 429 while a kit waits. Every
-- change is audited (`service.graph_pace`).
CREATE TABLE graph_pace (
    tenant           TEXT PRIMARY KEY,
    limit_per_second INTEGER CHECK (limit_per_second IS NULL OR limit_per_second > 0),
    open             INTEGER NOT NULL CHECK (open IN (0, 1)),
    learnt_at        TEXT NOT NULL
) STRICT;
