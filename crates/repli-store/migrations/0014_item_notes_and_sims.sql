-- An item's notes and physical condition (edited by ops, audited), and the SIM card a phone or
-- a router holds: a SIM sits in one device at most.
ALTER TABLE items ADD COLUMN notes TEXT NOT NULL DEFAULT '';
ALTER TABLE items ADD COLUMN condition TEXT NOT NULL DEFAULT 'ok' CHECK (condition IN ('ok', 'damaged'));
ALTER TABLE items ADD COLUMN sim TEXT REFERENCES items (serial);
CREATE UNIQUE INDEX items_one_device_per_sim ON items (sim) WHERE sim IS NOT NULL;
