-- Expired memory items are deleted by the retention pruner (issue 20): it
-- finds them oldest expiry first, a few hundred at a time, by this index.
-- Items without a TTL (expires_at NULL) are not in it.
CREATE INDEX memory_items_by_expiry ON memory_items (expires_at) WHERE expires_at IS NOT NULL;
