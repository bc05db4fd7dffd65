-- The agent registry on SQLite. Timestamps are RFC 3339 text in UTC; card and
-- upstreams are JSON text, stored verbatim. See src/store/mod.rs for the
-- invariants every write keeps.

CREATE TABLE agents (
    pk                 INTEGER PRIMARY KEY,
    id                 TEXT    NOT NULL UNIQUE,
    name               TEXT    NOT NULL,
    org                TEXT    NOT NULL,
    role               TEXT    NOT NULL,
    trust              TEXT    NOT NULL,
    trust_rank         INTEGER NOT NULL,
    version            INTEGER NOT NULL,
    created_at         TEXT    NOT NULL,
    updated_at         TEXT    NOT NULL,
    deleted_at         TEXT,
    -- Large values last, so filters on the small columns never read past them.
    card               TEXT    NOT NULL,
    upstreams          TEXT    NOT NULL,
    search_name        TEXT    NOT NULL,
    search_description TEXT    NOT NULL,
    search_skills      TEXT    NOT NULL
);
CREATE INDEX agents_org_pk ON agents (org, pk);
CREATE INDEX agents_role_pk ON agents (role, pk);
CREATE INDEX agents_trust_pk ON agents (trust_rank, pk);

-- Earlier versions of every agent, same columns as the live row.
CREATE TABLE agent_versions (
    id         TEXT    NOT NULL,
    version    INTEGER NOT NULL,
    name       TEXT    NOT NULL,
    org        TEXT    NOT NULL,
    role       TEXT    NOT NULL,
    trust      TEXT    NOT NULL,
    card       TEXT    NOT NULL,
    upstreams  TEXT    NOT NULL,
    created_at TEXT    NOT NULL,
    updated_at TEXT    NOT NULL,
    deleted_at TEXT,
    PRIMARY KEY (id, version)
) WITHOUT ROWID;

CREATE TABLE trust_changes (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    agent_id   TEXT    NOT NULL REFERENCES agents (id),
    from_level TEXT    NOT NULL,
    to_level   TEXT    NOT NULL,
    actor      TEXT    NOT NULL,
    is_admin   INTEGER NOT NULL,
    reason     TEXT    NOT NULL,
    at         TEXT    NOT NULL
);
CREATE INDEX trust_changes_agent ON trust_changes (agent_id, seq);

-- Discovery side tables: one row per (term, agent), so a filter is an index range.
CREATE TABLE agent_skills (
    skill    TEXT    NOT NULL,
    agent_pk INTEGER NOT NULL REFERENCES agents (pk),
    PRIMARY KEY (skill, agent_pk)
) WITHOUT ROWID;
CREATE INDEX agent_skills_agent ON agent_skills (agent_pk);

CREATE TABLE agent_tags (
    tag      TEXT    NOT NULL,
    agent_pk INTEGER NOT NULL REFERENCES agents (pk),
    PRIMARY KEY (tag, agent_pk)
) WITHOUT ROWID;
CREATE INDEX agent_tags_agent ON agent_tags (agent_pk);

CREATE TABLE agent_modes (
    direction TEXT    NOT NULL CHECK (direction IN ('in', 'out')),
    mode      TEXT    NOT NULL,
    agent_pk  INTEGER NOT NULL REFERENCES agents (pk),
    PRIMARY KEY (direction, mode, agent_pk)
) WITHOUT ROWID;
CREATE INDEX agent_modes_agent ON agent_modes (agent_pk);

-- Full-text index over the search columns, kept in sync by triggers so it
-- changes in the same transaction as the row.
CREATE VIRTUAL TABLE agents_fts USING fts5 (
    search_name, search_description, search_skills,
    content = 'agents', content_rowid = 'pk',
    tokenize = 'unicode61 remove_diacritics 2'
);
CREATE TRIGGER agents_fts_insert AFTER INSERT ON agents BEGIN
    INSERT INTO agents_fts (rowid, search_name, search_description, search_skills)
    VALUES (new.pk, new.search_name, new.search_description, new.search_skills);
END;
CREATE TRIGGER agents_fts_delete AFTER DELETE ON agents BEGIN
    INSERT INTO agents_fts (agents_fts, rowid, search_name, search_description, search_skills)
    VALUES ('delete', old.pk, old.search_name, old.search_description, old.search_skills);
END;
CREATE TRIGGER agents_fts_update AFTER UPDATE OF search_name, search_description, search_skills ON agents BEGIN
    INSERT INTO agents_fts (agents_fts, rowid, search_name, search_description, search_skills)
    VALUES ('delete', old.pk, old.search_name, old.search_description, old.search_skills);
    INSERT INTO agents_fts (rowid, search_name, search_description, search_skills)
    VALUES (new.pk, new.search_name, new.search_description, new.search_skills);
END;

CREATE TABLE task_routes (
    task_id    TEXT NOT NULL PRIMARY KEY,
    context_id TEXT,
    agent_id   TEXT NOT NULL,
    owner      TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX task_routes_owner ON task_routes (owner, task_id);
CREATE INDEX task_routes_owner_agent ON task_routes (owner, agent_id, task_id);
