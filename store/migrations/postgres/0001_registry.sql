-- The agent registry on PostgreSQL. Card and upstreams are JSON text, stored
-- verbatim (jsonb would reorder keys). See src/store/mod.rs for the
-- invariants every write keeps.

CREATE TABLE agents (
    pk                 BIGSERIAL PRIMARY KEY,
    -- Byte order ("C"), as on SQLite, so id order (ranked ties) is the same on both.
    id                 TEXT        COLLATE "C" NOT NULL UNIQUE,
    name               TEXT        NOT NULL,
    org                TEXT        NOT NULL,
    role               TEXT        NOT NULL,
    trust              TEXT        NOT NULL,
    trust_rank         SMALLINT    NOT NULL,
    version            BIGINT      NOT NULL,
    created_at         TIMESTAMPTZ NOT NULL,
    updated_at         TIMESTAMPTZ NOT NULL,
    deleted_at         TIMESTAMPTZ,
    -- Large values last, so filters on the small columns never read past them.
    card               TEXT        NOT NULL,
    upstreams          TEXT        NOT NULL,
    search_name        TEXT        NOT NULL,
    search_description TEXT        NOT NULL,
    search_skills      TEXT        NOT NULL,
    -- Generated, so the text index always matches the row.
    search             TSVECTOR GENERATED ALWAYS AS (
        setweight(to_tsvector('simple', search_name), 'A')
        || setweight(to_tsvector('simple', search_description), 'B')
        || setweight(to_tsvector('simple', search_skills), 'C')
    ) STORED
);
CREATE INDEX agents_org_pk ON agents (org, pk);
CREATE INDEX agents_role_pk ON agents (role, pk);
CREATE INDEX agents_trust_pk ON agents (trust_rank, pk);
CREATE INDEX agents_search ON agents USING GIN (search);

CREATE TABLE agent_versions (
    id         TEXT        COLLATE "C" NOT NULL,
    version    BIGINT      NOT NULL,
    name       TEXT        NOT NULL,
    org        TEXT        NOT NULL,
    role       TEXT        NOT NULL,
    trust      TEXT        NOT NULL,
    card       TEXT        NOT NULL,
    upstreams  TEXT        NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    deleted_at TIMESTAMPTZ,
    PRIMARY KEY (id, version)
);

CREATE TABLE trust_changes (
    seq        BIGSERIAL   PRIMARY KEY,
    agent_id   TEXT        COLLATE "C" NOT NULL REFERENCES agents (id),
    from_level TEXT        NOT NULL,
    to_level   TEXT        NOT NULL,
    actor      TEXT        NOT NULL,
    is_admin   BOOLEAN     NOT NULL,
    reason     TEXT        NOT NULL,
    at         TIMESTAMPTZ NOT NULL
);
CREATE INDEX trust_changes_agent ON trust_changes (agent_id, seq);

CREATE TABLE agent_skills (
    skill    TEXT   NOT NULL,
    agent_pk BIGINT NOT NULL REFERENCES agents (pk),
    PRIMARY KEY (skill, agent_pk)
);
CREATE INDEX agent_skills_agent ON agent_skills (agent_pk);

CREATE TABLE agent_tags (
    tag      TEXT   NOT NULL,
    agent_pk BIGINT NOT NULL REFERENCES agents (pk),
    PRIMARY KEY (tag, agent_pk)
);
CREATE INDEX agent_tags_agent ON agent_tags (agent_pk);

CREATE TABLE agent_modes (
    direction TEXT   NOT NULL CHECK (direction IN ('in', 'out')),
    mode      TEXT   NOT NULL,
    agent_pk  BIGINT NOT NULL REFERENCES agents (pk),
    PRIMARY KEY (direction, mode, agent_pk)
);
CREATE INDEX agent_modes_agent ON agent_modes (agent_pk);

CREATE TABLE task_routes (
    task_id    TEXT        COLLATE "C" NOT NULL PRIMARY KEY,
    context_id TEXT,
    agent_id   TEXT        COLLATE "C" NOT NULL,
    owner      TEXT        NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX task_routes_owner ON task_routes (owner, task_id);
CREATE INDEX task_routes_owner_agent ON task_routes (owner, agent_id, task_id);
