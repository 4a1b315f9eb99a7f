-- Type and validate one chunk of raw catalogue rows (every column VARCHAR, registered as raw_items;
-- _nonscalar names a field that held an object or a list).
-- Status 'accepted', 'duplicate' (repeat inside the chunk or unchanged since the last landed
-- version: dropped) or 'quarantined'. Relation landed_items holds earlier versions.
-- Parameters: $max_id_len, $max_text_len.
WITH typed AS (
    SELECT
        _row, item_id, title, category, description, created_at AS raw_created_at, _nonscalar,
        parse_ts(created_at) AS created_at
    FROM raw_items
),
checked AS (
    SELECT
        *,
        CASE
            WHEN _nonscalar IS NOT NULL THEN 'malformed_row|' || _nonscalar
            WHEN item_id IS NULL OR trim(item_id) = '' THEN 'missing_field|item_id is empty'
            WHEN length(item_id) > $max_id_len
                THEN 'oversized_field|item_id is longer than ' || $max_id_len || ' characters'
            WHEN length(title) > $max_text_len OR length(category) > $max_text_len
                OR length(description) > $max_text_len
                THEN 'oversized_field|a text field is longer than ' || $max_text_len || ' characters'
            WHEN contains(item_id, chr(65533)) THEN 'bad_encoding|item_id is not valid UTF-8'
            WHEN regexp_matches(item_id, '[\x00-\x1f\x7f]')
                THEN 'invalid_characters|item_id contains control characters'
            WHEN raw_created_at IS NOT NULL AND trim(raw_created_at) <> '' AND created_at IS NULL
                THEN 'bad_timestamp|cannot parse created_at ' || raw_created_at
        END AS problem,
        item_content_hash(item_id, title, category, description, created_at) AS content_hash
    FROM typed
),
latest AS (
    SELECT item_id,
        arg_max(item_content_hash(item_id, title, category, description, created_at), ingest_seq)
            AS content_hash
    FROM landed_items
    WHERE item_id IN (SELECT item_id FROM raw_items)
    GROUP BY item_id
),
ranked AS (
    SELECT c._row, c.content_hash,
        -- the last row of the chunk for an item wins, like a later file would
        row_number() OVER (PARTITION BY c.item_id ORDER BY c._row DESC) AS nth_from_last,
        l.content_hash AS landed_hash
    FROM checked AS c
    LEFT JOIN latest AS l USING (item_id)
    WHERE c.problem IS NULL
)
SELECT
    c._row, c.item_id, c.title, c.category, c.description, c.created_at,
    CASE
        WHEN c.problem IS NOT NULL THEN 'quarantined'
        WHEN r.nth_from_last > 1 OR r.content_hash = r.landed_hash THEN 'duplicate'
        ELSE 'accepted'
    END AS status,
    split_part(c.problem, '|', 1) AS reason,
    substr(c.problem, strpos(c.problem, '|') + 1) AS detail,
    to_json({'item_id': c.item_id, 'title': c.title, 'category': c.category,
        'description': c.description, 'created_at': c.raw_created_at}) AS raw
FROM checked AS c
LEFT JOIN ranked AS r USING (_row)
ORDER BY c._row
