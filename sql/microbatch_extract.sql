-- The micro-batch's training sequences: for each user with events of sequence in ($low, $high],
-- their recent sequence (last $max_len events by time among sequences <= $high, old and new, new
-- items included). Event types are coded as in user_sequences. is_new marks the positions the
-- batch contributes: only those are trained on, so no event enters a lineage twice.
WITH touched AS (
    SELECT DISTINCT user_idx FROM events WHERE ingest_seq > $low AND ingest_seq <= $high
),
recent AS (
    SELECT e.*
    FROM events AS e
    JOIN touched USING (user_idx)
    WHERE e.ingest_seq <= $high
    QUALIFY row_number() OVER (PARTITION BY e.user_idx ORDER BY e.ts DESC, e.ingest_seq DESC, e.item_idx DESC) <= $max_len
)
SELECT
    user_idx,
    list(item_idx ORDER BY ts, ingest_seq, item_idx) AS item_seq,
    list(event_type_code(event_type)
        ORDER BY ts, ingest_seq, item_idx) AS type_seq,
    list(ingest_seq > $low ORDER BY ts, ingest_seq, item_idx) AS is_new,
    count(*) FILTER (WHERE ingest_seq > $low) AS n_new
FROM recent
GROUP BY user_idx
ORDER BY user_idx
