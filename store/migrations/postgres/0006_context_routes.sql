-- Issue #15, defect 4: A2A context ids are owned like task ids. The first
-- principal (`org/subject`) to use a context id at an agent owns it there;
-- anyone else naming it gets the unknown-task answer. Keyed by agent first:
-- context ids are chosen by callers and agents, so only (agent, context) is
-- unique.
CREATE TABLE context_routes (
    agent_id   TEXT        COLLATE "C" NOT NULL,
    context_id TEXT        COLLATE "C" NOT NULL,
    owner      TEXT        NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (agent_id, context_id)
);
