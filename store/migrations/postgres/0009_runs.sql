-- Migration 0009: durable runs and stored graphs. Until this release the run store
-- applied this DDL itself at every start, so every statement is idempotent
-- (IF NOT EXISTS): a database written by an earlier release is unchanged.
CREATE TABLE IF NOT EXISTS runs (
    run_id           TEXT PRIMARY KEY,
    graph_id         TEXT NOT NULL,
    owner            TEXT NOT NULL,
    format           BIGINT NOT NULL,
    header           TEXT NOT NULL,
    source           TEXT NOT NULL,
    status           TEXT NOT NULL,
    seq              BIGINT NOT NULL DEFAULT 0,
    lease_owner      TEXT,
    lease_expires_ms BIGINT,
    created_at       TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_by_lease ON runs (status, lease_expires_ms);
CREATE TABLE IF NOT EXISTS run_steps (
    run_id TEXT NOT NULL,
    seq    BIGINT NOT NULL,
    format BIGINT NOT NULL,
    body   TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
);
CREATE TABLE IF NOT EXISTS run_checkpoints (
    run_id     TEXT NOT NULL,
    name       TEXT NOT NULL,
    seq        BIGINT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (run_id, name)
);
-- Retention (issue 15) deletes the oldest finished runs first.
CREATE INDEX IF NOT EXISTS runs_by_created ON runs (created_at);
-- Run listings (issue 14): one owner's runs, newest first.
CREATE INDEX IF NOT EXISTS runs_by_owner ON runs (owner, run_id);
-- Stored graphs (issue 14): every store of an organisation's graph name adds
-- a version; the summary is the JSON of the API's GraphSummary.
CREATE TABLE IF NOT EXISTS graphs (
    org       TEXT NOT NULL,
    name      TEXT NOT NULL,
    version   BIGINT NOT NULL,
    format    BIGINT NOT NULL,
    summary   TEXT NOT NULL,
    source    TEXT NOT NULL,
    stored_at TEXT NOT NULL,
    PRIMARY KEY (org, name, version)
);
