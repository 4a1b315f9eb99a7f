-- A fresh staging table for one batch-scoring run; chunks are appended to it and it replaces
-- the served table only when complete (recommendations_swap).
CREATE OR REPLACE TABLE recommendations_staging (
    user_id VARCHAR, rank INTEGER, item_id VARCHAR, score FLOAT, model_version VARCHAR,
    scored_at TIMESTAMP
)
