-- Free-text discovery on SQLite is ranked by an in-memory index built from
-- the rows (src/store/text_index.rs): FTS5's bm25 scored every matching row
-- and could not stop early. The FTS5 table, the triggers that fed it and the
-- narrow index its ranked query checked filters against are dropped, which
-- also spares every registration their writes. The search_* columns stay and
-- are still written; the index derives the same text from each card.
DROP TRIGGER IF EXISTS agents_fts_insert;
DROP TRIGGER IF EXISTS agents_fts_delete;
DROP TRIGGER IF EXISTS agents_fts_update;
DROP TABLE IF EXISTS agents_fts;
DROP INDEX IF EXISTS agents_discovery;
