-- Stored graphs published as A2A agents (issue 18). The name is unique
-- across organisations (it is the agent's /agents/{name}); the spec is the
-- checked publication document, JSON as text; times are Unix seconds.
CREATE TABLE graph_agents (
    name       TEXT   PRIMARY KEY,
    org        TEXT   NOT NULL,
    spec       TEXT   NOT NULL,
    version    INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX graph_agents_by_org ON graph_agents (org, name);
