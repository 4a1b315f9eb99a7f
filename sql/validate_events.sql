-- Type and validate one chunk of raw events (every column VARCHAR, registered as raw_events).
-- The row checks are the checked_events macro (macros.sql); this adds the event id, the content
-- hash, the event id index key (event_id_key), the quarantine text and the duplicates inside
-- the chunk. The request_id (the
-- recommendation answer an event came from) is not part of the content hash: it is only a hint
-- for attribution.
-- One row out per row in: status 'accepted', 'duplicate' (exact repeat inside the chunk, dropped)
-- or 'quarantined' with the first failing reason. Parameters: $now, $max_future_seconds, $min_ts,
-- $max_id_len, $event_types.
WITH checked AS (
    SELECT * FROM checked_events('raw_events', $now, $max_future_seconds, $min_ts, $max_id_len, $event_types)
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
    event_id_key(event_id) AS id_key,
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
