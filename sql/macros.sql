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
-- seq_key: one unsigned 128-bit integer that sorts like (ts, ingest_seq, item_idx, type_code) and
-- carries item and type in its low bits. Sorting each user's small list of these keys is about
-- twice as fast as an ordered aggregate over three columns (bench/feature_extraction.py).
-- Bits: type 0-2, item index 3-33, ingest sequence 34-65 (below 2^32 parts: refresh_events
-- checks), microseconds since 1970 offset by 2^61 above (any timestamp ingestion accepts).
CREATE OR REPLACE TEMP MACRO seq_key(ts, seq, item, type_code) AS
    (CAST(epoch_us(ts) + 2305843009213693952 AS UHUGEINT) << 66)
    | (CAST(seq AS UHUGEINT) << 34) | (CAST(item AS UHUGEINT) << 3) | CAST(type_code AS UHUGEINT);
CREATE OR REPLACE TEMP MACRO seq_key_item(k) AS CAST((k >> 3) & 2147483647 AS INTEGER);
CREATE OR REPLACE TEMP MACRO seq_key_type(k) AS CAST(k & 7 AS UTINYINT);
