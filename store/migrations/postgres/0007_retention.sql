-- Retention (issue 15): the pruner deletes the least recently written task
-- routes first, a batch at a time; without this index every batch would scan
-- the whole table to find them.
CREATE INDEX task_routes_updated ON task_routes (updated_at);
