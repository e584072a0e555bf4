-- Playbook runs and their steps: the engine's durable state. Each step row is written before
-- and after its effect; a lease (owner + expiry) keeps one step from running twice at once.
CREATE TABLE runs (
    id INTEGER PRIMARY KEY,
    crisis_id TEXT NOT NULL REFERENCES crises(id),
    playbook TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('running', 'succeeded', 'failed', 'cancelled')),
    created_at TEXT NOT NULL,
    finished_at TEXT,
    UNIQUE (crisis_id, playbook)
);

CREATE TABLE steps (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    step_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    kind TEXT NOT NULL,
    title TEXT NOT NULL,
    needs TEXT NOT NULL,            -- JSON array of step ids
    params TEXT NOT NULL,           -- JSON object of templates, rendered when the step runs
    instructions TEXT,              -- template (manual steps)
    checklist TEXT NOT NULL,        -- JSON array of templates
    estimate_secs INTEGER NOT NULL,
    budget_secs INTEGER NOT NULL,
    max_attempts INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'running', 'waiting_manual', 'succeeded', 'failed', 'skipped')),
    attempts INTEGER NOT NULL DEFAULT 0,
    not_before TEXT,
    first_started_at TEXT,
    started_at TEXT,
    finished_at TEXT,
    lease_owner TEXT,
    lease_until TEXT,
    last_error TEXT,
    output TEXT,                    -- JSON
    rendered TEXT,                  -- JSON: rendered instructions and checklist shown to ops
    confirmed_by TEXT,
    confirmed_at TEXT,
    note TEXT,
    PRIMARY KEY (run_id, step_id)
);

CREATE INDEX steps_state ON steps(state);
