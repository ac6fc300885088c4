-- The schema of SQLite's migrations 1 to 11, in PostgreSQL's types: times are milliseconds
-- (BIGINT), flags BOOLEAN, ciphertexts BYTEA. Payloads and documents stay TEXT, not JSONB: a
-- publisher's key order and number digits are kept as published.

CREATE TABLE orgs (
    id                  TEXT PRIMARY KEY,
    name                TEXT NOT NULL,
    created_at          BIGINT NOT NULL,
    routing_version     BIGINT NOT NULL DEFAULT 0,
    retention_s         BIGINT,
    payload_retention_s BIGINT
);

CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,
    org_id       TEXT REFERENCES orgs(id) ON DELETE CASCADE,
    role         TEXT NOT NULL,
    key_hash     TEXT NOT NULL UNIQUE,
    created_at   BIGINT NOT NULL,
    prefix       TEXT NOT NULL DEFAULT '',
    last_used_at BIGINT
);
CREATE INDEX api_keys_by_org ON api_keys (org_id);

CREATE TABLE event_types (
    org_id      TEXT NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    description TEXT NOT NULL,
    entity_type TEXT,
    schema      TEXT,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (org_id, name)
);

CREATE TABLE endpoints (
    id                 TEXT PRIMARY KEY,
    org_id             TEXT NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    url                TEXT NOT NULL,
    description        TEXT NOT NULL,
    profile            TEXT NOT NULL,
    headers            TEXT NOT NULL,
    token_enc          BYTEA,
    token_header       TEXT,
    insecure_tls       BOOLEAN NOT NULL,
    timeout_ms         BIGINT NOT NULL,
    retry_schedule     TEXT,
    max_in_flight      BIGINT NOT NULL,
    secrets_enc        BYTEA NOT NULL,
    enabled            BOOLEAN NOT NULL,
    disabled_reason    TEXT,
    owner_subscription TEXT,
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL,
    max_rps            BIGINT,
    ordering_key       TEXT,
    on_head_failure    TEXT
);
CREATE INDEX endpoints_org ON endpoints (org_id, id);

CREATE TABLE subscriptions (
    id          TEXT PRIMARY KEY,
    org_id      TEXT NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    event_types TEXT NOT NULL,
    endpoint_id TEXT REFERENCES endpoints(id) ON DELETE CASCADE,
    executor    TEXT,
    entity_id   TEXT,
    filter      TEXT,
    created_at  BIGINT NOT NULL,
    mode        TEXT NOT NULL DEFAULT 'async'
);
CREATE INDEX subscriptions_org ON subscriptions (org_id, id);

CREATE TABLE events (
    seq                BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id             TEXT NOT NULL,
    id                 TEXT NOT NULL,
    type               TEXT NOT NULL,
    timestamp          BIGINT NOT NULL,
    entity_type        TEXT,
    entity_id          TEXT,
    data               TEXT NOT NULL,
    received_at        BIGINT NOT NULL,
    payload_dropped_at BIGINT,
    UNIQUE (org_id, id)
);
CREATE INDEX events_org_seq ON events (org_id, seq);
CREATE INDEX events_org_type ON events (org_id, type, seq);
CREATE INDEX events_org_entity ON events (org_id, entity_id, seq);

CREATE TABLE deliveries (
    id              TEXT PRIMARY KEY,
    org_id          TEXT NOT NULL,
    event_seq       BIGINT NOT NULL,
    event_id        TEXT NOT NULL,
    endpoint_id     TEXT,
    executor        TEXT,
    subscription_id TEXT,
    status          TEXT NOT NULL,
    attempts        BIGINT NOT NULL,
    next_attempt_at BIGINT,
    claimed_by      TEXT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    ordering_key    TEXT,
    order_slot      TEXT
);
CREATE INDEX deliveries_event ON deliveries (org_id, event_id);
CREATE INDEX deliveries_org ON deliveries (org_id, id);
CREATE INDEX deliveries_endpoint ON deliveries (endpoint_id, event_seq);
CREATE INDEX deliveries_order ON deliveries (endpoint_id, order_slot, event_seq)
    WHERE order_slot IS NOT NULL;
CREATE INDEX deliveries_endpoint_due ON deliveries (endpoint_id, next_attempt_at)
    WHERE status = 'pending';

CREATE TABLE attempts (
    id              TEXT PRIMARY KEY,
    delivery_id     TEXT NOT NULL,
    org_id          TEXT NOT NULL,
    at              BIGINT NOT NULL,
    status_code     BIGINT,
    duration_ms     DOUBLE PRECISION NOT NULL,
    error           TEXT,
    response_body   TEXT,
    endpoint_id     TEXT,
    waited          TEXT,
    retry_reason    TEXT,
    request_headers TEXT
);
CREATE INDEX attempts_delivery ON attempts (delivery_id, at);
CREATE INDEX attempts_endpoint ON attempts (endpoint_id, at) WHERE endpoint_id IS NOT NULL;

CREATE TABLE endpoint_health (
    endpoint_id          TEXT PRIMARY KEY REFERENCES endpoints(id) ON DELETE CASCADE,
    org_id               TEXT NOT NULL,
    consecutive_failures BIGINT NOT NULL,
    failing_since        BIGINT,
    last_success_at      BIGINT,
    last_failure_at      BIGINT,
    last_error           TEXT
);

CREATE TABLE executors (
    org_id      TEXT NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    version     BIGINT NOT NULL,
    description TEXT NOT NULL,
    spec        TEXT NOT NULL,
    parameters  TEXT,
    retries     BIGINT,
    deleted     BOOLEAN NOT NULL DEFAULT FALSE,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (org_id, name, version)
);

CREATE TABLE secrets (
    org_id     TEXT NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    value_enc  BYTEA NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (org_id, name)
);

CREATE TABLE runs (
    id          TEXT PRIMARY KEY,
    org_id      TEXT NOT NULL,
    executor    TEXT NOT NULL,
    version     BIGINT NOT NULL,
    event_id    TEXT,
    status      TEXT NOT NULL,
    input       TEXT NOT NULL,
    output      TEXT,
    error       TEXT,
    logs        TEXT NOT NULL,
    stderr      TEXT NOT NULL,
    exit        BIGINT,
    duration_ms DOUBLE PRECISION NOT NULL,
    at          BIGINT NOT NULL,
    hook        TEXT
);
CREATE INDEX runs_event ON runs (org_id, event_id) WHERE event_id IS NOT NULL;
CREATE INDEX runs_org ON runs (org_id, id);

CREATE TABLE kv (
    org_id     TEXT NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    key        TEXT NOT NULL,
    value      TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (org_id, key)
);

CREATE TABLE sync_hooks (
    org_id        TEXT NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    description   TEXT NOT NULL,
    executor      TEXT NOT NULL,
    timeout_ms    BIGINT NOT NULL,
    cache_ttl_s   BIGINT,
    input_schema  TEXT,
    output_schema TEXT,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    PRIMARY KEY (org_id, name)
);

CREATE TABLE schedules (
    org_id        TEXT NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    description   TEXT NOT NULL,
    cron          TEXT NOT NULL,
    timezone      TEXT NOT NULL,
    event_type    TEXT NOT NULL,
    data          TEXT NOT NULL,
    enabled       BOOLEAN NOT NULL,
    misfire       TEXT NOT NULL,
    next_fire_at  BIGINT,
    last_fired_at BIGINT,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    PRIMARY KEY (org_id, name)
);
CREATE INDEX schedules_due ON schedules (next_fire_at) WHERE next_fire_at IS NOT NULL;

CREATE TABLE write_probe (id INTEGER PRIMARY KEY CHECK (id = 1), at BIGINT NOT NULL);
