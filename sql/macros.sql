-- Scalar macros shared by the other files; run once on every connection by recsys.sql.connect.
-- parse_ts: ISO-8601 text (any offset, naive = UTC) or epoch seconds/ms/us -> naive UTC TIMESTAMP.
CREATE OR REPLACE TEMP MACRO parse_ts(x) AS
    CASE
        WHEN regexp_full_match(trim(x), '-?[0-9]{1,18}(\.[0-9]+)?') THEN
            CASE
                WHEN abs(CAST(trim(x) AS DOUBLE)) >= 1e17 THEN NULL
                WHEN abs(CAST(trim(x) AS DOUBLE)) >= 1e14 THEN make_timestamp(CAST(CAST(trim(x) AS DOUBLE) AS BIGINT))
                WHEN abs(CAST(trim(x) AS DOUBLE)) >= 1e11 THEN make_timestamp(CAST(CAST(trim(x) AS DOUBLE) * 1e3 AS BIGINT))
                ELSE make_timestamp(CAST(CAST(trim(x) AS DOUBLE) * 1e6 AS BIGINT))
            END
        ELSE TRY_CAST(TRY_CAST(trim(x) AS TIMESTAMPTZ) AS TIMESTAMP)
    END;
-- event_content_hash: identity of an event's content; equal hashes mean an exact duplicate.
CREATE OR REPLACE TEMP MACRO event_content_hash(u, i, t, ts, v) AS
    md5(concat_ws(chr(31), u, i, t, CAST(epoch_us(ts) AS VARCHAR), coalesce(CAST(v AS VARCHAR), '')));
-- event_id_key: 63 bits of an event id's MD5, the key of the event id index
-- (recsys/data/event_index.py); MD5, unlike hash(), is the same in every DuckDB version.
CREATE OR REPLACE TEMP MACRO event_id_key(e) AS CAST(md5_number_lower(e) >> 1 AS BIGINT);
-- item_content_hash: identity of a catalogue row's content.
CREATE OR REPLACE TEMP MACRO item_content_hash(i, title, cat, descr, created) AS
    md5(concat_ws(chr(31), i, coalesce(title, ''), coalesce(cat, ''), coalesce(descr, ''),
        coalesce(CAST(epoch_us(created) AS VARCHAR), '')));
-- seq_key: one unsigned 128-bit integer that sorts like (ts, ingest_seq, item_idx, type_code) and
-- carries item and type in its low bits. Sorting each user's small list of these keys is about
-- twice as fast as an ordered aggregate over three columns (bench/feature_extraction.py).
-- Bits: type 0-2, item index 3-33, ingest sequence 34-65 (below 2^32 parts: refresh_events
-- checks), microseconds since 1970 offset by 2^61 above (any timestamp ingestion accepts).
CREATE OR REPLACE TEMP MACRO seq_key(ts, seq, item, type_code) AS
    (CAST(epoch_us(ts) + 2305843009213693952 AS UHUGEINT) << 66)
    | (CAST(seq AS UHUGEINT) << 34) | (CAST(item AS UHUGEINT) << 3) | CAST(type_code AS UHUGEINT);
CREATE OR REPLACE TEMP MACRO seq_key_item(k) AS CAST((k >> 3) & 2147483647 AS INTEGER);
CREATE OR REPLACE TEMP MACRO seq_key_type(k) AS CAST(k & 7 AS UTINYINT);
-- checked_events: the row checks of one chunk of raw events (the table named `raw`: every column
-- VARCHAR; _nonscalar names a field that held an object or a list). One row out
-- per row in, typed, with `problem` = 'reason|detail' of the first failing check, NULL when the
-- row is valid. Shared by validate_events.sql (files, sealed HTTP journals) and check_events.sql
-- (the HTTP intake's answer), so that both give every row the same reason. The optional
-- request_id is checked like an id; a blank one counts as absent.
CREATE OR REPLACE TEMP MACRO checked_events(raw, now_ts, max_future_seconds, min_ts, max_id_len,
                                            event_types) AS TABLE
    WITH typed AS (
        SELECT
            _row,
            event_id AS raw_event_id, user_id, item_id, event_type AS raw_event_type, ts AS raw_ts,
            value AS raw_value, _nonscalar,
            CASE WHEN trim(request_id) <> '' THEN request_id END AS request_id,
            lower(trim(event_type)) AS event_type,
            parse_ts(ts) AS ts,
            TRY_CAST(trim(value) AS DOUBLE) AS value
        FROM query_table(raw)
    )

        SELECT
            *,
            -- 'reason|detail' of the first failing check, NULL when the row is valid.
            CASE
                WHEN _nonscalar IS NOT NULL THEN 'malformed_row|' || _nonscalar
                WHEN user_id IS NULL OR trim(user_id) = '' THEN 'missing_field|user_id is empty'
                WHEN item_id IS NULL OR trim(item_id) = '' THEN 'missing_field|item_id is empty'
                WHEN raw_event_type IS NULL OR trim(raw_event_type) = '' THEN 'missing_field|event_type is empty'
                WHEN raw_ts IS NULL OR trim(raw_ts) = '' THEN 'missing_field|ts is empty'
                WHEN raw_event_id IS NOT NULL AND trim(raw_event_id) = '' THEN 'missing_field|event_id is blank'
                WHEN length(user_id) > max_id_len OR length(item_id) > max_id_len
                    OR length(raw_event_id) > max_id_len OR length(raw_event_type) > max_id_len
                    OR length(raw_ts) > max_id_len OR length(raw_value) > max_id_len
                    OR length(request_id) > max_id_len
                    THEN 'oversized_field|a field is longer than ' || max_id_len || ' characters'
                WHEN contains(user_id, chr(65533)) OR contains(item_id, chr(65533)) OR contains(raw_event_id, chr(65533))
                    OR contains(request_id, chr(65533))
                    THEN 'bad_encoding|an id is not valid UTF-8'
                WHEN regexp_matches(user_id, '[\x00-\x1f\x7f]') OR regexp_matches(item_id, '[\x00-\x1f\x7f]')
                    OR regexp_matches(raw_event_id, '[\x00-\x1f\x7f]') OR regexp_matches(request_id, '[\x00-\x1f\x7f]')
                    THEN 'invalid_characters|an id contains control characters'
                WHEN NOT list_contains(event_types, event_type)
                    THEN 'unknown_event_type|' || raw_event_type || ' is not one of ' || array_to_string(event_types, ', ')
                WHEN ts IS NULL THEN 'bad_timestamp|cannot parse ' || raw_ts || ' as a timestamp'
                WHEN ts > now_ts + to_seconds(max_future_seconds)
                    THEN 'future_timestamp|' || raw_ts || ' is more than ' || max_future_seconds || ' s in the future'
                WHEN ts < CAST(min_ts AS TIMESTAMP)
                    THEN 'ancient_timestamp|' || raw_ts || ' is before ' || min_ts
                WHEN raw_value IS NOT NULL AND trim(raw_value) <> ''
                    AND (value IS NULL OR isnan(value) OR isinf(value))
                    THEN 'bad_value|value ' || raw_value || ' is not a finite number'
            END AS problem
        FROM typed;
