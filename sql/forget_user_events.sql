-- Forget $user_id in the feature store's events (derived tables are rebuilt after).
DELETE FROM events WHERE user_id = $user_id
