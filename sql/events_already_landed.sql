-- Classify the chunk's accepted rows (relation batch) against events that already landed
-- (relation landed): 'new', 'duplicate' (same id and content: dropped) or 'conflict'
-- (same id, other content: quarantined as duplicate_event_id).
WITH prior AS (
    SELECT event_id, any_value(event_content_hash(user_id, item_id, event_type, ts, value)) AS content_hash
    FROM landed
    WHERE event_id IN (SELECT event_id FROM batch)
    GROUP BY event_id
)
SELECT
    b._row,
    CASE
        WHEN p.event_id IS NULL THEN 'new'
        WHEN p.content_hash = b.content_hash THEN 'duplicate'
        ELSE 'conflict'
    END AS landing_status
FROM batch AS b
LEFT JOIN prior AS p USING (event_id)
ORDER BY b._row
