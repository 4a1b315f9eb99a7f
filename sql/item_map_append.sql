-- Append ids of items never seen before (events of relation landed with sequence in
-- ($low, $high], and relation new_items) to item_map, numbered after the current maximum in order
-- of first appearance, so existing indices never move.
INSERT INTO item_map
SELECT
    item_id,
    (SELECT coalesce(max(item_idx), 0) FROM item_map)
        + CAST(row_number() OVER (ORDER BY first_seen, item_id) AS INTEGER) AS item_idx,
    first_seen
FROM (
    SELECT item_id, min(first_seen) AS first_seen
    FROM (
        SELECT item_id, ts AS first_seen FROM landed
        WHERE ingest_seq > $low AND ingest_seq <= $high
        UNION ALL
        SELECT item_id, coalesce(created_at, ingested_at) FROM new_items
    )
    GROUP BY item_id
) AS candidates
WHERE item_id NOT IN (SELECT item_id FROM item_map)
