import datetime as dt
import hashlib

from recsys.config import Paths
from recsys.data import forget_log


def test_user_hash_is_the_sha256_of_the_id():
    assert forget_log.user_hash("u1") == hashlib.sha256(b"u1").hexdigest()
    assert forget_log.user_hash("u1") != forget_log.user_hash("u2")


def test_log_round_trip_and_forgotten_hashes(tmp_path):
    paths = Paths(root=tmp_path)
    assert forget_log.read_log(paths) == [] and forget_log.forgotten_hashes(paths) == set()
    forget_log.append(paths, {"request_id": "a", "user_sha256": "h1", "status": "started"})
    forget_log.append(paths, {"request_id": "b", "user_sha256": "h2", "status": "started"})
    forget_log.append(paths, {"request_id": "b", "user_sha256": "h2", "status": "done"})
    assert forget_log.log_path(paths).is_file()
    assert [r["request_id"] for r in forget_log.read_log(paths)] == ["a", "b", "b"]
    assert forget_log.forgotten_hashes(paths) == {"h2"}  # a started request forgets nobody yet


def test_requests_after_a_training_read(tmp_path):
    paths = Paths(root=tmp_path)
    read_at = dt.datetime(2026, 1, 1, 12)
    for request_id, first_seq, finished in [
            ("late", 5, "2026-01-01T13:00:00"),      # finished after the read: counts
            ("early", 5, "2026-01-01T11:00:00"),     # finished before: the read saw it through
            ("beyond", 50, "2026-01-01T13:00:00"),   # first event beyond the watermark
            ("no-events", None, "2026-01-01T13:00:00")]:
        forget_log.append(paths, {"request_id": request_id, "status": "done",
                                  "user_sha256": request_id, "first_seq": first_seq,
                                  "finished_at": finished})
    forget_log.append(paths, {"request_id": "open", "status": "started", "first_seq": 1,
                              "user_sha256": "open"})
    assert forget_log.requests_after(paths, read_at, watermark=10) == ["late"]
    # Unknown read time: every finished request at or below the watermark counts.
    assert forget_log.requests_after(paths, None, watermark=10) == ["late", "early"]
