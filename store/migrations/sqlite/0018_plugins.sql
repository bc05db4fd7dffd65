-- Stored WebAssembly plugins (issue 21). The name is unique across
-- organisations (a plugin agent answers at /agents/{name}); `latest` is the
-- newest version's number, so the watchers of every replica poll one row.
-- Each version keeps its module's bytes with their SHA-256 (lowercase hex),
-- the signature when signed and the key id that verified it, a plugin
-- agent's declaration (JSON as text), who uploaded it and when (Unix seconds).
CREATE TABLE plugins (
    name       TEXT    PRIMARY KEY,
    org        TEXT    NOT NULL,
    kind       TEXT    NOT NULL, -- agent | guardrail
    latest     INTEGER NOT NULL,
    sha256     TEXT    NOT NULL, -- the newest version's
    updated_at INTEGER NOT NULL
);
CREATE INDEX plugins_by_org ON plugins (org, name);

CREATE TABLE plugin_versions (
    name        TEXT    NOT NULL REFERENCES plugins (name) ON DELETE CASCADE,
    version     INTEGER NOT NULL,
    sha256      TEXT    NOT NULL,
    size        INTEGER NOT NULL,
    module      BLOB    NOT NULL,
    signature   TEXT,
    signed_by   TEXT,
    declaration TEXT,
    uploaded_by TEXT    NOT NULL,
    uploaded_at INTEGER NOT NULL,
    PRIMARY KEY (name, version)
);
