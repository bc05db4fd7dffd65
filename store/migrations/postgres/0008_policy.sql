-- Migration 0008: policy versions and the audit chain. Until this release the policy store
-- applied this DDL itself at every start, so every statement is idempotent
-- (IF NOT EXISTS): a database written by an earlier release is unchanged.
CREATE TABLE IF NOT EXISTS policy_versions (
    version    BIGINT  PRIMARY KEY,
    text       TEXT    NOT NULL,
    author     TEXT    NOT NULL,
    reason     TEXT    NOT NULL,
    created_at TEXT    NOT NULL,
    active     BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE UNIQUE INDEX IF NOT EXISTS policy_versions_one_active
    ON policy_versions (active) WHERE active;

CREATE TABLE IF NOT EXISTS audit_records (
    seq         BIGINT PRIMARY KEY,
    at          TEXT   NOT NULL,
    request_id  TEXT,
    subject     TEXT   NOT NULL,
    org         TEXT,
    method      TEXT   NOT NULL,
    action      TEXT   NOT NULL,
    resource    TEXT   NOT NULL,
    decision    TEXT   NOT NULL,
    determining TEXT   NOT NULL,
    detail      TEXT   NOT NULL,
    prev_hash   TEXT   NOT NULL,
    hash        TEXT   NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_records_subject ON audit_records (subject, seq);
CREATE INDEX IF NOT EXISTS audit_records_at ON audit_records (at);

-- Retention (issue 15): where the pruned prefix of the audit chain ended.
-- Pruning deletes the oldest records and moves this one row forward in the
-- same transaction (seq and hash of the newest record deleted), so
-- verification continues the chain from it.
CREATE TABLE IF NOT EXISTS audit_checkpoint (
    id        SMALLINT PRIMARY KEY CHECK (id = 1),
    seq       BIGINT   NOT NULL,
    hash      TEXT     NOT NULL,
    at        TEXT     NOT NULL,
    pruned_at TEXT     NOT NULL,
    pruned    BIGINT   NOT NULL
);
