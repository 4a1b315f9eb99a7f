-- Interactions per item among sequences <= $high: the sampled-softmax proposal of a fine-tune.
SELECT item_idx, count(*) AS n FROM events WHERE ingest_seq <= $high GROUP BY item_idx
