-- The equipment pool and its loans.
CREATE TABLE items (
    serial      TEXT PRIMARY KEY NOT NULL,
    asset_tag   TEXT NOT NULL UNIQUE,
    kind        TEXT NOT NULL CHECK (kind IN ('laptop', 'router', 'phone', 'sim', 'printer')),
    model       TEXT NOT NULL,
    imei        TEXT UNIQUE,
    iccid       TEXT UNIQUE,
    msisdn      TEXT,
    apn         TEXT,
    location    TEXT,
    state       TEXT NOT NULL DEFAULT 'available' CHECK (state IN ('available', 'reserved', 'prepared', 'lent',
                    'returned', 'wiping', 'maintenance', 'lost', 'retired')),
    crisis_id   TEXT REFERENCES crises (id),
    updated_at  TEXT NOT NULL,
    -- An item held for a crisis names it; a free one does not.
    CHECK ((state IN ('reserved', 'prepared', 'lent', 'returned', 'wiping')) = (crisis_id IS NOT NULL))
) STRICT;
CREATE INDEX items_kind_state ON items (kind, state, asset_tag);
CREATE INDEX items_crisis ON items (crisis_id);

-- Per-item history (who, when, which crisis).
CREATE TABLE item_events (
    id          INTEGER PRIMARY KEY,
    serial      TEXT NOT NULL REFERENCES items (serial),
    at          TEXT NOT NULL,
    actor       TEXT NOT NULL,
    crisis_id   TEXT,
    from_state  TEXT,
    to_state    TEXT NOT NULL,
    note        TEXT
) STRICT;
CREATE INDEX item_events_serial ON item_events (serial, id);

-- What each crisis asked for, per kind; `wanted > allocated` is the waiting list.
CREATE TABLE crisis_needs (
    crisis_id     TEXT NOT NULL REFERENCES crises (id),
    kind          TEXT NOT NULL,
    wanted        INTEGER NOT NULL CHECK (wanted >= 0),
    requested_at  TEXT NOT NULL,
    PRIMARY KEY (crisis_id, kind)
) STRICT;

-- The commune's agents (named borrowers).
CREATE TABLE agents (
    id         INTEGER PRIMARY KEY,
    crisis_id  TEXT NOT NULL REFERENCES crises (id),
    name       TEXT NOT NULL,
    service    TEXT NOT NULL DEFAULT ''
) STRICT;

CREATE TABLE loans (
    id           INTEGER PRIMARY KEY,
    serial       TEXT NOT NULL REFERENCES items (serial),
    crisis_id    TEXT NOT NULL REFERENCES crises (id),
    agent_id     INTEGER REFERENCES agents (id),
    lent_at      TEXT NOT NULL,
    due_back     TEXT NOT NULL,
    returned_at  TEXT,
    condition    TEXT CHECK (condition IN ('ok', 'damaged', 'missing')),
    note         TEXT
) STRICT;
CREATE UNIQUE INDEX loans_one_open_per_item ON loans (serial) WHERE returned_at IS NULL;

-- A returned device is wiped and certified before it can be lent again.
CREATE TABLE wipes (
    id           INTEGER PRIMARY KEY,
    serial       TEXT NOT NULL REFERENCES items (serial),
    crisis_id    TEXT,
    at           TEXT NOT NULL,
    method       TEXT NOT NULL,
    operator     TEXT NOT NULL,
    certificate  TEXT NOT NULL
) STRICT;
