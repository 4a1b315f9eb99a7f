-- Forget $user_id in the feature store's events (derived tables are rebuilt after). Runs before
-- forget_user_id_map: events know the user only by index.
DELETE FROM events WHERE user_idx IN (SELECT user_idx FROM user_map WHERE user_id = $user_id)
