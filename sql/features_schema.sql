-- Tables of the feature store that persist across builds. Id maps only ever grow: an index
-- never changes meaning, so models trained earlier stay valid. Index 0 is padding.
CREATE TABLE IF NOT EXISTS item_map (item_id VARCHAR PRIMARY KEY, item_idx INTEGER NOT NULL, first_seen TIMESTAMP);
CREATE TABLE IF NOT EXISTS user_map (user_id VARCHAR PRIMARY KEY, user_idx INTEGER NOT NULL, first_seen TIMESTAMP);
CREATE TABLE IF NOT EXISTS events (
    event_id VARCHAR, user_id VARCHAR, item_id VARCHAR, user_idx INTEGER, item_idx INTEGER,
    event_type VARCHAR, ts TIMESTAMP, value DOUBLE, ingest_seq BIGINT
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
