-- Following other replicas' memory writes (issue 20): every transaction
-- that adds or removes chunks of a vector namespace bumps the namespace's
-- revision and records one row per chunk added or removed under it, so a
-- replica whose index reflects revision R applies the changes after R
-- instead of rebuilding. Namespaces written before this migration start
-- at revision 0, which their indexes (built from the rows) reflect; one
-- created later starts one past the highest revision its name recorded
-- below, so a replica still holding an index of an earlier namespace of
-- that name finds a gap in the changes and rebuilds.
-- Change rows are pruned by age (changed_at, Unix seconds); a replica that
-- finds the changes it needs gone rebuilds that namespace from the rows.
ALTER TABLE memory_namespaces ADD COLUMN revision INTEGER NOT NULL DEFAULT 0;

CREATE TABLE memory_chunk_changes (
    namespace  TEXT    NOT NULL,
    revision   INTEGER NOT NULL, -- the namespace's revision the change made
    chunk_id   INTEGER NOT NULL, -- memory_chunks.id (never reused)
    op         TEXT    NOT NULL, -- add | remove
    changed_at INTEGER NOT NULL,
    PRIMARY KEY (namespace, revision, chunk_id)
);
CREATE INDEX memory_chunk_changes_by_age ON memory_chunk_changes (changed_at);
