-- Migration 4: retention (host/src/retention.rs). The indexes a prune walks
-- finished work by (in order of when it finished), and finds a signal's
-- directives by; the keys of pruned directives, kept so that a directive
-- requested again after its first was pruned is still a duplicate.

CREATE INDEX deliveries_finished ON deliveries (finished_at)
    WHERE state IN ('completed', 'discarded', 'canceled');
CREATE INDEX directives_finished ON directives (updated_at)
    WHERE state IN ('succeeded', 'failed', 'canceled');
CREATE INDEX directives_signal ON directives (signal_id);

CREATE TABLE pruned_directive_keys (
    seq              INTEGER PRIMARY KEY,
    tenant           TEXT NOT NULL,
    idempotency_key  TEXT NOT NULL,
    name             TEXT NOT NULL,
    -- rules::payload_digest of the payload.
    payload_digest   TEXT NOT NULL,
    pruned_at        INTEGER NOT NULL,
    UNIQUE (tenant, idempotency_key)
);
CREATE INDEX pruned_directive_keys_pruned ON pruned_directive_keys (pruned_at);
