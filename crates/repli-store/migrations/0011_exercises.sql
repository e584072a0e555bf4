-- Exercises (drills): crises marked EXERCICE from end to end. An exercise groups the crises of
-- one or several communes; it names the only addresses its notifications may reach, its mode
-- (a table-top drill only counts equipment, a physical drill reserves it until a real crisis
-- needs it) and its timed injects.
CREATE TABLE exercises (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL,
    mode        TEXT NOT NULL CHECK (mode IN ('table_top', 'physical')),
    started_at  TEXT NOT NULL,
    started_by  INTEGER NOT NULL REFERENCES users (id),
    -- The scenario as given (TOML), kept for the after-action report.
    scenario    TEXT NOT NULL DEFAULT ''
) STRICT;

-- The phone numbers and e-mail addresses an exercise's notifications may go to, and nothing else.
CREATE TABLE exercise_recipients (
    exercise_id  INTEGER NOT NULL REFERENCES exercises (id),
    address      TEXT NOT NULL,
    PRIMARY KEY (exercise_id, address)
) STRICT;

-- Timed injects: delivered to the main courante of the crises they target when due.
CREATE TABLE exercise_injects (
    id            INTEGER PRIMARY KEY,
    exercise_id   INTEGER NOT NULL REFERENCES exercises (id),
    -- NULL: every crisis of the exercise.
    commune       TEXT REFERENCES communes (insee),
    due_at        TEXT NOT NULL,
    text          TEXT NOT NULL,
    -- What it does to the exercise's simulated tenant (JSON of repli_core::exercise::InjectEffect).
    effect        TEXT,
    delivered_at  TEXT
) STRICT;
CREATE INDEX exercise_injects_due ON exercise_injects (due_at) WHERE delivered_at IS NULL;

ALTER TABLE crises ADD COLUMN exercise_id INTEGER REFERENCES exercises (id);

-- A commune may have one open real crisis and, besides it, one open exercise.
DROP INDEX crises_one_open_per_commune;
CREATE UNIQUE INDEX crises_one_open_per_commune ON crises (commune, exercise_id IS NOT NULL)
    WHERE state NOT IN ('closed', 'rejected', 'cancelled');

-- What a table-top drill counted as available for each need (it reserves nothing).
ALTER TABLE crisis_needs ADD COLUMN counted INTEGER CHECK (counted >= 0);
