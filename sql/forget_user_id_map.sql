-- Forget $user_id's id-map entry. Its index is never reused: user_map_append numbers new users
-- after the highest index, so no model's user index changes meaning.
DELETE FROM user_map WHERE user_id = $user_id
