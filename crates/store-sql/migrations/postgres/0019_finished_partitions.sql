-- Finished tasks kept in day partitions and pruned by dropping them: a
-- day's prune is a DROP TABLE, not millions of row DELETEs and the vacuum
-- debt they leave.
--
-- tasks_finished is partitioned by state (each state has its own retention),
-- then by range of id: a task id is a UUIDv7, so its first 48 bits are the
-- millisecond it was created and a day of ids is one contiguous range. A
-- lookup by id therefore reads one partition per state, never all of them.
-- Each state also has a DEFAULT partition for ids no day covers: tasks made
-- before this migration, tasks finishing after their day was dropped, the
-- few rows a drop carries over (below). The default is pruned row by row.
--
-- Partitions are made ahead and dropped by the two functions at the end,
-- which the maintenance leader calls; they run with the schema owner's
-- rights (SECURITY DEFINER) so the least-privilege role workers connect as
-- can call them without DDL rights of its own.

ALTER TABLE tasks_finished RENAME TO tasks_finished_unpartitioned;
ALTER INDEX tasks_finished_pkey RENAME TO tasks_finished_unpartitioned_pkey;

CREATE TABLE tasks_finished (
    LIKE tasks_finished_unpartitioned INCLUDING DEFAULTS INCLUDING CONSTRAINTS,
    PRIMARY KEY (id, state)
) PARTITION BY LIST (state);

CREATE TABLE tasks_finished_succeeded PARTITION OF tasks_finished
    FOR VALUES IN ('succeeded') PARTITION BY RANGE (id);
CREATE TABLE tasks_finished_succeeded_default PARTITION OF tasks_finished_succeeded DEFAULT;
CREATE TABLE tasks_finished_dead PARTITION OF tasks_finished
    FOR VALUES IN ('dead') PARTITION BY RANGE (id);
CREATE TABLE tasks_finished_dead_default PARTITION OF tasks_finished_dead DEFAULT;
CREATE TABLE tasks_finished_cancelled PARTITION OF tasks_finished
    FOR VALUES IN ('cancelled') PARTITION BY RANGE (id);
CREATE TABLE tasks_finished_cancelled_default PARTITION OF tasks_finished_cancelled DEFAULT;

INSERT INTO tasks_finished SELECT * FROM tasks_finished_unpartitioned;
DROP TABLE tasks_finished_unpartitioned;

-- The task browser's filters, each walked newest first (state is the
-- partition key, and the primary key orders each state by id).
CREATE INDEX tasks_finished_kind_id ON tasks_finished (kind, id);
CREATE INDEX tasks_finished_queue_id ON tasks_finished (queue, id);
CREATE INDEX tasks_finished_tenant_id ON tasks_finished (tenant, id) WHERE tenant IS NOT NULL;
CREATE INDEX tasks_finished_completed_id ON tasks_finished (completed_at, id);

-- The smallest UUIDv7 of the millisecond `at`: the bound of a day's ids.
CREATE FUNCTION weir_uuid7_floor(at timestamptz) RETURNS uuid
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT (lpad(to_hex(floor(extract(epoch FROM at) * 1000)::bigint), 12, '0')
            || '00000000000000000000')::uuid
$$;

-- The day partitions of one state, oldest first.
CREATE FUNCTION weir_finished_days(state text) RETURNS TABLE (name text, day date)
LANGUAGE sql STABLE AS $$
    SELECT c.relname::text, to_date(right(c.relname, 8), 'YYYYMMDD')
    FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = to_regclass('tasks_finished_' || state)
      AND c.relname ~ ('^tasks_finished_' || state || '_p[0-9]{8}$')
    ORDER BY 2
$$;

-- Makes the state's missing day partitions from `first` through `last`
-- (UTC days). A day whose ids already sit in the default partition is left
-- to it (PostgreSQL would refuse the partition). Returns how many it made.
CREATE FUNCTION weir_finished_days_make(state text, first date, last date)
RETURNS int LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    d date := first;
    part text;
    lo uuid;
    hi uuid;
    made int := 0;
BEGIN
    IF state NOT IN ('succeeded', 'dead', 'cancelled') THEN
        RAISE EXCEPTION 'no such finished state: %', state;
    END IF;
    -- One maker at a time (a leader hand-over, `weir migrate` beside a worker).
    PERFORM pg_advisory_xact_lock(hashtext('weir_finished_days'));
    WHILE d <= last LOOP
        part := 'tasks_finished_' || state || '_p' || to_char(d, 'YYYYMMDD');
        lo := weir_uuid7_floor(d::timestamp AT TIME ZONE 'UTC');
        hi := weir_uuid7_floor((d + 1)::timestamp AT TIME ZONE 'UTC');
        IF to_regclass(part) IS NULL AND NOT EXISTS (
            SELECT 1 FROM tasks_finished f
            WHERE f.state = weir_finished_days_make.state AND f.id >= lo AND f.id < hi
        ) THEN
            EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)',
                           part, 'tasks_finished_' || state, lo, hi);
            made := made + 1;
        END IF;
        d := d + 1;
    END LOOP;
    RETURN made;
END
$$;

-- Drops the state's oldest day partition whose day ended before `before`
-- (the state's retention cut-off), if at most `carry_max` of its rows must
-- stay: those that finished after `before` (a task made that day and run
-- late) and a stored workflow's steps (freed with their workflow). They move
-- to the default partition first. The detach, the move and the drop hold
-- the state's table for milliseconds; a lock not had within a second leaves
-- the day for the next pass. Returns the rows dropped, or -1 when no day
-- was dropped.
CREATE FUNCTION weir_finished_day_drop(state text, before timestamptz, carry_max int)
RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    part text;
    d date;
    kept uuid[];
    total bigint;
    carried bigint;
BEGIN
    IF state NOT IN ('succeeded', 'dead', 'cancelled') THEN
        RAISE EXCEPTION 'no such finished state: %', state;
    END IF;
    FOR part, d IN SELECT f.name, f.day FROM weir_finished_days(state) f LOOP
        EXIT WHEN (d + 1)::timestamp AT TIME ZONE 'UTC' > before;
        EXECUTE format('SELECT array((SELECT id FROM %I WHERE completed_at >= $1 LIMIT $2 + 1)
                                     UNION
                                     (SELECT p.id FROM %I p JOIN workflow_steps s ON s.task_id = p.id
                                      LIMIT $2 + 1))', part, part)
            INTO kept USING before, carry_max;
        CONTINUE WHEN cardinality(kept) > carry_max;
        EXECUTE format('SELECT count(*) FROM %I', part) INTO total;
        BEGIN
            PERFORM set_config('lock_timeout', '1s', true);
            EXECUTE format('ALTER TABLE %I DETACH PARTITION %I', 'tasks_finished_' || state, part);
            -- Rows that arrived since `kept` was read finished after `before`.
            EXECUTE format('INSERT INTO tasks_finished SELECT * FROM %I
                            WHERE id = ANY($1) OR completed_at >= $2', part)
                USING kept, before;
            GET DIAGNOSTICS carried = ROW_COUNT;
            EXECUTE format('DROP TABLE %I', part);
            PERFORM set_config('lock_timeout', '0', true);
        EXCEPTION WHEN lock_not_available THEN
            RETURN -1;
        END;
        RETURN greatest(total - carried, 0);
    END LOOP;
    RETURN -1;
END
$$;

-- Only weir's own roles may make and drop partitions (roles.sql grants the
-- app role; the owner has them by owning them).
REVOKE ALL ON FUNCTION weir_finished_days_make(text, date, date) FROM PUBLIC;
REVOKE ALL ON FUNCTION weir_finished_day_drop(text, timestamptz, int) FROM PUBLIC;
