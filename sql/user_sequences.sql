-- Each user's behaviour sequence ordered by time (ties by ingestion sequence, then item, so the
-- order is deterministic), keeping the last $max_len events: item indices and event-type codes
-- (1 view, 2 click, 3 cart, 4 purchase, 5 rating; 0 is padding). Item and type travel packed in
-- one integer (item * 8 + type) so DuckDB sorts each user's events once, not once per list.
CREATE OR REPLACE TABLE user_sequences AS
WITH packed AS (
    SELECT
        user_idx,
        list(CAST(item_idx AS BIGINT) * 8
                + list_position(['view', 'click', 'cart', 'purchase', 'rating'], event_type)
            ORDER BY ts, ingest_seq, item_idx)[-$max_len:] AS code_seq,
        count(*) AS n_events,
        max(ts) AS last_ts
    FROM events
    GROUP BY user_idx
)
SELECT
    user_idx,
    list_transform(code_seq, lambda c: CAST(c // 8 AS INTEGER)) AS item_seq,
    list_transform(code_seq, lambda c: CAST(c % 8 AS UTINYINT)) AS type_seq,
    n_events,
    last_ts
FROM packed
ORDER BY user_idx
