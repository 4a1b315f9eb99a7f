-- Tables of the feature store that persist across builds. Id maps only ever grow: an index
-- never changes meaning, so models trained earlier stay valid. Index 0 is padding.
CREATE TABLE IF NOT EXISTS item_map (item_id VARCHAR PRIMARY KEY, item_idx INTEGER NOT NULL, first_seen TIMESTAMP);
CREATE TABLE IF NOT EXISTS user_map (user_id VARCHAR PRIMARY KEY, user_idx INTEGER NOT NULL, first_seen TIMESTAMP);
-- Events mirror the landing zone up to the watermark, in fixed-width columns only: the text ids
-- live once in the maps. Ingestion is where duplicates are dropped (each event id lands once), so
-- the store needs no event id: writing 10M of them cost more than the rest of a build.
-- The event type is a one-byte enum: it compares with text ('purchase') and turns into the
-- models' code (event_type_code, below) without a string operation per event.
CREATE TYPE IF NOT EXISTS event_kind AS ENUM ('view', 'click', 'cart', 'purchase', 'rating');
-- event_type_code: an event type as the small code models read: 1 view, 2 click, 3 cart,
-- 4 purchase, 5 rating; 0 is padding. Stored with the type it needs (macros.sql holds macros
-- for every connection, and this one only binds where event_kind exists).
CREATE OR REPLACE MACRO event_type_code(t) AS CAST(enum_code(CAST(t AS event_kind)) + 1 AS UTINYINT);
CREATE TABLE IF NOT EXISTS events (
    user_idx INTEGER, item_idx INTEGER, event_type event_kind, ts TIMESTAMP, value DOUBLE,
    ingest_seq BIGINT
);
CREATE TABLE IF NOT EXISTS items (
    item_id VARCHAR, item_idx INTEGER, title VARCHAR, category VARCHAR, description VARCHAR,
    created_at TIMESTAMP, ingest_seq BIGINT
);
CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR);
-- Text embeddings of item titles/categories/descriptions, computed once per item text and
-- encoder and reused by every training run (re-encoded only when the text or encoder changes).
CREATE TABLE IF NOT EXISTS item_text_embeddings (
    item_idx INTEGER PRIMARY KEY, text_hash UBIGINT, encoder VARCHAR, embedding FLOAT[]
);
