-- Memory namespaces (issue 20): structured records and vector documents,
-- with vector documents' chunks and their embeddings. Times are Unix
-- seconds; JSON is stored as text; a vector is its f32s, little-endian.
-- The rows are the truth: the ANN index is rebuilt from memory_chunks.
CREATE TABLE memory_namespaces (
    name       TEXT   PRIMARY KEY, -- unique across organisations: /v1/memory/{name}
    org        TEXT   NOT NULL,
    kind       TEXT   NOT NULL,    -- structured | vector
    spec       TEXT   NOT NULL,    -- the checked declaration, JSON
    created_at BIGINT NOT NULL
);
CREATE INDEX memory_namespaces_by_org ON memory_namespaces (org, name);

CREATE TABLE memory_items (
    namespace  TEXT   NOT NULL,
    key        TEXT   NOT NULL,
    value      TEXT   NOT NULL, -- the record or document, JSON
    version    BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    expires_at BIGINT,          -- NULL: never
    PRIMARY KEY (namespace, key)
);

CREATE TABLE memory_chunks (
    id        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, -- the index's id; never reused
    namespace TEXT   NOT NULL,
    key       TEXT   NOT NULL,
    seq       BIGINT NOT NULL,
    text      TEXT   NOT NULL,
    metadata  TEXT   NOT NULL, -- the document's metadata, JSON
    vector    BYTEA  NOT NULL,
    UNIQUE (namespace, key, seq)
);
