-- Capability grants of stored plugin versions (issue 21): the names a
-- version was uploaded with (`clock`, `random`, `env`), as a JSON array.
-- Versions stored before this migration upgrade in place with none ('[]'),
-- which is what they ran with: only `log` (and `call_agent` for agents).
ALTER TABLE plugin_versions ADD COLUMN grants TEXT NOT NULL DEFAULT '[]';
