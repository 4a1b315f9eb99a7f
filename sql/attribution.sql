-- Every click, cart and purchase of the report period with the one impression it is credited
-- to, or none. Temp tables: online_reactions (the reactions) and online_shown, whose candidates
-- are the period's impressions that share a user and item, or an anonymous answer's request and
-- item, with reactions. Parameters: $now, $hours, $window_minutes.
--
-- The period is [$now - $hours, $now); its impressions are the candidates. Events are judged by
-- their event time (ts), never by when or in what order they landed, so a late or out-of-order
-- event is credited exactly as if it had arrived on time. An event is credited to:
--  1. exact: the impression of the same item in the answer its request_id names, shown to the
--     same user (or to an anonymous session: impression user_id NULL), whatever the time
--     between them (the client said where it came from; its clock may even be a little behind);
--  2. otherwise window: the latest impression of the same item to the same user at or before the
--     event (impression ts <= event ts <= impression ts + $window_minutes); two impressions at
--     the same instant: the greater request_id. An event whose request_id matches no impression
--     of that item (an answer older than the period, an item not in that answer, a garbled id)
--     falls back to this rule. Anonymous impressions are credited only exactly;
--  3. otherwise nothing (matched_by NULL: organic, or shown outside the period or window).
-- One event credits at most one impression; one impression may be credited by several events.
-- Rows: every such event with ts in [period start, $now], plus earlier ones (down to start minus
-- the window) that are credited exactly to an impression of the period. The impression's
-- model_version is 'unknown' where it had none.
WITH bounds AS (
    SELECT CAST($now AS TIMESTAMP) - to_microseconds(CAST($hours * 3600e6 AS BIGINT)) AS t0,
           to_microseconds(CAST($window_minutes * 60e6 AS BIGINT)) AS win
),
shown AS (SELECT model_version, unnest(candidates) AS c FROM online_shown),
pairs AS (
    SELECT model_version, c.request_id, c.position, c.variant, c.ts AS shown_ts, c.anonymous,
           unnest(c.reactions) AS n
    FROM shown
),
best AS (
    -- per reaction, the candidate first by: exact, latest shown, greatest request_id, top position
    SELECT p.n, arg_max({'request_id': p.request_id, 'position': p.position,
                         'model_version': p.model_version, 'variant': p.variant,
                         'shown_ts': p.shown_ts,
                         'exact': coalesce(p.request_id = r.request_id, false)},
                        (coalesce(p.request_id = r.request_id, false), p.shown_ts, p.request_id,
                         -p.position)) AS hit
    FROM pairs AS p
    JOIN online_reactions AS r USING (n), bounds AS b
    WHERE p.request_id = r.request_id
        OR (NOT p.anonymous AND p.shown_ts <= r.ts AND r.ts <= p.shown_ts + b.win)
    GROUP BY p.n
)
SELECT r.event_id, r.user_id, r.item_id, r.event_type, r.ts, r.request_id AS event_request_id,
       b.hit.request_id, b.hit.position, b.hit.model_version, b.hit.variant, b.hit.shown_ts,
       CASE WHEN b.hit.exact THEN 'exact' WHEN b.n IS NOT NULL THEN 'window' END AS matched_by
FROM online_reactions AS r
LEFT JOIN best AS b USING (n), bounds AS t
WHERE b.n IS NOT NULL OR r.ts >= t.t0
