-- Federated graph execution (issue 18): the first successful answer to an
-- idempotent call from a peer organisation, so a repeated key (the peer's
-- run resumed after a crash) gets it instead of running the agent twice.
-- Kept for the retention window; created_at is Unix seconds.
CREATE TABLE peer_call_outcomes (
    peer        TEXT   NOT NULL,
    agent       TEXT   NOT NULL,
    subject     TEXT   NOT NULL,
    call_key    TEXT   NOT NULL,
    outcome     TEXT   NOT NULL, -- JSON: the A2A SendMessage result
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (peer, agent, subject, call_key)
);
CREATE INDEX peer_call_outcomes_age ON peer_call_outcomes (created_at);
