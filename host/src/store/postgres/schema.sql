-- sighost schema, PostgreSQL dialect. The same tables as the SQLite store,
-- with PostgreSQL's types:
-- - Times are TIMESTAMPTZ: microsecond precision, like the SQLite store's
--   integer microseconds, and readable by an operator in psql.
-- - JSON documents are JSON, not JSONB: JSON keeps the text exactly as
--   written and accepts every document serde_json writes, where JSONB refuses
--   the escape \u0000 (a guest could then make a whole batch of completions
--   fail). Operators can still query them with -> and ->>.
-- - States are TEXT with a CHECK, as readable as SQLite's.

CREATE TABLE tenants (
    id          TEXT PRIMARY KEY,
    settings    JSON NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL
);

CREATE TABLE tenant_packages (
    tenant   TEXT NOT NULL,
    package  TEXT NOT NULL,
    PRIMARY KEY (tenant, package)
);

CREATE TABLE handler_versions (
    name           TEXT NOT NULL,
    digest         TEXT NOT NULL,
    first_seen_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (name, digest)
);

CREATE TABLE signals (
    seq             BIGSERIAL PRIMARY KEY,
    id              TEXT NOT NULL UNIQUE,
    tenant          TEXT NOT NULL,
    name            TEXT NOT NULL,
    payload         JSON NOT NULL,
    metadata        JSON NOT NULL,
    dedupe_key      TEXT,
    occurred_at     TIMESTAMPTZ NOT NULL,
    correlation_id  TEXT,
    causation_id    TEXT,
    actor_type      TEXT,
    actor_id        TEXT,
    subject_type    TEXT,
    subject_id      TEXT,
    source          TEXT,
    -- 0 for an outside signal; its cause's depth + 1 otherwise.
    depth           INTEGER NOT NULL,
    inserted_at     TIMESTAMPTZ NOT NULL
);
CREATE UNIQUE INDEX signals_dedupe ON signals (tenant, dedupe_key) WHERE dedupe_key IS NOT NULL;
CREATE INDEX signals_tenant_inserted ON signals (tenant, inserted_at);

CREATE TABLE deliveries (
    id              BIGSERIAL PRIMARY KEY,
    signal_id       TEXT NOT NULL,
    tenant          TEXT NOT NULL,
    handler         TEXT NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('available', 'running', 'retryable', 'completed', 'discarded', 'canceled')),
    attempt         INTEGER NOT NULL DEFAULT 0,
    max_attempts    INTEGER NOT NULL,
    scheduled_at    TIMESTAMPTZ NOT NULL,
    leased_until    TIMESTAMPTZ,
    worker          TEXT,
    last_error      TEXT,
    handler_digest  TEXT,
    -- The signal's causation depth, copied so completion needs no join.
    depth           INTEGER NOT NULL,
    inserted_at     TIMESTAMPTZ NOT NULL,
    finished_at     TIMESTAMPTZ
);
-- Partial indexes keep the claim and the rescue off the completed rows, so
-- their cost does not grow with the history.
CREATE INDEX deliveries_due ON deliveries (scheduled_at) WHERE state IN ('available', 'retryable');
CREATE INDEX deliveries_leased ON deliveries (leased_until) WHERE state = 'running';
CREATE INDEX deliveries_signal ON deliveries (signal_id);

CREATE TABLE attempts (
    delivery_id      BIGINT NOT NULL,
    attempt          INTEGER NOT NULL,
    worker           TEXT NOT NULL,
    handler_digest   TEXT NOT NULL,
    outcome          TEXT NOT NULL,
    error            TEXT,
    started_at       TIMESTAMPTZ NOT NULL,
    duration_us      BIGINT NOT NULL,
    fuel             BIGINT,
    directive_count  INTEGER NOT NULL,
    output           TEXT NOT NULL,
    finished_at      TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (delivery_id, attempt)
);

CREATE TABLE directives (
    seq              BIGSERIAL PRIMARY KEY,
    id               TEXT NOT NULL UNIQUE,
    tenant           TEXT NOT NULL,
    name             TEXT NOT NULL,
    payload          JSON NOT NULL,
    idempotency_key  TEXT NOT NULL,
    state            TEXT NOT NULL CHECK (state IN ('requested', 'running', 'succeeded', 'failed', 'canceled')),
    signal_id        TEXT NOT NULL,
    delivery_id      BIGINT NOT NULL,
    handler          TEXT NOT NULL,
    scheduled_at     TIMESTAMPTZ NOT NULL,
    attempt          INTEGER NOT NULL DEFAULT 0,
    leased_until     TIMESTAMPTZ,
    worker           TEXT,
    last_error       TEXT,
    result           JSON,
    depth            INTEGER NOT NULL,
    inserted_at      TIMESTAMPTZ NOT NULL,
    updated_at       TIMESTAMPTZ NOT NULL,
    UNIQUE (tenant, idempotency_key)
);
CREATE INDEX directives_due ON directives (scheduled_at) WHERE state = 'requested';
CREATE INDEX directives_leased ON directives (leased_until) WHERE state = 'running';
