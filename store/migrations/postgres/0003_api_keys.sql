-- API keys (issue 4). Only a SHA-256 of each key's secret is stored; the
-- key itself is shown once, when issued. Times are Unix seconds.
CREATE TABLE api_keys (
    id            TEXT   PRIMARY KEY,
    secret_sha256 TEXT   NOT NULL,
    subject       TEXT   NOT NULL,
    org           TEXT,
    scopes        TEXT   NOT NULL, -- JSON array of strings
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT,
    revoked_at    BIGINT
);
