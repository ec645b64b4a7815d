-- Enqueueing from SQL, inside the application's own transaction: a task
-- that exists exactly when the application's rows do (rollback: no task;
-- commit: the task, and workers woken by the NOTIFY delivered at commit).

-- The task types API nodes and workers run with, and the defaults a
-- submission takes from them; each node writes its own at start.
CREATE TABLE task_types (
    name          TEXT        PRIMARY KEY,
    queue         TEXT,
    priority      INTEGER,
    max_attempts  INTEGER     NOT NULL,
    timeout_ms    BIGINT      NOT NULL,
    -- Input fields the API seals with its key before storing: such a type
    -- is submitted through the API only.
    sealed_fields JSONB       NOT NULL DEFAULT '[]',
    updated_at    TIMESTAMPTZ NOT NULL
);

-- A UUIDv7 (the time of the call, then random bits), as weir makes ids.
CREATE FUNCTION weir_uuid7() RETURNS uuid LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    b bytea := uuid_send(gen_random_uuid());
    ms bytea := substring(int8send(floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3);
BEGIN
    b := overlay(b PLACING ms FROM 1 FOR 6);
    b := set_byte(b, 6, (get_byte(b, 6) & 15) | 112);
    RETURN encode(b, 'hex')::uuid;
END
$$;

-- Queues one task of `type` with `input`, under the API's rules for
-- `options` (queue, priority, max_attempts, run_at, idempotency_key,
-- concurrency_key, retry_backoff 'BASE:CAP', timeout, tenant); returns its
-- id. A refusal raises an exception naming the field (SQLSTATE 22023), so
-- the caller's transaction fails then and there. With an idempotency key
-- taken in the last 24 hours by the same request, returns that task.
CREATE FUNCTION weir_enqueue(type text, input jsonb, options jsonb DEFAULT '{}')
RETURNS uuid LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    t task_types%ROWTYPE;
    field text;
    id uuid := weir_uuid7();
    queue text;
    priority int;
    max_attempts int;
    run_at timestamptz := now();
    idem_key text;
    ckey text;
    tenant text;
    timeout_ms bigint;
    base_ms bigint;
    cap_ms bigint;
    parts text[];
    held uuid;
    held_print text;
    print text;
BEGIN
    IF type IS NULL OR NOT EXISTS (SELECT 1 FROM task_types WHERE name = type) THEN
        RAISE EXCEPTION 'weir: type: % is not a task type any API node or worker runs', coalesce(type, 'NULL')
            USING ERRCODE = '22023';
    END IF;
    SELECT * INTO t FROM task_types WHERE name = type;
    IF jsonb_array_length(t.sealed_fields) > 0 THEN
        RAISE EXCEPTION 'weir: type: % has sealed input fields (%): submit it through the API, which holds the key',
            type, t.sealed_fields USING ERRCODE = '22023';
    END IF;
    IF input IS NULL THEN
        RAISE EXCEPTION 'weir: input: required' USING ERRCODE = '22023';
    END IF;
    IF octet_length(input::text) > 1048576 THEN
        RAISE EXCEPTION 'weir: input: % bytes, at most 1048576', octet_length(input::text)
            USING ERRCODE = '22023';
    END IF;
    options := coalesce(options, '{}');
    IF jsonb_typeof(options) <> 'object' THEN
        RAISE EXCEPTION 'weir: options: an object' USING ERRCODE = '22023';
    END IF;
    FOR field IN SELECT jsonb_object_keys(options) LOOP
        IF field NOT IN ('queue', 'priority', 'max_attempts', 'run_at', 'idempotency_key',
                         'concurrency_key', 'retry_backoff', 'timeout', 'tenant') THEN
            RAISE EXCEPTION 'weir: %: not an option (queue, priority, max_attempts, run_at, idempotency_key, concurrency_key, retry_backoff, timeout, tenant)',
                field USING ERRCODE = '22023';
        END IF;
        IF jsonb_typeof(options -> field) = 'null' THEN
            CONTINUE;
        END IF;
        BEGIN
            CASE field
            WHEN 'queue' THEN
                queue := options ->> field;
                IF queue !~ '^[A-Za-z0-9_.:-]{1,64}$' THEN
                    RAISE EXCEPTION 'a queue name is 1 to 64 of A-Z a-z 0-9 _ . : -';
                END IF;
            WHEN 'priority' THEN
                priority := (options ->> field)::int;
            WHEN 'max_attempts' THEN
                max_attempts := (options ->> field)::int;
                IF max_attempts NOT BETWEEN 1 AND 100 THEN
                    RAISE EXCEPTION 'max_attempts must be from 1 to 100';
                END IF;
            WHEN 'run_at' THEN
                run_at := (options ->> field)::timestamptz;
            WHEN 'idempotency_key' THEN
                idem_key := options ->> field;
                IF octet_length(idem_key) NOT BETWEEN 1 AND 255 THEN
                    RAISE EXCEPTION 'an idempotency key is 1 to 255 bytes';
                END IF;
            WHEN 'concurrency_key' THEN
                ckey := options ->> field;
                IF octet_length(ckey) NOT BETWEEN 1 AND 255 THEN
                    RAISE EXCEPTION 'a concurrency key is 1 to 255 bytes';
                END IF;
            WHEN 'tenant' THEN
                tenant := options ->> field;
                IF octet_length(tenant) NOT BETWEEN 1 AND 255 THEN
                    RAISE EXCEPTION 'a tenant is 1 to 255 bytes';
                END IF;
            WHEN 'timeout' THEN
                timeout_ms := (extract(epoch FROM (options ->> field)::interval) * 1000)::bigint;
                IF timeout_ms <= 0 OR timeout_ms > t.timeout_ms THEN
                    RAISE EXCEPTION 'timeout must be above 0 and at most the type''s % ms', t.timeout_ms;
                END IF;
            WHEN 'retry_backoff' THEN
                parts := string_to_array(options ->> field, ':');
                IF cardinality(parts) <> 2 THEN
                    RAISE EXCEPTION 'BASE:CAP, like 100ms:30s';
                END IF;
                base_ms := (extract(epoch FROM parts[1]::interval) * 1000)::bigint;
                cap_ms := (extract(epoch FROM parts[2]::interval) * 1000)::bigint;
                IF base_ms < 1 OR cap_ms < base_ms OR cap_ms > 86400000 THEN
                    RAISE EXCEPTION 'the base must be at least 1ms, the cap at least the base and at most 24h';
                END IF;
            END CASE;
        EXCEPTION WHEN raise_exception OR data_exception OR invalid_datetime_format
                       OR datetime_field_overflow THEN
            RAISE EXCEPTION 'weir: %: %', field, SQLERRM USING ERRCODE = '22023';
        END;
    END LOOP;

    IF idem_key IS NOT NULL THEN
        idem_key := CASE WHEN tenant IS NULL THEN idem_key ELSE tenant || '/' || idem_key END;
        -- What makes two calls the same request (the API's own requests
        -- print differently: a key is never shared between the two).
        print := 'sql:' || encode(sha256(convert_to(
            jsonb_build_array(type, input, options - 'idempotency_key')::text, 'UTF8')), 'hex');
        -- A key past its window, or whose task is gone, is free again.
        DELETE FROM idempotency_keys k WHERE k.key = idem_key
            AND (k.created_at < now() - interval '24 hours'
                 OR (NOT EXISTS (SELECT 1 FROM tasks WHERE tasks.id = k.task_id)
                     AND NOT EXISTS (SELECT 1 FROM tasks_finished f WHERE f.id = k.task_id)));
        INSERT INTO idempotency_keys (key, task_id, created_at, fingerprint)
            VALUES (idem_key, id, now(), print) ON CONFLICT DO NOTHING;
        IF NOT FOUND THEN
            SELECT k.task_id, k.fingerprint INTO held, held_print
                FROM idempotency_keys k WHERE k.key = idem_key;
            IF held_print IS DISTINCT FROM print THEN
                RAISE EXCEPTION 'weir: idempotency_key: % was taken by another request', idem_key
                    USING ERRCODE = '22023';
            END IF;
            RETURN held;
        END IF;
    END IF;

    INSERT INTO tasks (id, kind, input, state, max_attempts, priority, created_at, run_at,
                       queue, concurrency_key, backoff_base_ms, backoff_cap_ms, timeout_ms, tenant)
    VALUES (id, type, input, 'queued', coalesce(max_attempts, t.max_attempts),
            coalesce(priority, t.priority, 0), now(), run_at,
            coalesce(queue, t.queue, 'default'), ckey, base_ms, cap_ms, timeout_ms, tenant);
    -- Delivered at commit, and only then: workers wake to a task they can see.
    PERFORM pg_notify('weir_task_inserted', '');
    RETURN id;
END
$$;

-- Many tasks of one type and options, one per element of `inputs` (a JSON
-- array); their ids in order. An idempotency key is not allowed here (one
-- key names one task).
CREATE FUNCTION weir_enqueue_many(type text, inputs jsonb, options jsonb DEFAULT '{}')
RETURNS uuid[] LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    ids uuid[] := '{}';
    input jsonb;
BEGIN
    IF inputs IS NULL OR jsonb_typeof(inputs) <> 'array' THEN
        RAISE EXCEPTION 'weir: inputs: a JSON array of inputs' USING ERRCODE = '22023';
    END IF;
    IF jsonb_array_length(inputs) > 10000 THEN
        RAISE EXCEPTION 'weir: inputs: % inputs, at most 10000 per call', jsonb_array_length(inputs)
            USING ERRCODE = '22023';
    END IF;
    IF options ? 'idempotency_key' THEN
        RAISE EXCEPTION 'weir: idempotency_key: one key names one task: call weir_enqueue for each'
            USING ERRCODE = '22023';
    END IF;
    FOR input IN SELECT jsonb_array_elements(inputs) LOOP
        ids := ids || weir_enqueue(type, input, options);
    END LOOP;
    RETURN ids;
END
$$;

-- Called by the application's role, which roles.sql grants (or the owner's
-- GRANT EXECUTE … TO the application's own role), never by PUBLIC.
REVOKE ALL ON FUNCTION weir_enqueue(text, jsonb, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION weir_enqueue_many(text, jsonb, jsonb) FROM PUBLIC;
