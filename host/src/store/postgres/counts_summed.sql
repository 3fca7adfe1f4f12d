-- Migration 8: the counting triggers of migration 5 took an update's
-- moves by joining its old rows to its new ones, and PostgreSQL joins
-- transition tables without statistics: ~6 ms a claim or completion of a
-- few hundred rows, half the store's throughput (bench section 13). Each
-- update now takes its old rows out of the counts and puts its new ones
-- in, summed per count, a hash aggregate; rows that stayed in their state
-- sum to nothing and write nothing (a lease's heartbeat).

CREATE OR REPLACE FUNCTION sighost_count_deliveries() RETURNS trigger LANGUAGE plpgsql AS $$
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
                SELECT handler, tenant, state, -1 AS delta FROM old_rows
                UNION ALL
                SELECT handler, tenant, state, 1 FROM new_rows
            ) moved
            GROUP BY handler, tenant, state
            HAVING SUM(delta) <> 0
            ON CONFLICT (queue, grp, tenant, state, slot) DO UPDATE SET n = c.n + excluded.n;
    END IF;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION sighost_count_directives() RETURNS trigger LANGUAGE plpgsql AS $$
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
                SELECT name, tenant, state, -1 AS delta FROM old_rows
                UNION ALL
                SELECT name, tenant, state, 1 FROM new_rows
            ) moved
            GROUP BY name, tenant, state
            HAVING SUM(delta) <> 0
            ON CONFLICT (queue, grp, tenant, state, slot) DO UPDATE SET n = c.n + excluded.n;
    END IF;
    RETURN NULL;
END $$;
