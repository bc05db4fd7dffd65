-- Federation (issue 6): the peer organisations this deployment exchanges
-- signed calls with, and the nonces of signed calls already accepted.
-- Times are Unix seconds.
CREATE TABLE peers (
    domain      TEXT   PRIMARY KEY,
    base_url    TEXT   NOT NULL,
    jwks_url    TEXT,
    keys        TEXT   NOT NULL, -- JSON array of {kid, jwk, state: approved|pending}
    trust       TEXT   NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

-- One row per accepted signed call, kept until its clock window has passed:
-- a second insert of the same (peer, nonce) fails, on every replica.
CREATE TABLE peer_nonces (
    peer        TEXT   NOT NULL,
    nonce       TEXT   NOT NULL,
    expires_at  INTEGER NOT NULL,
    PRIMARY KEY (peer, nonce)
);
CREATE INDEX peer_nonces_expiry ON peer_nonces (expires_at);
