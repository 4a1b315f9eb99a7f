-- Events in the store with a landing sequence above $low, the store's watermark: there must be
-- none, since events and watermark move in one transaction. A refresh checks before appending.
SELECT count(*) FROM events WHERE ingest_seq > $low
