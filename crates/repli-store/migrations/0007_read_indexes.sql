-- A crisis view counts its allocated items per kind and reads its suspensions in one statement
-- (repli-store src/read.rs): index both by crisis. The new items index starts with crisis_id, so
-- it also serves every query items_crisis served.
CREATE INDEX items_crisis_kind_state ON items (crisis_id, kind, state);
DROP INDEX items_crisis;
CREATE INDEX sla_suspensions_crisis ON sla_suspensions (crisis_id, started_at, id);
