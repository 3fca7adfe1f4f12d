-- Migration 5: queue depth kept as the data changes (store/mod.rs,
-- `QueueStats`), so that `status`, `/metrics` and the admin API read a row
-- per handler, tenant and state however long the history is. Statement
-- triggers keep it, once per statement whatever its rows, so every verb
-- counts. Each connection adds to rows of its own (`slot`: its backend
-- pid), so the completions of many hosts never wait on one counter row;
-- reads sum the slots, and retention folds the slots of connections gone
-- into slot 0.

-- No writer may slip between the seeding below and the triggers: hosts of
-- an older version may be running while this one migrates.
LOCK TABLE deliveries, directives IN SHARE ROW EXCLUSIVE MODE;

CREATE TABLE queue_counts (
    queue   TEXT NOT NULL,
    -- A delivery's handler; a directive's name.
    grp     TEXT NOT NULL,
    tenant  TEXT NOT NULL,
    state   TEXT NOT NULL,
    slot    INTEGER NOT NULL,
    n       BIGINT NOT NULL,
    PRIMARY KEY (queue, grp, tenant, state, slot)
);

INSERT INTO queue_counts (queue, grp, tenant, state, slot, n)
    SELECT 'deliveries', handler, tenant, state, 0, COUNT(*) FROM deliveries
    GROUP BY handler, tenant, state;
INSERT INTO queue_counts (queue, grp, tenant, state, slot, n)
    SELECT 'directives', name, tenant, state, 0, COUNT(*) FROM directives
    GROUP BY name, tenant, state;

CREATE FUNCTION sighost_count_deliveries() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO queue_counts AS c (queue, grp, tenant, state, slot, n)
            SELECT 'deliveries', handler, tenant, state, pg_backend_pid(), COUNT(*)
            FROM new_rows GROUP BY handler, tenant, state
            ON CONFLICT (queue, grp, tenant, state, slot) DO UPDATE SET n = c.n + excluded.n;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO queue_counts AS c (queue, grp, tenant, state, slot, n)
            SELECT 'deliveries', handler, tenant, state, pg_backend_pid(), -COUNT(*)
            FROM old_rows GROUP BY handler, tenant, state
            ON CONFLICT (queue, grp, tenant, state, slot) DO UPDATE SET n = c.n + excluded.n;
    ELSE
        INSERT INTO queue_counts AS c (queue, grp, tenant, state, slot, n)
            SELECT 'deliveries', handler, tenant, state, pg_backend_pid(), SUM(delta)
            FROM (
                SELECT o.handler, o.tenant, o.state, -1 AS delta
                FROM old_rows o JOIN new_rows w ON w.id = o.id WHERE o.state <> w.state
                UNION ALL
                SELECT w.handler, w.tenant, w.state, 1
                FROM old_rows o JOIN new_rows w ON w.id = o.id WHERE o.state <> w.state
            ) moved
            GROUP BY handler, tenant, state
            ON CONFLICT (queue, grp, tenant, state, slot) DO UPDATE SET n = c.n + excluded.n;
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION sighost_count_directives() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO queue_counts AS c (queue, grp, tenant, state, slot, n)
            SELECT 'directives', name, tenant, state, pg_backend_pid(), COUNT(*)
            FROM new_rows GROUP BY name, tenant, state
            ON CONFLICT (queue, grp, tenant, state, slot) DO UPDATE SET n = c.n + excluded.n;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO queue_counts AS c (queue, grp, tenant, state, slot, n)
            SELECT 'directives', name, tenant, state, pg_backend_pid(), -COUNT(*)
            FROM old_rows GROUP BY name, tenant, state
            ON CONFLICT (queue, grp, tenant, state, slot) DO UPDATE SET n = c.n + excluded.n;
    ELSE
        INSERT INTO queue_counts AS c (queue, grp, tenant, state, slot, n)
            SELECT 'directives', name, tenant, state, pg_backend_pid(), SUM(delta)
            FROM (
                SELECT o.name, o.tenant, o.state, -1 AS delta
                FROM old_rows o JOIN new_rows w ON w.seq = o.seq WHERE o.state <> w.state
                UNION ALL
                SELECT w.name, w.tenant, w.state, 1
                FROM old_rows o JOIN new_rows w ON w.seq = o.seq WHERE o.state <> w.state
            ) moved
            GROUP BY name, tenant, state
            ON CONFLICT (queue, grp, tenant, state, slot) DO UPDATE SET n = c.n + excluded.n;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER deliveries_counted_in AFTER INSERT ON deliveries
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION sighost_count_deliveries();
CREATE TRIGGER deliveries_counted_moved AFTER UPDATE ON deliveries
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION sighost_count_deliveries();
CREATE TRIGGER deliveries_counted_out AFTER DELETE ON deliveries
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION sighost_count_deliveries();
CREATE TRIGGER directives_counted_in AFTER INSERT ON directives
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION sighost_count_directives();
CREATE TRIGGER directives_counted_moved AFTER UPDATE ON directives
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION sighost_count_directives();
CREATE TRIGGER directives_counted_out AFTER DELETE ON directives
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION sighost_count_directives();

-- The newest failed attempts, found without walking the successful ones.
CREATE INDEX attempts_failed ON attempts (delivery_id) WHERE error IS NOT NULL;
