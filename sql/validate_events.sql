-- Type and validate one chunk of raw events (every column VARCHAR, registered as raw_events;
-- _nonscalar names a field that held an object or a list where the reader saw one). The optional
-- request_id (the recommendation answer an event came from) is checked like an id but is not
-- part of the content hash: a blank one counts as absent, it is only a hint for attribution.
-- One row out per row in: status 'accepted', 'duplicate' (exact repeat inside the chunk, dropped)
-- or 'quarantined' with the first failing reason. Parameters: $now, $max_future_seconds, $min_ts,
-- $max_id_len, $event_types.
WITH typed AS (
    SELECT
        _row,
        event_id AS raw_event_id, user_id, item_id, event_type AS raw_event_type, ts AS raw_ts,
        value AS raw_value, _nonscalar,
        CASE WHEN trim(request_id) <> '' THEN request_id END AS request_id,
        lower(trim(event_type)) AS event_type,
        parse_ts(ts) AS ts,
        TRY_CAST(trim(value) AS DOUBLE) AS value
    FROM raw_events
),
checked AS (
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
            WHEN length(user_id) > $max_id_len OR length(item_id) > $max_id_len
                OR length(raw_event_id) > $max_id_len OR length(raw_event_type) > $max_id_len
                OR length(raw_ts) > $max_id_len OR length(raw_value) > $max_id_len
                OR length(request_id) > $max_id_len
                THEN 'oversized_field|a field is longer than ' || $max_id_len || ' characters'
            WHEN contains(user_id, chr(65533)) OR contains(item_id, chr(65533)) OR contains(raw_event_id, chr(65533))
                OR contains(request_id, chr(65533))
                THEN 'bad_encoding|an id is not valid UTF-8'
            WHEN regexp_matches(user_id, '[\x00-\x1f\x7f]') OR regexp_matches(item_id, '[\x00-\x1f\x7f]')
                OR regexp_matches(raw_event_id, '[\x00-\x1f\x7f]') OR regexp_matches(request_id, '[\x00-\x1f\x7f]')
                THEN 'invalid_characters|an id contains control characters'
            WHEN NOT list_contains($event_types, event_type)
                THEN 'unknown_event_type|' || raw_event_type || ' is not one of ' || array_to_string($event_types, ', ')
            WHEN ts IS NULL THEN 'bad_timestamp|cannot parse ' || raw_ts || ' as a timestamp'
            WHEN ts > $now + to_seconds($max_future_seconds)
                THEN 'future_timestamp|' || raw_ts || ' is more than ' || $max_future_seconds || ' s in the future'
            WHEN ts < CAST($min_ts AS TIMESTAMP)
                THEN 'ancient_timestamp|' || raw_ts || ' is before ' || $min_ts
            WHEN raw_value IS NOT NULL AND trim(raw_value) <> ''
                AND (value IS NULL OR isnan(value) OR isinf(value))
                THEN 'bad_value|value ' || raw_value || ' is not a finite number'
        END AS problem
    FROM typed
),
keyed AS (
    SELECT
        *,
        -- Derived ids hash the *parsed* content, so the same event written as ISO text or as
        -- epoch seconds gets the same id and re-ingesting any file duplicates nothing.
        coalesce(raw_event_id, 'h:' || event_content_hash(user_id, item_id, event_type, ts, value))
            AS event_id,
        event_content_hash(user_id, item_id, event_type, ts, value) AS content_hash
    FROM checked
),
ranked AS (
    -- Ranked among the valid rows only (the partition splits on problem IS NULL): one pass, no
    -- self-join, so the statement binds and plans in half the time (the HTTP intake runs it
    -- for every group commit of a few requests).
    SELECT
        *,
        row_number() OVER w AS nth,
        first_value(content_hash) OVER w AS first_hash
    FROM keyed
    WINDOW w AS (PARTITION BY event_id, problem IS NULL ORDER BY _row)
)
SELECT
    _row, event_id, user_id, item_id, event_type, ts, value, content_hash, request_id,
    -- Rows without a request_id keep the raw text (and so the quarantine id) they had before
    -- the column existed: re-ingesting an old file quarantines nothing twice.
    CASE WHEN request_id IS NULL
        THEN to_json({'event_id': raw_event_id, 'user_id': user_id, 'item_id': item_id,
            'event_type': raw_event_type, 'ts': raw_ts, 'value': raw_value})
        ELSE to_json({'event_id': raw_event_id, 'user_id': user_id, 'item_id': item_id,
            'event_type': raw_event_type, 'ts': raw_ts, 'value': raw_value,
            'request_id': request_id})
    END AS raw,
    CASE
        WHEN problem IS NOT NULL THEN 'quarantined'
        WHEN nth = 1 THEN 'accepted'
        WHEN content_hash = first_hash THEN 'duplicate'
        ELSE 'quarantined'
    END AS status,
    CASE
        WHEN problem IS NOT NULL THEN split_part(problem, '|', 1)
        WHEN nth > 1 AND content_hash <> first_hash THEN 'duplicate_event_id'
    END AS reason,
    CASE
        WHEN problem IS NOT NULL THEN substr(problem, strpos(problem, '|') + 1)
        WHEN nth > 1 AND content_hash <> first_hash
            THEN 'event_id ' || event_id || ' repeats an earlier row of this file with different content'
    END AS detail
FROM ranked
ORDER BY _row
