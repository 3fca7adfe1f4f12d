-- Migration 3: the handlers each host has loaded (or failed to load), so
-- that an emit from any client targets the handlers of the running hosts
-- (host/src/registry.rs). A host replaces its own rows when its handlers
-- change and keeps them while it is stopped. `subscriptions` is a JSON
-- array as text, as on SQLite.

CREATE TABLE handler_registrations (
    host           TEXT NOT NULL,
    handler        TEXT NOT NULL,
    digest         TEXT,
    subscriptions  TEXT NOT NULL,
    package        TEXT,
    max_attempts   BIGINT NOT NULL,
    load_error     TEXT,
    registered_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (host, handler)
);
