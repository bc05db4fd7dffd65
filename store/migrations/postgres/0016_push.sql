-- Push notifications through the gateway (issue 24). A caller's push
-- config of a task, owned like the task; the agent is given the gateway's
-- webhook (hook, hook_token) instead of the caller's URL. Each
-- notification the agent posts is a delivery, retried until delivered or
-- dead-lettered; a pending one whose attempt is long overdue was left by a
-- replica that stopped, and another replica claims it. Times are Unix
-- seconds.
CREATE TABLE push_configs (
    task_id     TEXT   NOT NULL,
    id          TEXT   NOT NULL,
    agent       TEXT   NOT NULL,
    owner       TEXT   NOT NULL,
    config      TEXT   NOT NULL, -- JSON: the caller's TaskPushNotificationConfig
    hook        TEXT   NOT NULL UNIQUE,
    hook_token  TEXT   NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (task_id, id)
);
CREATE TABLE push_deliveries (
    id          TEXT   PRIMARY KEY,
    task_id     TEXT   NOT NULL,
    config_id   TEXT   NOT NULL,
    owner       TEXT   NOT NULL,
    payload     TEXT   NOT NULL, -- JSON: an A2A 1.0 StreamResponse
    status      TEXT   NOT NULL, -- pending | delivered | dead
    attempts    BIGINT NOT NULL,
    next_at     BIGINT NOT NULL, -- when the next attempt is due (or began)
    last_error  TEXT,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE INDEX push_deliveries_task ON push_deliveries (task_id, created_at);
CREATE INDEX push_deliveries_due ON push_deliveries (status, next_at);
