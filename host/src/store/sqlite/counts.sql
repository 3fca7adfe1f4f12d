-- Migration 5: queue depth kept as the data changes (store/mod.rs,
-- `QueueStats`), so that `status`, `/metrics` and the admin API read a row
-- per handler, tenant and state however long the history is. Triggers keep
-- it, so every statement that adds, moves or deletes a row counts, whatever
-- its verb. SQLite has one writer: one row per count (`slot` 0).

CREATE TABLE queue_counts (
    queue   TEXT NOT NULL,
    -- A delivery's handler; a directive's name.
    grp     TEXT NOT NULL,
    tenant  TEXT NOT NULL,
    state   TEXT NOT NULL,
    slot    INTEGER NOT NULL,
    n       INTEGER NOT NULL,
    PRIMARY KEY (queue, grp, tenant, state, slot)
) WITHOUT ROWID;

INSERT INTO queue_counts (queue, grp, tenant, state, slot, n)
    SELECT 'deliveries', handler, tenant, state, 0, COUNT(*) FROM deliveries
    GROUP BY handler, tenant, state;
INSERT INTO queue_counts (queue, grp, tenant, state, slot, n)
    SELECT 'directives', name, tenant, state, 0, COUNT(*) FROM directives
    GROUP BY name, tenant, state;

CREATE TRIGGER deliveries_counted_in AFTER INSERT ON deliveries BEGIN
    INSERT INTO queue_counts (queue, grp, tenant, state, slot, n)
        VALUES ('deliveries', NEW.handler, NEW.tenant, NEW.state, 0, 1)
        ON CONFLICT (queue, grp, tenant, state, slot) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER deliveries_counted_moved AFTER UPDATE OF state ON deliveries
WHEN OLD.state IS NOT NEW.state BEGIN
    UPDATE queue_counts SET n = n - 1 WHERE queue = 'deliveries' AND grp = OLD.handler
        AND tenant = OLD.tenant AND state = OLD.state AND slot = 0;
    INSERT INTO queue_counts (queue, grp, tenant, state, slot, n)
        VALUES ('deliveries', NEW.handler, NEW.tenant, NEW.state, 0, 1)
        ON CONFLICT (queue, grp, tenant, state, slot) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER deliveries_counted_out AFTER DELETE ON deliveries BEGIN
    UPDATE queue_counts SET n = n - 1 WHERE queue = 'deliveries' AND grp = OLD.handler
        AND tenant = OLD.tenant AND state = OLD.state AND slot = 0;
END;

CREATE TRIGGER directives_counted_in AFTER INSERT ON directives BEGIN
    INSERT INTO queue_counts (queue, grp, tenant, state, slot, n)
        VALUES ('directives', NEW.name, NEW.tenant, NEW.state, 0, 1)
        ON CONFLICT (queue, grp, tenant, state, slot) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER directives_counted_moved AFTER UPDATE OF state ON directives
WHEN OLD.state IS NOT NEW.state BEGIN
    UPDATE queue_counts SET n = n - 1 WHERE queue = 'directives' AND grp = OLD.name
        AND tenant = OLD.tenant AND state = OLD.state AND slot = 0;
    INSERT INTO queue_counts (queue, grp, tenant, state, slot, n)
        VALUES ('directives', NEW.name, NEW.tenant, NEW.state, 0, 1)
        ON CONFLICT (queue, grp, tenant, state, slot) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER directives_counted_out AFTER DELETE ON directives BEGIN
    UPDATE queue_counts SET n = n - 1 WHERE queue = 'directives' AND grp = OLD.name
        AND tenant = OLD.tenant AND state = OLD.state AND slot = 0;
END;

-- The newest failed attempts, found without walking the successful ones.
CREATE INDEX attempts_failed ON attempts (delivery_id) WHERE error IS NOT NULL;
