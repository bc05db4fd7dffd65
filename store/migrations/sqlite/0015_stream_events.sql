-- Resumable streams (issue 24): each event of a task's stream as the
-- gateway relayed it, numbered from 1 per task, so a caller whose
-- connection dropped can ask any replica for what it missed (SSE
-- Last-Event-ID). Kept for the retention window; created_at is Unix
-- seconds.
CREATE TABLE stream_events (
    task_id     TEXT   NOT NULL,
    seq         INTEGER NOT NULL,
    event       TEXT   NOT NULL, -- JSON: an A2A 1.0 StreamResponse, or the gateway's end marker
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (task_id, seq)
);
CREATE INDEX stream_events_age ON stream_events (created_at);
