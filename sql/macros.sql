-- Scalar macros shared by the other files; run once on every connection by recsys.sql.connect.
-- parse_ts: ISO-8601 text (any offset, naive = UTC) or epoch seconds/ms/us -> naive UTC TIMESTAMP.
CREATE OR REPLACE TEMP MACRO parse_ts(x) AS
    CASE
        WHEN regexp_full_match(trim(x), '-?[0-9]{1,18}(\.[0-9]+)?') THEN
            CASE
                WHEN abs(CAST(trim(x) AS DOUBLE)) >= 1e17 THEN NULL
                WHEN abs(CAST(trim(x) AS DOUBLE)) >= 1e14 THEN make_timestamp(CAST(CAST(trim(x) AS DOUBLE) AS BIGINT))
                WHEN abs(CAST(trim(x) AS DOUBLE)) >= 1e11 THEN make_timestamp(CAST(CAST(trim(x) AS DOUBLE) * 1e3 AS BIGINT))
                ELSE make_timestamp(CAST(CAST(trim(x) AS DOUBLE) * 1e6 AS BIGINT))
            END
        ELSE TRY_CAST(TRY_CAST(trim(x) AS TIMESTAMPTZ) AS TIMESTAMP)
    END;
-- event_content_hash: identity of an event's content; equal hashes mean an exact duplicate.
CREATE OR REPLACE TEMP MACRO event_content_hash(u, i, t, ts, v) AS
    md5(concat_ws(chr(31), u, i, t, CAST(epoch_us(ts) AS VARCHAR), coalesce(CAST(v AS VARCHAR), '')));
-- item_content_hash: identity of a catalogue row's content.
CREATE OR REPLACE TEMP MACRO item_content_hash(i, title, cat, descr, created) AS
    md5(concat_ws(chr(31), i, coalesce(title, ''), coalesce(cat, ''), coalesce(descr, ''),
        coalesce(CAST(epoch_us(created) AS VARCHAR), '')));
