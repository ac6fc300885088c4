-- Executors (versioned), secrets, executor runs, per-organization key-value storage.
CREATE TABLE executors (
    org_id      TEXT NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    version     INTEGER NOT NULL,
    description TEXT NOT NULL,
    spec        TEXT NOT NULL,
    parameters  TEXT,
    retries     INTEGER,
    deleted     INTEGER NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (org_id, name, version)
);

CREATE TABLE secrets (
    org_id     TEXT NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    value_enc  BLOB NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (org_id, name)
);

CREATE TABLE runs (
    id          TEXT PRIMARY KEY,
    org_id      TEXT NOT NULL,
    executor    TEXT NOT NULL,
    version     INTEGER NOT NULL,
    event_id    TEXT,
    status      TEXT NOT NULL,
    input       TEXT NOT NULL,
    output      TEXT,
    error       TEXT,
    logs        TEXT NOT NULL,
    stderr      TEXT NOT NULL,
    exit        INTEGER,
    duration_ms REAL NOT NULL,
    at          INTEGER NOT NULL
);
CREATE INDEX runs_event ON runs (org_id, event_id) WHERE event_id IS NOT NULL;
CREATE INDEX runs_org ON runs (org_id, id);

CREATE TABLE kv (
    org_id     TEXT NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    key        TEXT NOT NULL,
    value      TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (org_id, key)
);
