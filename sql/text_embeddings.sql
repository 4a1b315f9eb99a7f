-- The cached text embedding of every item encoded by $encoder, by item index.
SELECT item_idx, embedding FROM item_text_embeddings WHERE encoder = $encoder ORDER BY item_idx
