-- Store freshly computed embeddings (relation new_text_embeddings), replacing older ones.
DELETE FROM item_text_embeddings WHERE item_idx IN (SELECT item_idx FROM new_text_embeddings);
INSERT INTO item_text_embeddings
SELECT item_idx, text_hash, encoder, embedding FROM new_text_embeddings;
