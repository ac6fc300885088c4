-- Switchyard schema, version 1. Times are milliseconds since the Unix epoch.
CREATE TABLE orgs (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE api_keys (
    id         TEXT PRIMARY KEY,
    org_id     TEXT REFERENCES orgs(id) ON DELETE CASCADE,
    role       TEXT NOT NULL,
    key_hash   TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
);

CREATE TABLE event_types (
    org_id      TEXT NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    description TEXT NOT NULL,
    entity_type TEXT,
    schema      TEXT,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (org_id, name)
);

CREATE TABLE endpoints (
    id                 TEXT PRIMARY KEY,
    org_id             TEXT NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    url                TEXT NOT NULL,
    description        TEXT NOT NULL,
    profile            TEXT NOT NULL,
    headers            TEXT NOT NULL,
    token_enc          BLOB,
    token_header       TEXT,
    insecure_tls       INTEGER NOT NULL,
    timeout_ms         INTEGER NOT NULL,
    retry_schedule     TEXT,
    max_in_flight      INTEGER NOT NULL,
    secrets_enc        BLOB NOT NULL,
    enabled            INTEGER NOT NULL,
    disabled_reason    TEXT,
    owner_subscription TEXT,
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL,
    max_rps            INTEGER
);
CREATE INDEX endpoints_org ON endpoints (org_id, id);

CREATE TABLE subscriptions (
    id          TEXT PRIMARY KEY,
    org_id      TEXT NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    event_types TEXT NOT NULL,
    -- exactly one of endpoint_id and executor is set
    endpoint_id TEXT REFERENCES endpoints(id) ON DELETE CASCADE,
    executor    TEXT,
    entity_id   TEXT,
    filter      TEXT,
    created_at  INTEGER NOT NULL
);
CREATE INDEX subscriptions_org ON subscriptions (org_id, id);

CREATE TABLE events (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id      TEXT NOT NULL,
    id          TEXT NOT NULL,
    type        TEXT NOT NULL,
    timestamp   INTEGER NOT NULL,
    entity_type TEXT,
    entity_id   TEXT,
    data        TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    UNIQUE (org_id, id)
);
CREATE INDEX events_org_seq ON events (org_id, seq);
CREATE INDEX events_org_type ON events (org_id, type, seq);
CREATE INDEX events_org_entity ON events (org_id, entity_id, seq);

CREATE TABLE deliveries (
    id              TEXT PRIMARY KEY,
    org_id          TEXT NOT NULL,
    event_seq       INTEGER NOT NULL REFERENCES events(seq),
    event_id        TEXT NOT NULL,
    -- exactly one of endpoint_id and executor is set
    endpoint_id     TEXT,
    executor        TEXT,
    subscription_id TEXT,
    status          TEXT NOT NULL,
    attempts        INTEGER NOT NULL,
    next_attempt_at INTEGER,
    claimed_by      TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX deliveries_event ON deliveries (org_id, event_id);
CREATE INDEX deliveries_org ON deliveries (org_id, id);
CREATE INDEX deliveries_endpoint ON deliveries (endpoint_id, event_seq);

CREATE TABLE attempts (
    id            TEXT PRIMARY KEY,
    delivery_id   TEXT NOT NULL,
    org_id        TEXT NOT NULL,
    at            INTEGER NOT NULL,
    status_code   INTEGER,
    duration_ms   REAL NOT NULL,
    error         TEXT,
    response_body TEXT
);
CREATE INDEX attempts_delivery ON attempts (delivery_id, at);
