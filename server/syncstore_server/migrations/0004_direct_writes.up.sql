-- Direct writes: rows changed in PostgreSQL by plain SQL (not by the sync server's
-- merge) reach clients too. Triggers on every synced table:
--
--   direct_write_stamp (BEFORE, per row) checks the values against the rules of
--     syncstore.schema, stamps the written cells with a clock of the "server SQL"
--     site and keeps the per-column clocks (_hlc/_site/_clocks) right; a DELETE
--     becomes a tombstone (_deleted = true), as everywhere in syncstore;
--   direct_write_capture (AFTER, per row) queues (tenant, table, row, columns, and
--     the old values of indexed columns it changed, which shape routing needs) in
--     syncstore.direct_writes and wakes the servers (NOTIFY syncstore_direct_writes);
--   direct_write_truncate refuses TRUNCATE (clients could never learn of it).
--
-- A server then publishes the queue into the change log under the tenant's log
-- lock, with the values read back by its own readers (syncstore_server.direct_writes).
-- The server's merge marks its own transactions with the transaction-local setting
-- syncstore.writer = 'server', and the triggers leave those alone (WHEN clause).

-- The "server SQL" site: the fixed site id that stamps direct writes.
CREATE FUNCTION syncstore.sql_site() RETURNS bytea
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT '\x73796e6373746f72652d73716c000000'::bytea $$;

-- Direct writes waiting to be published into the change log; xid groups the rows
-- of one direct transaction, which reach clients as one server transaction.
CREATE TABLE syncstore.direct_writes (
    id bigserial PRIMARY KEY,
    tenant text NOT NULL,
    xid xid8 NOT NULL DEFAULT pg_current_xact_id(),
    tbl text NOT NULL,
    row_id text NOT NULL,
    cols text[] NOT NULL,
    before jsonb,  -- old values of the indexed columns it changed; NULL: an insert
    created_at timestamptz NOT NULL DEFAULT now()
);

-- The column rules of syncstore.schema that a direct write is checked against
-- (the server checks client writes in Python with the same rules).
CREATE TABLE syncstore.direct_write_rules (
    tbl text NOT NULL,
    col text NOT NULL,
    kind text NOT NULL,
    required boolean NOT NULL,
    choices text[],
    minimum double precision,
    maximum double precision,
    shape text,
    indexed boolean NOT NULL,  -- shapes may filter on it (routing needs its old value)
    PRIMARY KEY (tbl, col)
);

-- A big-endian unsigned integer of len bytes at pos (0-based) in b.
CREATE FUNCTION syncstore._mp_uint(b bytea, pos integer, len integer) RETURNS bigint
LANGUAGE plpgsql IMMUTABLE STRICT
AS $$
DECLARE
    v bigint := 0;
BEGIN
    FOR i IN 0 .. len - 1 LOOP
        v := (v << 8) | get_byte(b, pos + i);
    END LOOP;
    RETURN v;
END
$$;

-- The _clocks map, MessagePack {column: [hlc, site]} (syncstore_server.clocks), as rows.
CREATE FUNCTION syncstore._clocks_decode(blob bytea) RETURNS TABLE (col text, hlc bigint, site bytea)
LANGUAGE plpgsql IMMUTABLE
AS $$
DECLARE
    pos integer := 0;
    n integer;
    h integer;
    len integer;
BEGIN
    IF blob IS NULL OR length(blob) = 0 THEN
        RETURN;
    END IF;
    h := get_byte(blob, 0);
    IF h BETWEEN 128 AND 143 THEN n := h - 128; pos := 1;                          -- fixmap
    ELSIF h = 222 THEN n := syncstore._mp_uint(blob, 1, 2); pos := 3;             -- map 16
    ELSIF h = 223 THEN n := syncstore._mp_uint(blob, 1, 4); pos := 5;             -- map 32
    ELSE RAISE EXCEPTION 'syncstore: _clocks is not a MessagePack map';
    END IF;
    FOR k IN 1 .. n LOOP
        h := get_byte(blob, pos);                                                 -- the column name
        IF h BETWEEN 160 AND 191 THEN len := h - 160; pos := pos + 1;
        ELSIF h = 217 THEN len := get_byte(blob, pos + 1); pos := pos + 2;
        ELSIF h = 218 THEN len := syncstore._mp_uint(blob, pos + 1, 2); pos := pos + 3;
        ELSE RAISE EXCEPTION 'syncstore: a _clocks key is not a string';
        END IF;
        col := convert_from(substring(blob FROM pos + 1 FOR len), 'UTF8');
        pos := pos + len;
        IF get_byte(blob, pos) <> 146 THEN                                        -- fixarray of 2
            RAISE EXCEPTION 'syncstore: a _clocks value is not [hlc, site]';
        END IF;
        pos := pos + 1;
        h := get_byte(blob, pos);                                                 -- the clock
        IF h <= 127 THEN hlc := h; pos := pos + 1;
        ELSIF h BETWEEN 204 AND 207 THEN                                          -- uint 8/16/32/64
            len := 1 << (h - 204);
            hlc := syncstore._mp_uint(blob, pos + 1, len); pos := pos + 1 + len;
        ELSIF h BETWEEN 208 AND 211 THEN                                          -- int 8/16/32/64 (never negative here)
            len := 1 << (h - 208);
            hlc := syncstore._mp_uint(blob, pos + 1, len); pos := pos + 1 + len;
        ELSE RAISE EXCEPTION 'syncstore: a _clocks stamp is not an integer';
        END IF;
        h := get_byte(blob, pos);                                                 -- the site
        IF h = 196 THEN len := get_byte(blob, pos + 1); pos := pos + 2;
        ELSIF h = 197 THEN len := syncstore._mp_uint(blob, pos + 1, 2); pos := pos + 3;
        ELSE RAISE EXCEPTION 'syncstore: a _clocks site is not bytes';
        END IF;
        site := substring(blob FROM pos + 1 FOR len);
        pos := pos + len;
        RETURN NEXT;
    END LOOP;
END
$$;

-- The _clocks map from parallel arrays (NULL when empty), as msgspec encodes it.
CREATE FUNCTION syncstore._clocks_encode(cols text[], hlcs bigint[], sites bytea[]) RETURNS bytea
LANGUAGE plpgsql IMMUTABLE
AS $$
DECLARE
    n integer := coalesce(array_length(cols, 1), 0);
    out bytea;
    key bytea;
BEGIN
    IF n = 0 THEN
        RETURN NULL;
    END IF;
    IF n < 16 THEN out := set_byte('\x00'::bytea, 0, 128 + n);
    ELSE out := '\xde'::bytea || int2send(n::smallint);
    END IF;
    FOR i IN 1 .. n LOOP
        key := convert_to(cols[i], 'UTF8');
        IF length(key) < 32 THEN out := out || set_byte('\x00'::bytea, 0, 160 + length(key));
        ELSE out := out || '\xd9'::bytea || set_byte('\x00'::bytea, 0, length(key));
        END IF;
        out := out || key || '\x92cf'::bytea || int8send(hlcs[i])
            || '\xc4'::bytea || set_byte('\x00'::bytea, 0, length(sites[i])) || sites[i];
    END LOOP;
    RETURN out;
END
$$;

-- Check written values against the rules (cols NULL: every column, an insert).
CREATE FUNCTION syncstore._direct_write_check(tbl_name text, row_j jsonb, cols text[]) RETURNS void
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    r record;
    v jsonb;
    t text;
    n double precision;
    where_ text;
BEGIN
    FOR r IN
        SELECT * FROM syncstore.direct_write_rules AS d
        WHERE d.tbl = tbl_name AND (cols IS NULL OR d.col = ANY(cols))
    LOOP
        where_ := format('syncstore: %s.%s', tbl_name, r.col);
        v := row_j -> r.col;
        IF v IS NULL OR jsonb_typeof(v) = 'null' THEN
            IF r.required THEN
                RAISE EXCEPTION '% is required and may not be null', where_ USING ERRCODE = 'not_null_violation';
            END IF;
            CONTINUE;
        END IF;
        t := row_j ->> r.col;
        IF r.choices IS NOT NULL AND NOT t = ANY(r.choices) THEN
            RAISE EXCEPTION '% must be one of %, got %', where_, array_to_string(r.choices, ', '), quote_literal(t)
                USING ERRCODE = 'check_violation';
        END IF;
        IF r.kind = 'text' AND char_length(t) > 1000000 THEN
            RAISE EXCEPTION '% is longer than 1000000 characters', where_ USING ERRCODE = 'check_violation';
        ELSIF r.kind IN ('integer', 'real') THEN
            n := t::double precision;
            IF n IN ('NaN'::double precision, 'Infinity'::double precision, '-Infinity'::double precision) THEN
                RAISE EXCEPTION '% must be a finite number', where_ USING ERRCODE = 'check_violation';
            END IF;
            IF n < r.minimum THEN
                RAISE EXCEPTION '% is below the minimum %', where_, r.minimum USING ERRCODE = 'check_violation';
            END IF;
            IF n > r.maximum THEN
                RAISE EXCEPTION '% is above the maximum %', where_, r.maximum USING ERRCODE = 'check_violation';
            END IF;
        ELSIF r.kind = 'json' AND r.shape IS NOT NULL AND jsonb_typeof(v) <> r.shape THEN
            RAISE EXCEPTION '% must be a JSON %, got %', where_, r.shape, jsonb_typeof(v) USING ERRCODE = 'check_violation';
        ELSIF r.kind = 'timestamp'
            AND NOT extract(year FROM t::timestamptz AT TIME ZONE 'UTC') BETWEEN 1 AND 9999 THEN
            RAISE EXCEPTION '% must fall in the years 1 to 9999', where_ USING ERRCODE = 'check_violation';
        ELSIF r.kind = 'vector' AND jsonb_typeof(v) = 'string' AND t LIKE '\\x%' -- stored as bytea
            AND (length(t) <= 2 OR (length(t) - 2) % 8 <> 0) THEN
            RAISE EXCEPTION '% must be a non-empty float32 array', where_ USING ERRCODE = 'check_violation';
        END IF;
    END LOOP;
END
$$;

-- BEFORE each direct write of a row: check it, stamp its written cells.
CREATE FUNCTION syncstore.direct_write_stamp() RETURNS trigger
LANGUAGE plpgsql
AS $$
DECLARE
    hidden constant text[] := ARRAY['tenant', 'id', '_hlc', '_site', '_clocks'];
    site constant bytea := syncstore.sql_site();
    stamp bigint := (floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint) << 16;
    newest bigint;
    new_j jsonb;
    old_j jsonb;
    changed text[];
    names text[] := '{}';
    hlcs bigint[] := '{}';
    sites bytea[] := '{}';
    r record;
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF TG_ARGV[0] = 'append_only' THEN
            RAISE EXCEPTION 'syncstore: % rows are append-only: they are never deleted', TG_TABLE_NAME
                USING ERRCODE = 'check_violation';
        END IF;
        -- Rows stay as tombstones, so the delete reaches clients and an older
        -- write arriving late cannot bring the row back.
        EXECUTE format('UPDATE %I.%I SET _deleted = true WHERE tenant = $1 AND id = $2', TG_TABLE_SCHEMA, TG_TABLE_NAME)
            USING OLD.tenant, OLD.id;
        RETURN NULL;
    END IF;
    new_j := to_jsonb(NEW);
    IF TG_OP = 'INSERT' THEN
        IF NEW._hlc IS NOT NULL OR NEW._site IS NOT NULL OR NEW._clocks IS NOT NULL THEN
            RAISE EXCEPTION 'syncstore: leave _hlc, _site and _clocks to the server (they are stamped on write)'
                USING ERRCODE = 'check_violation';
        END IF;
        IF NEW.id IS NULL OR NEW.id !~ '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$' THEN
            RAISE EXCEPTION 'syncstore: %.id must be a UUID string, got %', TG_TABLE_NAME, quote_nullable(NEW.id)
                USING ERRCODE = 'check_violation';
        END IF;
        PERFORM syncstore._direct_write_check(TG_TABLE_NAME, new_j, NULL);
        NEW._hlc := stamp;
        NEW._site := site;
        RETURN NEW;
    END IF;
    -- UPDATE
    IF TG_ARGV[0] = 'append_only' THEN
        RAISE EXCEPTION 'syncstore: % rows are append-only: they are never updated', TG_TABLE_NAME
            USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.tenant IS DISTINCT FROM OLD.tenant OR NEW.id IS DISTINCT FROM OLD.id THEN
        RAISE EXCEPTION 'syncstore: a row''s tenant and id never change' USING ERRCODE = 'check_violation';
    END IF;
    IF NEW._hlc IS DISTINCT FROM OLD._hlc OR NEW._site IS DISTINCT FROM OLD._site
        OR NEW._clocks IS DISTINCT FROM OLD._clocks THEN
        RAISE EXCEPTION 'syncstore: leave _hlc, _site and _clocks to the server (they are stamped on write)'
            USING ERRCODE = 'check_violation';
    END IF;
    old_j := to_jsonb(OLD);
    SELECT array_agg(e.key) INTO changed
    FROM jsonb_each(new_j) AS e
    WHERE NOT e.key = ANY(hidden) AND e.value IS DISTINCT FROM old_j -> e.key;
    IF changed IS NULL THEN
        RETURN NEW;  -- nothing changed: nothing to stamp or send
    END IF;
    PERFORM syncstore._direct_write_check(TG_TABLE_NAME, new_j, changed);
    -- The new stamp sorts after every cell of the row (the writer saw them all:
    -- its write wins over them, as a replica's local write wins over what it saw).
    newest := OLD._hlc;
    FOR r IN SELECT * FROM syncstore._clocks_decode(OLD._clocks) LOOP
        newest := greatest(newest, r.hlc);
        IF NOT r.col = ANY(changed) THEN
            names := names || r.col;
            hlcs := hlcs || r.hlc;
            sites := sites || r.site;
        END IF;
    END LOOP;
    stamp := greatest(stamp, newest + 1);
    names := names || changed;
    hlcs := hlcs || array_fill(stamp, ARRAY[array_length(changed, 1)]);
    sites := sites || array_fill(site, ARRAY[array_length(changed, 1)]);
    -- The base clock (_hlc/_site) stays; the written cells' clocks are overrides.
    NEW._clocks := syncstore._clocks_encode(names, hlcs, sites);
    RETURN NEW;
END
$$;

-- AFTER each direct write of a row: queue it for publishing and wake the servers.
CREATE FUNCTION syncstore.direct_write_capture() RETURNS trigger
LANGUAGE plpgsql
AS $$
DECLARE
    hidden constant text[] := ARRAY['tenant', 'id', '_hlc', '_site', '_clocks'];
    new_j jsonb := to_jsonb(NEW);
    old_j jsonb;
    changed text[];
    before jsonb;
BEGIN
    IF TG_OP = 'INSERT' THEN
        SELECT array_agg(k) INTO changed FROM jsonb_object_keys(new_j) AS k WHERE NOT k = ANY(hidden);
    ELSE
        old_j := to_jsonb(OLD);
        SELECT array_agg(e.key) INTO changed
        FROM jsonb_each(new_j) AS e
        WHERE NOT e.key = ANY(hidden) AND e.value IS DISTINCT FROM old_j -> e.key;
        SELECT coalesce(jsonb_object_agg(d.col, old_j -> d.col), '{}') INTO before
        FROM syncstore.direct_write_rules AS d
        WHERE d.tbl = TG_TABLE_NAME AND d.indexed AND d.col = ANY(changed);
    END IF;
    IF changed IS NOT NULL THEN
        INSERT INTO syncstore.direct_writes (tenant, tbl, row_id, cols, before)
        VALUES (NEW.tenant, TG_TABLE_NAME, NEW.id, changed, before);
        PERFORM pg_notify('syncstore_direct_writes', '');
    END IF;
    RETURN NULL;
END
$$;

CREATE FUNCTION syncstore.direct_write_no_truncate() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    RAISE EXCEPTION 'syncstore: % cannot be truncated (clients would never learn of it); delete rows instead',
        TG_TABLE_NAME USING ERRCODE = 'feature_not_supported';
END
$$;

-- What direct writers may write: the rules of syncstore.schema, one row per column.
INSERT INTO syncstore.direct_write_rules (tbl, col, kind, required, choices, minimum, maximum, shape, indexed) VALUES
    ('tasks', 'title', 'text', true, NULL, NULL, NULL, NULL, false),
    ('tasks', 'description', 'text', false, NULL, NULL, NULL, NULL, false),
    ('tasks', 'status', 'text', false, ARRAY['pending', 'in_progress', 'paused', 'completed', 'merged', 'cancelled', 'failed'], NULL, NULL, NULL, true),
    ('tasks', 'priority', 'text', false, ARRAY['low', 'medium', 'high', 'urgent'], NULL, NULL, NULL, false),
    ('tasks', 'branch', 'text', false, NULL, NULL, NULL, NULL, false),
    ('tasks', 'repository', 'text', false, NULL, NULL, NULL, NULL, true),
    ('tasks', 'session_id', 'text', false, NULL, NULL, NULL, NULL, false),
    ('tasks', 'mode', 'text', false, ARRAY['code', 'ask'], NULL, NULL, NULL, false),
    ('tasks', 'is_archived', 'boolean', false, NULL, NULL, NULL, NULL, false),
    ('tasks', 'has_changes', 'boolean', false, NULL, NULL, NULL, NULL, false),
    ('tasks', 'status_message', 'text', false, NULL, NULL, NULL, NULL, false),
    ('tasks', 'pull_request', 'json', false, NULL, NULL, NULL, 'object', false),
    ('tasks', 'user_id', 'text', false, NULL, NULL, NULL, NULL, true),
    ('tasks', 'metadata', 'json', false, NULL, NULL, NULL, 'object', false),
    ('tasks', 'created_at', 'timestamp', false, NULL, NULL, NULL, NULL, false),
    ('tasks', 'updated_at', 'timestamp', false, NULL, NULL, NULL, NULL, true),
    ('task_messages', 'task_id', 'text', true, NULL, NULL, NULL, NULL, true),
    ('task_messages', 'position', 'integer', true, NULL, 0, NULL, NULL, false),
    ('task_messages', 'role', 'text', true, ARRAY['user', 'assistant', 'system', 'tool'], NULL, NULL, NULL, false),
    ('task_messages', 'type', 'text', false, NULL, NULL, NULL, NULL, false),
    ('task_messages', 'content', 'text', false, NULL, NULL, NULL, NULL, false),
    ('task_messages', 'data', 'json', false, NULL, NULL, NULL, 'object', false),
    ('task_messages', 'created_at', 'timestamp', false, NULL, NULL, NULL, NULL, false),
    ('environments', 'name', 'text', true, NULL, NULL, NULL, NULL, false),
    ('environments', 'description', 'text', false, NULL, NULL, NULL, NULL, false),
    ('environments', 'github_organization', 'text', false, NULL, NULL, NULL, NULL, false),
    ('environments', 'github_repository', 'text', false, NULL, NULL, NULL, NULL, false),
    ('environments', 'is_active', 'boolean', false, NULL, NULL, NULL, NULL, true),
    ('environments', 'schema_version', 'integer', false, NULL, 1, NULL, NULL, false),
    ('environments', 'config', 'json', false, NULL, NULL, NULL, 'object', false),
    ('environments', 'user_id', 'text', false, NULL, NULL, NULL, NULL, true),
    ('environments', 'created_at', 'timestamp', false, NULL, NULL, NULL, NULL, false),
    ('environments', 'updated_at', 'timestamp', false, NULL, NULL, NULL, NULL, false),
    ('agent_executions', 'task_id', 'text', false, NULL, NULL, NULL, NULL, true),
    ('agent_executions', 'agent_type', 'text', true, NULL, NULL, NULL, NULL, true),
    ('agent_executions', 'status', 'text', false, ARRAY['pending', 'running', 'completed', 'failed', 'cancelled'], NULL, NULL, NULL, true),
    ('agent_executions', 'input', 'json', false, NULL, NULL, NULL, NULL, false),
    ('agent_executions', 'output', 'json', false, NULL, NULL, NULL, NULL, false),
    ('agent_executions', 'error', 'text', false, NULL, NULL, NULL, NULL, false),
    ('agent_executions', 'started_at', 'timestamp', false, NULL, NULL, NULL, NULL, true),
    ('agent_executions', 'completed_at', 'timestamp', false, NULL, NULL, NULL, NULL, false),
    ('agent_executions', 'duration_ms', 'real', false, NULL, 0, NULL, NULL, false),
    ('agent_executions', 'token_usage', 'json', false, NULL, NULL, NULL, NULL, false),
    ('agent_executions', 'cost', 'real', false, NULL, 0, NULL, NULL, false),
    ('agent_executions', 'provider', 'text', false, NULL, NULL, NULL, NULL, false),
    ('agent_executions', 'model', 'text', false, NULL, NULL, NULL, NULL, false),
    ('agent_executions', 'trace_id', 'text', false, NULL, NULL, NULL, NULL, true),
    ('agent_executions', 'span_id', 'text', false, NULL, NULL, NULL, NULL, false),
    ('agent_executions', 'correlation_id', 'text', false, NULL, NULL, NULL, NULL, false),
    ('agent_executions', 'metadata', 'json', false, NULL, NULL, NULL, NULL, false),
    ('agent_executions', 'created_at', 'timestamp', false, NULL, NULL, NULL, NULL, false),
    ('agent_executions', 'updated_at', 'timestamp', false, NULL, NULL, NULL, NULL, false),
    ('observability_events', 'execution_id', 'text', false, NULL, NULL, NULL, NULL, true),
    ('observability_events', 'event_type', 'text', true, NULL, NULL, NULL, NULL, false),
    ('observability_events', 'timestamp', 'timestamp', true, NULL, NULL, NULL, NULL, true),
    ('observability_events', 'severity', 'text', false, ARRAY['debug', 'info', 'warn', 'error', 'critical'], NULL, NULL, NULL, true),
    ('observability_events', 'component', 'text', false, NULL, NULL, NULL, NULL, true),
    ('observability_events', 'operation', 'text', false, NULL, NULL, NULL, NULL, false),
    ('observability_events', 'duration_ms', 'real', false, NULL, 0, NULL, NULL, false),
    ('observability_events', 'error_code', 'text', false, NULL, NULL, NULL, NULL, false),
    ('observability_events', 'error_message', 'text', false, NULL, NULL, NULL, NULL, false),
    ('observability_events', 'error_stack', 'text', false, NULL, NULL, NULL, NULL, false),
    ('observability_events', 'trace_id', 'text', false, NULL, NULL, NULL, NULL, true),
    ('observability_events', 'span_id', 'text', false, NULL, NULL, NULL, NULL, false),
    ('observability_events', 'parent_span_id', 'text', false, NULL, NULL, NULL, NULL, false),
    ('observability_events', 'correlation_id', 'text', false, NULL, NULL, NULL, NULL, false),
    ('observability_events', 'data', 'json', false, NULL, NULL, NULL, NULL, false),
    ('agent_memory', 'agent_id', 'text', true, NULL, NULL, NULL, NULL, true),
    ('agent_memory', 'memory_type', 'text', true, ARRAY['conversation', 'task_execution', 'user_preference', 'learned_pattern', 'error_resolution', 'context_summary', 'knowledge_base', 'skill_acquisition'], NULL, NULL, NULL, true),
    ('agent_memory', 'content', 'text', true, NULL, NULL, NULL, NULL, false),
    ('agent_memory', 'context_key', 'text', false, NULL, NULL, NULL, NULL, true),
    ('agent_memory', 'importance', 'integer', false, NULL, 1, 10, NULL, false),
    ('agent_memory', 'tags', 'json', false, NULL, NULL, NULL, NULL, false),
    ('agent_memory', 'context', 'json', false, NULL, NULL, NULL, NULL, false),
    ('agent_memory', 'last_accessed_at', 'timestamp', false, NULL, NULL, NULL, NULL, false),
    ('agent_memory', 'access_count', 'integer', false, NULL, 0, NULL, NULL, false),
    ('agent_memory', 'expires_at', 'timestamp', false, NULL, NULL, NULL, NULL, false),
    ('agent_memory', 'is_active', 'boolean', false, NULL, NULL, NULL, NULL, false),
    ('agent_memory', 'embedding', 'vector', false, NULL, NULL, NULL, NULL, false),
    ('agent_memory', 'embedding_model', 'text', false, NULL, NULL, NULL, NULL, true),
    ('agent_memory', 'embedding_dimensions', 'integer', false, NULL, 1, NULL, NULL, false),
    ('agent_memory', 'metadata', 'json', false, NULL, NULL, NULL, NULL, false),
    ('agent_memory', 'created_at', 'timestamp', false, NULL, NULL, NULL, NULL, false),
    ('agent_memory', 'updated_at', 'timestamp', false, NULL, NULL, NULL, NULL, false),
    ('workflows', 'name', 'text', true, NULL, NULL, NULL, NULL, true),
    ('workflows', 'version', 'integer', false, NULL, 1, NULL, NULL, false),
    ('workflows', 'definition', 'json', true, NULL, NULL, NULL, NULL, false),
    ('workflows', 'description', 'text', false, NULL, NULL, NULL, NULL, false),
    ('workflows', 'tags', 'json', false, NULL, NULL, NULL, NULL, false),
    ('workflows', 'config', 'json', false, NULL, NULL, NULL, NULL, false),
    ('workflows', 'schedule', 'text', false, NULL, NULL, NULL, NULL, false),
    ('workflows', 'is_active', 'boolean', false, NULL, NULL, NULL, NULL, false),
    ('workflows', 'created_by', 'text', false, NULL, NULL, NULL, NULL, false),
    ('workflows', 'created_at', 'timestamp', false, NULL, NULL, NULL, NULL, false),
    ('workflows', 'updated_at', 'timestamp', false, NULL, NULL, NULL, NULL, false),
    ('workflow_executions', 'workflow_id', 'text', true, NULL, NULL, NULL, NULL, true),
    ('workflow_executions', 'workflow_version', 'integer', true, NULL, 1, NULL, NULL, false),
    ('workflow_executions', 'status', 'text', false, ARRAY['pending', 'running', 'paused', 'waiting', 'completed', 'failed', 'cancelled'], NULL, NULL, NULL, true),
    ('workflow_executions', 'requested_status', 'text', false, ARRAY['paused', 'running', 'cancelled'], NULL, NULL, NULL, false),
    ('workflow_executions', 'input', 'json', false, NULL, NULL, NULL, NULL, false),
    ('workflow_executions', 'output', 'json', false, NULL, NULL, NULL, NULL, false),
    ('workflow_executions', 'state', 'json', false, NULL, NULL, NULL, NULL, false),
    ('workflow_executions', 'current_step', 'integer', false, NULL, 0, NULL, NULL, false),
    ('workflow_executions', 'total_steps', 'integer', false, NULL, 0, NULL, NULL, false),
    ('workflow_executions', 'error', 'text', false, NULL, NULL, NULL, NULL, false),
    ('workflow_executions', 'started_at', 'timestamp', false, NULL, NULL, NULL, NULL, false),
    ('workflow_executions', 'completed_at', 'timestamp', false, NULL, NULL, NULL, NULL, false),
    ('workflow_executions', 'paused_at', 'timestamp', false, NULL, NULL, NULL, NULL, false),
    ('workflow_executions', 'triggered_by', 'text', false, NULL, NULL, NULL, NULL, false),
    ('workflow_executions', 'parent_execution_id', 'text', false, NULL, NULL, NULL, NULL, false),
    ('workflow_executions', 'lease_owner', 'text', false, NULL, NULL, NULL, NULL, false),
    ('workflow_executions', 'lease_expires_at', 'timestamp', false, NULL, NULL, NULL, NULL, false),
    ('workflow_executions', 'metadata', 'json', false, NULL, NULL, NULL, NULL, false),
    ('workflow_executions', 'created_at', 'timestamp', false, NULL, NULL, NULL, NULL, false),
    ('workflow_executions', 'updated_at', 'timestamp', false, NULL, NULL, NULL, NULL, false),
    ('execution_snapshots', 'execution_id', 'text', true, NULL, NULL, NULL, NULL, true),
    ('execution_snapshots', 'step_number', 'integer', true, NULL, 0, NULL, NULL, false),
    ('execution_snapshots', 'step_name', 'text', false, NULL, NULL, NULL, NULL, false),
    ('execution_snapshots', 'kind', 'text', true, ARRAY['step_start', 'step_end', 'checkpoint', 'error', 'manual', 'signal'], NULL, NULL, NULL, false),
    ('execution_snapshots', 'state', 'json', false, NULL, NULL, NULL, NULL, false),
    ('execution_snapshots', 'variables', 'json', false, NULL, NULL, NULL, NULL, false),
    ('execution_snapshots', 'output', 'json', false, NULL, NULL, NULL, NULL, false),
    ('execution_snapshots', 'timestamp', 'timestamp', true, NULL, NULL, NULL, NULL, false),
    ('execution_snapshots', 'duration_ms', 'real', false, NULL, 0, NULL, NULL, false),
    ('execution_snapshots', 'memory_bytes', 'integer', false, NULL, 0, NULL, NULL, false),
    ('execution_snapshots', 'cpu_ms', 'real', false, NULL, 0, NULL, NULL, false),
    ('execution_snapshots', 'metadata', 'json', false, NULL, NULL, NULL, NULL, false);

-- tasks
ALTER TABLE syncstore.tasks
    ALTER COLUMN id SET DEFAULT gen_random_uuid()::text,
    ALTER COLUMN description SET DEFAULT '',
    ALTER COLUMN status SET DEFAULT 'pending',
    ALTER COLUMN priority SET DEFAULT 'medium',
    ALTER COLUMN branch SET DEFAULT '',
    ALTER COLUMN repository SET DEFAULT '',
    ALTER COLUMN session_id SET DEFAULT '',
    ALTER COLUMN mode SET DEFAULT 'code',
    ALTER COLUMN is_archived SET DEFAULT false,
    ALTER COLUMN has_changes SET DEFAULT false,
    ALTER COLUMN metadata SET DEFAULT '{}'::jsonb,
    ALTER COLUMN created_at SET DEFAULT now(),
    ALTER COLUMN updated_at SET DEFAULT now();
CREATE TRIGGER direct_write_stamp BEFORE INSERT OR UPDATE OR DELETE ON syncstore.tasks
    FOR EACH ROW WHEN (current_setting('syncstore.writer', true) IS DISTINCT FROM 'server')
    EXECUTE FUNCTION syncstore.direct_write_stamp('merge');
CREATE TRIGGER direct_write_capture AFTER INSERT OR UPDATE ON syncstore.tasks
    FOR EACH ROW WHEN (current_setting('syncstore.writer', true) IS DISTINCT FROM 'server')
    EXECUTE FUNCTION syncstore.direct_write_capture();
CREATE TRIGGER direct_write_truncate BEFORE TRUNCATE ON syncstore.tasks
    FOR EACH STATEMENT WHEN (current_setting('syncstore.writer', true) IS DISTINCT FROM 'server')
    EXECUTE FUNCTION syncstore.direct_write_no_truncate();

-- task_messages
ALTER TABLE syncstore.task_messages
    ALTER COLUMN id SET DEFAULT gen_random_uuid()::text,
    ALTER COLUMN type SET DEFAULT 'message',
    ALTER COLUMN content SET DEFAULT '',
    ALTER COLUMN data SET DEFAULT '{}'::jsonb;
CREATE TRIGGER direct_write_stamp BEFORE INSERT OR UPDATE OR DELETE ON syncstore.task_messages
    FOR EACH ROW WHEN (current_setting('syncstore.writer', true) IS DISTINCT FROM 'server')
    EXECUTE FUNCTION syncstore.direct_write_stamp('append_only');
CREATE TRIGGER direct_write_capture AFTER INSERT OR UPDATE ON syncstore.task_messages
    FOR EACH ROW WHEN (current_setting('syncstore.writer', true) IS DISTINCT FROM 'server')
    EXECUTE FUNCTION syncstore.direct_write_capture();
CREATE TRIGGER direct_write_truncate BEFORE TRUNCATE ON syncstore.task_messages
    FOR EACH STATEMENT WHEN (current_setting('syncstore.writer', true) IS DISTINCT FROM 'server')
    EXECUTE FUNCTION syncstore.direct_write_no_truncate();

-- environments
ALTER TABLE syncstore.environments
    ALTER COLUMN id SET DEFAULT gen_random_uuid()::text,
    ALTER COLUMN description SET DEFAULT '',
    ALTER COLUMN github_organization SET DEFAULT '',
    ALTER COLUMN github_repository SET DEFAULT '',
    ALTER COLUMN is_active SET DEFAULT false,
    ALTER COLUMN schema_version SET DEFAULT 1,
    ALTER COLUMN config SET DEFAULT '{}'::jsonb,
    ALTER COLUMN created_at SET DEFAULT now(),
    ALTER COLUMN updated_at SET DEFAULT now();
CREATE TRIGGER direct_write_stamp BEFORE INSERT OR UPDATE OR DELETE ON syncstore.environments
    FOR EACH ROW WHEN (current_setting('syncstore.writer', true) IS DISTINCT FROM 'server')
    EXECUTE FUNCTION syncstore.direct_write_stamp('merge');
CREATE TRIGGER direct_write_capture AFTER INSERT OR UPDATE ON syncstore.environments
    FOR EACH ROW WHEN (current_setting('syncstore.writer', true) IS DISTINCT FROM 'server')
    EXECUTE FUNCTION syncstore.direct_write_capture();
CREATE TRIGGER direct_write_truncate BEFORE TRUNCATE ON syncstore.environments
    FOR EACH STATEMENT WHEN (current_setting('syncstore.writer', true) IS DISTINCT FROM 'server')
    EXECUTE FUNCTION syncstore.direct_write_no_truncate();

-- agent_executions
ALTER TABLE syncstore.agent_executions
    ALTER COLUMN id SET DEFAULT gen_random_uuid()::text,
    ALTER COLUMN status SET DEFAULT 'pending',
    ALTER COLUMN metadata SET DEFAULT '{}'::jsonb,
    ALTER COLUMN created_at SET DEFAULT now(),
    ALTER COLUMN updated_at SET DEFAULT now();
CREATE TRIGGER direct_write_stamp BEFORE INSERT OR UPDATE OR DELETE ON syncstore.agent_executions
    FOR EACH ROW WHEN (current_setting('syncstore.writer', true) IS DISTINCT FROM 'server')
    EXECUTE FUNCTION syncstore.direct_write_stamp('merge');
CREATE TRIGGER direct_write_capture AFTER INSERT OR UPDATE ON syncstore.agent_executions
    FOR EACH ROW WHEN (current_setting('syncstore.writer', true) IS DISTINCT FROM 'server')
    EXECUTE FUNCTION syncstore.direct_write_capture();
CREATE TRIGGER direct_write_truncate BEFORE TRUNCATE ON syncstore.agent_executions
    FOR EACH STATEMENT WHEN (current_setting('syncstore.writer', true) IS DISTINCT FROM 'server')
    EXECUTE FUNCTION syncstore.direct_write_no_truncate();

-- observability_events
ALTER TABLE syncstore.observability_events
    ALTER COLUMN id SET DEFAULT gen_random_uuid()::text,
    ALTER COLUMN severity SET DEFAULT 'info',
    ALTER COLUMN data SET DEFAULT '{}'::jsonb;
CREATE TRIGGER direct_write_stamp BEFORE INSERT OR UPDATE OR DELETE ON syncstore.observability_events
    FOR EACH ROW WHEN (current_setting('syncstore.writer', true) IS DISTINCT FROM 'server')
    EXECUTE FUNCTION syncstore.direct_write_stamp('append_only');
CREATE TRIGGER direct_write_capture AFTER INSERT OR UPDATE ON syncstore.observability_events
    FOR EACH ROW WHEN (current_setting('syncstore.writer', true) IS DISTINCT FROM 'server')
    EXECUTE FUNCTION syncstore.direct_write_capture();
CREATE TRIGGER direct_write_truncate BEFORE TRUNCATE ON syncstore.observability_events
    FOR EACH STATEMENT WHEN (current_setting('syncstore.writer', true) IS DISTINCT FROM 'server')
    EXECUTE FUNCTION syncstore.direct_write_no_truncate();

-- agent_memory
ALTER TABLE syncstore.agent_memory
    ALTER COLUMN id SET DEFAULT gen_random_uuid()::text,
    ALTER COLUMN importance SET DEFAULT 5,
    ALTER COLUMN tags SET DEFAULT '[]'::jsonb,
    ALTER COLUMN context SET DEFAULT '{}'::jsonb,
    ALTER COLUMN access_count SET DEFAULT 0,
    ALTER COLUMN is_active SET DEFAULT true,
    ALTER COLUMN metadata SET DEFAULT '{}'::jsonb,
    ALTER COLUMN created_at SET DEFAULT now(),
    ALTER COLUMN updated_at SET DEFAULT now();
CREATE TRIGGER direct_write_stamp BEFORE INSERT OR UPDATE OR DELETE ON syncstore.agent_memory
    FOR EACH ROW WHEN (current_setting('syncstore.writer', true) IS DISTINCT FROM 'server')
    EXECUTE FUNCTION syncstore.direct_write_stamp('merge');
CREATE TRIGGER direct_write_capture AFTER INSERT OR UPDATE ON syncstore.agent_memory
    FOR EACH ROW WHEN (current_setting('syncstore.writer', true) IS DISTINCT FROM 'server')
    EXECUTE FUNCTION syncstore.direct_write_capture();
CREATE TRIGGER direct_write_truncate BEFORE TRUNCATE ON syncstore.agent_memory
    FOR EACH STATEMENT WHEN (current_setting('syncstore.writer', true) IS DISTINCT FROM 'server')
    EXECUTE FUNCTION syncstore.direct_write_no_truncate();

-- workflows
ALTER TABLE syncstore.workflows
    ALTER COLUMN id SET DEFAULT gen_random_uuid()::text,
    ALTER COLUMN version SET DEFAULT 1,
    ALTER COLUMN description SET DEFAULT '',
    ALTER COLUMN tags SET DEFAULT '[]'::jsonb,
    ALTER COLUMN config SET DEFAULT '{}'::jsonb,
    ALTER COLUMN is_active SET DEFAULT true,
    ALTER COLUMN created_at SET DEFAULT now(),
    ALTER COLUMN updated_at SET DEFAULT now();
CREATE TRIGGER direct_write_stamp BEFORE INSERT OR UPDATE OR DELETE ON syncstore.workflows
    FOR EACH ROW WHEN (current_setting('syncstore.writer', true) IS DISTINCT FROM 'server')
    EXECUTE FUNCTION syncstore.direct_write_stamp('merge');
CREATE TRIGGER direct_write_capture AFTER INSERT OR UPDATE ON syncstore.workflows
    FOR EACH ROW WHEN (current_setting('syncstore.writer', true) IS DISTINCT FROM 'server')
    EXECUTE FUNCTION syncstore.direct_write_capture();
CREATE TRIGGER direct_write_truncate BEFORE TRUNCATE ON syncstore.workflows
    FOR EACH STATEMENT WHEN (current_setting('syncstore.writer', true) IS DISTINCT FROM 'server')
    EXECUTE FUNCTION syncstore.direct_write_no_truncate();

-- workflow_executions
ALTER TABLE syncstore.workflow_executions
    ALTER COLUMN id SET DEFAULT gen_random_uuid()::text,
    ALTER COLUMN status SET DEFAULT 'pending',
    ALTER COLUMN state SET DEFAULT '{}'::jsonb,
    ALTER COLUMN current_step SET DEFAULT 0,
    ALTER COLUMN metadata SET DEFAULT '{}'::jsonb,
    ALTER COLUMN created_at SET DEFAULT now(),
    ALTER COLUMN updated_at SET DEFAULT now();
CREATE TRIGGER direct_write_stamp BEFORE INSERT OR UPDATE OR DELETE ON syncstore.workflow_executions
    FOR EACH ROW WHEN (current_setting('syncstore.writer', true) IS DISTINCT FROM 'server')
    EXECUTE FUNCTION syncstore.direct_write_stamp('merge');
CREATE TRIGGER direct_write_capture AFTER INSERT OR UPDATE ON syncstore.workflow_executions
    FOR EACH ROW WHEN (current_setting('syncstore.writer', true) IS DISTINCT FROM 'server')
    EXECUTE FUNCTION syncstore.direct_write_capture();
CREATE TRIGGER direct_write_truncate BEFORE TRUNCATE ON syncstore.workflow_executions
    FOR EACH STATEMENT WHEN (current_setting('syncstore.writer', true) IS DISTINCT FROM 'server')
    EXECUTE FUNCTION syncstore.direct_write_no_truncate();

-- execution_snapshots
ALTER TABLE syncstore.execution_snapshots
    ALTER COLUMN id SET DEFAULT gen_random_uuid()::text,
    ALTER COLUMN state SET DEFAULT '{}'::jsonb,
    ALTER COLUMN variables SET DEFAULT '{}'::jsonb,
    ALTER COLUMN metadata SET DEFAULT '{}'::jsonb;
CREATE TRIGGER direct_write_stamp BEFORE INSERT OR UPDATE OR DELETE ON syncstore.execution_snapshots
    FOR EACH ROW WHEN (current_setting('syncstore.writer', true) IS DISTINCT FROM 'server')
    EXECUTE FUNCTION syncstore.direct_write_stamp('append_only');
CREATE TRIGGER direct_write_capture AFTER INSERT OR UPDATE ON syncstore.execution_snapshots
    FOR EACH ROW WHEN (current_setting('syncstore.writer', true) IS DISTINCT FROM 'server')
    EXECUTE FUNCTION syncstore.direct_write_capture();
CREATE TRIGGER direct_write_truncate BEFORE TRUNCATE ON syncstore.execution_snapshots
    FOR EACH STATEMENT WHEN (current_setting('syncstore.writer', true) IS DISTINCT FROM 'server')
    EXECUTE FUNCTION syncstore.direct_write_no_truncate();

