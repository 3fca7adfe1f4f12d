-- sighost schema, SQLite dialect. Times are microseconds since the Unix epoch,
-- UTC. JSON documents are stored as text.

CREATE TABLE tenants (
    id          TEXT PRIMARY KEY,
    settings    TEXT NOT NULL DEFAULT '{}',
    created_at  INTEGER NOT NULL
);

CREATE TABLE tenant_packages (
    tenant   TEXT NOT NULL,
    package  TEXT NOT NULL,
    PRIMARY KEY (tenant, package)
) WITHOUT ROWID;

CREATE TABLE handler_versions (
    name           TEXT NOT NULL,
    digest         TEXT NOT NULL,
    first_seen_at  INTEGER NOT NULL,
    PRIMARY KEY (name, digest)
) WITHOUT ROWID;

CREATE TABLE signals (
    seq             INTEGER PRIMARY KEY,
    id              TEXT NOT NULL UNIQUE,
    tenant          TEXT NOT NULL,
    name            TEXT NOT NULL,
    payload         TEXT NOT NULL,
    metadata        TEXT NOT NULL,
    dedupe_key      TEXT,
    occurred_at     INTEGER NOT NULL,
    correlation_id  TEXT,
    causation_id    TEXT,
    actor_type      TEXT,
    actor_id        TEXT,
    subject_type    TEXT,
    subject_id      TEXT,
    source          TEXT,
    -- 0 for an outside signal; its cause's depth + 1 otherwise.
    depth           INTEGER NOT NULL,
    inserted_at     INTEGER NOT NULL
);
CREATE UNIQUE INDEX signals_dedupe ON signals (tenant, dedupe_key) WHERE dedupe_key IS NOT NULL;
CREATE INDEX signals_tenant_inserted ON signals (tenant, inserted_at);

CREATE TABLE deliveries (
    id              INTEGER PRIMARY KEY,
    signal_id       TEXT NOT NULL,
    tenant          TEXT NOT NULL,
    handler         TEXT NOT NULL,
    state           TEXT NOT NULL,
    attempt         INTEGER NOT NULL DEFAULT 0,
    max_attempts    INTEGER NOT NULL,
    scheduled_at    INTEGER NOT NULL,
    leased_until    INTEGER,
    worker          TEXT,
    last_error      TEXT,
    handler_digest  TEXT,
    -- The signal's causation depth, copied so completion needs no join.
    depth           INTEGER NOT NULL,
    inserted_at     INTEGER NOT NULL,
    finished_at     INTEGER
);
-- Partial indexes keep the claim and the rescue off the completed rows, so
-- their cost does not grow with the history.
CREATE INDEX deliveries_due ON deliveries (scheduled_at) WHERE state IN ('available', 'retryable');
CREATE INDEX deliveries_leased ON deliveries (leased_until) WHERE state = 'running';
CREATE INDEX deliveries_signal ON deliveries (signal_id);

CREATE TABLE attempts (
    delivery_id      INTEGER NOT NULL,
    attempt          INTEGER NOT NULL,
    worker           TEXT NOT NULL,
    handler_digest   TEXT NOT NULL,
    outcome          TEXT NOT NULL,
    error            TEXT,
    started_at       INTEGER NOT NULL,
    duration_us      INTEGER NOT NULL,
    fuel             INTEGER,
    directive_count  INTEGER NOT NULL,
    output           TEXT NOT NULL,
    finished_at      INTEGER NOT NULL,
    PRIMARY KEY (delivery_id, attempt)
) WITHOUT ROWID;

CREATE TABLE directives (
    seq              INTEGER PRIMARY KEY,
    id               TEXT NOT NULL UNIQUE,
    tenant           TEXT NOT NULL,
    name             TEXT NOT NULL,
    payload          TEXT NOT NULL,
    idempotency_key  TEXT NOT NULL,
    state            TEXT NOT NULL,
    signal_id        TEXT NOT NULL,
    delivery_id      INTEGER NOT NULL,
    handler          TEXT NOT NULL,
    scheduled_at     INTEGER NOT NULL,
    attempt          INTEGER NOT NULL DEFAULT 0,
    leased_until     INTEGER,
    worker           TEXT,
    last_error       TEXT,
    result           TEXT,
    depth            INTEGER NOT NULL,
    inserted_at      INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    UNIQUE (tenant, idempotency_key)
);
CREATE INDEX directives_due ON directives (scheduled_at) WHERE state = 'requested';
CREATE INDEX directives_leased ON directives (leased_until) WHERE state = 'running';
