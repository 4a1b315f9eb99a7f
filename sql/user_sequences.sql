-- Each user's behaviour sequence ordered by time (ties by ingestion sequence, then item, so the
-- order is deterministic), keeping the last $max_len events: item indices and event-type codes
-- (1 view, 2 click, 3 cart, 4 purchase, 5 rating; 0 is padding). Each event travels as one
-- sortable key (macro seq_key) so a user's events are sorted once as a small list of integers.
CREATE OR REPLACE TABLE user_sequences AS
WITH packed AS (
    SELECT
        user_idx,
        list_sort(list(seq_key(ts, ingest_seq, item_idx, event_type_code(event_type))))[-$max_len:] AS keys,
        count(*) AS n_events,
        max(ts) AS last_ts
    FROM events
    GROUP BY user_idx
)
SELECT
    user_idx,
    list_transform(keys, lambda k: seq_key_item(k)) AS item_seq,
    list_transform(keys, lambda k: seq_key_type(k)) AS type_seq,
    n_events,
    last_ts
FROM packed
ORDER BY user_idx
