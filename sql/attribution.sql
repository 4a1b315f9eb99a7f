-- Every click, cart and purchase of the report period with the one impression it is credited
-- to, or none (relations: impressions, landed). Parameters: $now, $hours, $window_minutes.
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
-- the window) that are credited exactly to an impression of the period.
-- Cost: one pass over the period's impressions, probing a hash table built on the few reactions:
-- each reaction looks for its user's impressions of the item and, when it names a request, for
-- that request's anonymous impressions of the item (key: user, or request where no user).
WITH bounds AS (
    SELECT CAST($now AS TIMESTAMP) AS t1,
           CAST($now AS TIMESTAMP) - to_microseconds(CAST($hours * 3600e6 AS BIGINT)) AS t0,
           to_microseconds(CAST($window_minutes * 60e6 AS BIGINT)) AS win
),
reactions AS (
    SELECT row_number() OVER () AS n, e.event_id, e.user_id, e.item_id, e.event_type, e.ts,
           e.request_id
    FROM landed AS e, bounds AS b
    WHERE e.event_type IN ('click', 'cart', 'purchase') AND e.ts >= b.t0 - b.win AND e.ts <= b.t1
),
wanted AS (
    SELECT n, item_id, ts, request_id, false AS anonymous, user_id AS who FROM reactions
    UNION ALL
    SELECT n, item_id, ts, request_id, true, request_id FROM reactions
    WHERE request_id IS NOT NULL
),
best AS (
    -- per reaction, the candidate first by: exact, latest shown, greatest request_id, top position
    SELECT w.n, arg_max({'request_id': s.request_id, 'position': s.position,
                         'model_version': s.model_version, 'variant': s.variant,
                         'surface': s.surface, 'shown_ts': s.ts,
                         'exact': coalesce(s.request_id = w.request_id, false)},
                        (coalesce(s.request_id = w.request_id, false), s.ts, s.request_id,
                         -s.position)) AS hit
    FROM impressions AS s
    JOIN wanted AS w
        ON w.item_id = s.item_id AND w.anonymous = (s.user_id IS NULL)
        AND w.who = coalesce(s.user_id, s.request_id)
    JOIN bounds AS b ON s.ts >= b.t0 AND s.ts < b.t1
    WHERE s.request_id = w.request_id
        OR (NOT w.anonymous AND s.ts <= w.ts AND w.ts <= s.ts + b.win)
    GROUP BY w.n
)
SELECT r.event_id, r.user_id, r.item_id, r.event_type, r.ts, r.request_id AS event_request_id,
       b.hit.request_id, b.hit.position, b.hit.model_version, b.hit.variant, b.hit.surface,
       b.hit.shown_ts,
       CASE WHEN b.hit.exact THEN 'exact' WHEN b.n IS NOT NULL THEN 'window' END AS matched_by
FROM reactions AS r
LEFT JOIN best AS b USING (n), bounds AS t
WHERE b.n IS NOT NULL OR r.ts >= t.t0
