-- Migration 2: fair share between tenants (host/src/fair.rs). Weights and
-- limits an operator sets (NULL: no limit); each queue's schedule (its
-- clock, and every tenant's virtual time and cost estimate), written by
-- claims, which lock the clock's row so that the claims of every host
-- process take turns; the indexes a claim finds each tenant's due work by.

ALTER TABLE tenants ADD COLUMN weight INTEGER NOT NULL DEFAULT 1 CHECK (weight >= 1);
ALTER TABLE tenants ADD COLUMN max_running INTEGER;
ALTER TABLE tenants ADD COLUMN max_pending BIGINT;
ALTER TABLE tenants ADD COLUMN max_emit_per_s INTEGER;

CREATE TABLE fair_clocks (
    queue  TEXT PRIMARY KEY,
    vtime  BIGINT NOT NULL
);
INSERT INTO fair_clocks (queue, vtime) VALUES ('deliveries', 0), ('directives', 0);

CREATE TABLE fair_shares (
    queue    TEXT NOT NULL,
    tenant   TEXT NOT NULL,
    vtime    BIGINT NOT NULL,
    cost_ns  BIGINT NOT NULL,
    PRIMARY KEY (queue, tenant)
);

CREATE INDEX deliveries_due_by_tenant ON deliveries (tenant, scheduled_at)
    WHERE state IN ('available', 'retryable');
CREATE INDEX directives_due_by_tenant ON directives (tenant, scheduled_at)
    WHERE state = 'requested';
