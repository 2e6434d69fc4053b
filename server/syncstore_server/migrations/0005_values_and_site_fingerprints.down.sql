-- Undo 0005: sites keep no fingerprint; direct writes are checked by 0004's rules again
-- (no byte limit for text in indexed columns, no JSON depth or size limit).
ALTER TABLE syncstore.site_acks DROP COLUMN acked_fingerprint;
CREATE OR REPLACE FUNCTION syncstore._direct_write_check(tbl_name text, row_j jsonb, cols text[]) RETURNS void
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
