-- Model agents (issue 17): declarations, sealed secrets, conversations by
-- context and the daily usage ledger. Times are Unix seconds; days are
-- UTC `YYYY-MM-DD` text; JSON is stored as text, as written.
CREATE TABLE model_agents (
    name       TEXT   PRIMARY KEY, -- unique across organisations: /agents/{name}
    org        TEXT   NOT NULL,
    spec       TEXT   NOT NULL,    -- the checked declaration, JSON
    version    INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX model_agents_by_org ON model_agents (org, name);

-- Only the AEAD's nonce and ciphertext are stored, never a value in clear.
CREATE TABLE secrets (
    org        TEXT   NOT NULL,
    name       TEXT   NOT NULL,
    nonce      BLOB   NOT NULL,
    ciphertext BLOB   NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (org, name)
);

CREATE TABLE model_conversations (
    org        TEXT   NOT NULL,
    agent      TEXT   NOT NULL,
    context_id TEXT   NOT NULL,
    seq        INTEGER NOT NULL,
    message    TEXT   NOT NULL, -- one chat message, JSON
    PRIMARY KEY (org, agent, context_id, seq)
);

CREATE TABLE model_usage (
    org         TEXT   NOT NULL,
    day         TEXT   NOT NULL,
    tokens_in   INTEGER NOT NULL,
    tokens_out  INTEGER NOT NULL,
    cost_micros INTEGER NOT NULL, -- millionths of the price table's unit
    PRIMARY KEY (org, day)
);
