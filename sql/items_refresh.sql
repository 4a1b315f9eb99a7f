-- The catalogue as of now: the latest landed version of every item (relation landed_items),
-- plus a bare row for items seen only in events, so every indexed item has a row.
CREATE OR REPLACE TABLE items AS
WITH latest AS (
    SELECT item_id, arg_max(title, ingest_seq) AS title, arg_max(category, ingest_seq) AS category,
        arg_max(description, ingest_seq) AS description, arg_max(created_at, ingest_seq) AS created_at,
        max(ingest_seq) AS ingest_seq
    FROM landed_items
    GROUP BY item_id
)
SELECT m.item_id, m.item_idx, l.title, l.category, l.description,
    coalesce(l.created_at, m.first_seen) AS created_at, l.ingest_seq
FROM item_map AS m
LEFT JOIN latest AS l USING (item_id)
ORDER BY m.item_idx
