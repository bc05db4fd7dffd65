-- Migration 0012: stored plans (issue 19). One row per version of a plan;
-- every change (an edit in review, approval, rejection, the run it started)
-- adds a version. `body` is the JSON of the planner's StoredPlan; the
-- columns beside it are for lookups.
CREATE TABLE plans (
    plan_id   TEXT NOT NULL,
    version   INTEGER NOT NULL,
    org       TEXT NOT NULL,
    owner     TEXT NOT NULL,
    status    TEXT NOT NULL,
    format    INTEGER NOT NULL,
    body      TEXT NOT NULL,
    stored_at TEXT NOT NULL,
    PRIMARY KEY (plan_id, version)
);
CREATE INDEX plans_owner ON plans (owner, stored_at);
