-- Each user's behaviour sequence ordered by time (ties by ingestion sequence, then item, so the
-- order is deterministic), keeping the last $max_len events: item indices and event-type codes
-- (1 view, 2 click, 3 cart, 4 purchase, 5 rating; 0 is padding).
CREATE OR REPLACE TABLE user_sequences AS
SELECT
    user_idx,
    list(item_idx ORDER BY ts, ingest_seq, item_idx)[-$max_len:] AS item_seq,
    list(CAST(list_position(['view', 'click', 'cart', 'purchase', 'rating'], event_type) AS UTINYINT)
        ORDER BY ts, ingest_seq, item_idx)[-$max_len:] AS type_seq,
    count(*) AS n_events,
    max(ts) AS last_ts
FROM events
GROUP BY user_idx
ORDER BY user_idx
