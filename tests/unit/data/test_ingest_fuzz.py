"""Thousands of seeded hostile rows and broken files through ingestion: nothing crashes, every
good row lands verbatim, every bad row is quarantined with the reason meant for it, and the
totals add up."""

from __future__ import annotations

import json
import random
from collections import Counter

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from recsys.data.ingest import ingest_paths
from recsys.data.landing import LandingZone

# Ids that must be stored and returned verbatim: SQL, paths, format strings, words that look
# like nulls, unicode of every awkward kind.
HOSTILE_IDS = [
    "'; DROP TABLE events; --", "Robert'); DELETE FROM user_map;--", "1 OR 1=1", "$user_id",
    "../../etc/passwd", "..\\..\\windows\\system32", "/tmp/x.parquet", "part-000000000001.parquet",
    "%s%s%n", "{0}{user_id}", "NULL", "null", "None", "NaN", "nan", "inf", "-0", "true",
    "😀🔥", "ünïcödé", "e\u0301", "\u202eevil", "中文用户", "ﬁ", "Ω", "a,b", 'quote"inside',
    "  spaced  ", "tab-less\u00a0nbsp", "x" * 256,
]
GOOD_TYPES = ["view", "click", "cart", "purchase", "rating", " VIEW ", "Click"]

# (reason meant, field overrides) for rows that must be quarantined.
BAD = [
    ("missing_field", {"user_id": ""}),
    ("missing_field", {"item_id": ""}),
    ("missing_field", {"event_type": ""}),
    ("missing_field", {"ts": ""}),
    ("oversized_field", {"user_id": "u" * 257}),
    ("oversized_field", {"item_id": "i" * 100_000}),
    ("invalid_characters", {"user_id": "a\x00b"}),
    ("invalid_characters", {"item_id": "a\x1bb"}),
    ("invalid_characters", {"user_id": "line\nbreak"}),
    ("unknown_event_type", {"event_type": "teleport"}),
    ("unknown_event_type", {"event_type": "view; DROP TABLE events"}),
    ("bad_timestamp", {"ts": "yesterday"}),
    ("bad_timestamp", {"ts": "2024-13-45T99:00:00Z"}),
    ("future_timestamp", {"ts": "2999-01-01T00:00:00Z"}),
    ("ancient_timestamp", {"ts": "1970-01-01T00:00:01Z"}),
    ("ancient_timestamp", {"ts": "0001-01-01T00:00:00Z"}),
    ("bad_value", {"value": "NaN"}),
    ("bad_value", {"value": "inf"}),
    ("bad_value", {"value": "-Infinity"}),
    ("bad_value", {"value": "abc"}),
]


def generate_rows(rng: random.Random, n: int) -> tuple[list[dict], dict[str, str]]:
    """Rows with unique event ids, and the reason each bad one must get ('' = accepted)."""
    rows, meant = [], {}
    for k in range(n):
        row = {
            "event_id": f"fz-{k}",
            "user_id": rng.choice(HOSTILE_IDS + [f"user{rng.randrange(50)}"]),
            "item_id": rng.choice(HOSTILE_IDS + [f"item{rng.randrange(200)}"]),
            "event_type": rng.choice(GOOD_TYPES),
            "ts": f"2025-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}T"
                  f"{rng.randrange(24):02d}:{rng.randrange(60):02d}:00Z",
            "value": rng.choice(["", "1", "4.5", "-2", "1e3"]),
        }
        reason = ""
        if rng.random() < 0.4:
            reason, override = rng.choice(BAD)
            row |= override
        rows.append(row)
        meant[row["event_id"]] = reason
    return rows, meant


def write(rows: list[dict], path, fmt: str) -> None:
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif fmt == "parquet":
        pq.write_table(pa.Table.from_pylist(rows), path)
    else:
        pd.DataFrame(rows).to_csv(path, index=False)


def landed(paths) -> pd.DataFrame:
    return pd.concat([pq.read_table(p).to_pandas() for p in LandingZone(paths).event_parts()],
                     ignore_index=True)


def quarantined(paths) -> pd.DataFrame:
    parts = LandingZone(paths).quarantine_parts()
    return pd.concat([pq.read_table(p).to_pandas() for p in parts], ignore_index=True)


def test_hostile_rows_land_verbatim_or_quarantine_with_their_reason(paths, tmp_path):
    rng = random.Random(7)
    files, meant, by_id = [], {}, {}
    for n, fmt in enumerate(["jsonl", "parquet", "csv"] * 2):
        rows, reasons = generate_rows(rng, 700)
        for r in rows:
            r["event_id"] = f"{n}-{r['event_id']}"
            by_id[r["event_id"]] = r
        meant |= {f"{n}-{k}": v for k, v in reasons.items()}
        path = tmp_path / f"fuzz{n}.{fmt}"
        write(rows, path, fmt)
        files.append(path)
    reports = ingest_paths(files, data_paths=paths)
    assert all(r.error is None for r in reports), [r.error for r in reports]
    assert all(r.balanced for r in reports)
    assert sum(r.rows_read for r in reports) == len(meant) == 4200

    got = landed(paths).set_index("event_id")
    good = {k for k, v in meant.items() if not v}
    assert set(got.index) == good  # every good row, and nothing else
    for event_id in good:  # ids come back exactly as sent
        assert got.at[event_id, "user_id"] == by_id[event_id]["user_id"]
        assert got.at[event_id, "item_id"] == by_id[event_id]["item_id"]
    q = quarantined(paths)
    q["event_id"] = q["raw"].map(lambda raw: json.loads(raw)["event_id"])
    assert len(q) == len(meant) - len(good) and q["event_id"].is_unique
    wrong = [(e, r, meant[e]) for e, r in zip(q["event_id"], q["reason"], strict=True)
             if r != meant[e]]
    assert not wrong, wrong[:5]
    assert sum(r.accepted for r in reports) == len(got)
    assert sum(r.n_quarantined for r in reports) == len(q)
    print(f"\nfuzz: {len(meant)} rows, {len(good)} accepted, {len(q)} quarantined: "
          f"{dict(Counter(q['reason']))}")

    # The same files again: nothing new lands, nothing is quarantined twice.
    again = ingest_paths(files, data_paths=paths)
    assert sum(r.accepted for r in again) == 0 and all(r.balanced for r in again)
    assert len(landed(paths)) == len(got) and len(quarantined(paths)) == len(q)


def test_broken_files_are_rejected_by_name_and_change_nothing(paths, tmp_path):
    good = tmp_path / "good.csv"
    pd.DataFrame([{"user_id": "u1", "item_id": "i1", "event_type": "view",
                   "ts": "2025-01-01T00:00:00Z"}]).to_csv(good, index=False)
    ingest_paths([good], data_paths=paths)
    before = [(p.name, p.stat().st_size) for p in LandingZone(paths).event_parts()]

    rows, _ = generate_rows(random.Random(3), 200)
    broken = {}
    full = tmp_path / "full.parquet"
    write(rows, full, "parquet")
    broken["truncated.parquet"] = full.read_bytes()[: full.stat().st_size // 2]
    broken["garbage.parquet"] = bytes(random.Random(1).randrange(256) for _ in range(4096))
    broken["garbage.csv"] = bytes(random.Random(2).randrange(256) for _ in range(4096))
    broken["empty.csv"] = b""
    broken["empty.jsonl"] = b""
    broken["header_only.csv"] = b"user_id,item_id,event_type,ts\n"
    broken["no_required_columns.csv"] = b"a,b\n1,2\n"
    broken["not_json.jsonl"] = b"{this is not json\n[1,2,3]\n\"str\"\n"
    good_line = b'{"user_id":"u7","item_id":"i%d","event_type":"view","ts":"2025-01-0%d"}\n'
    broken["mixed.jsonl"] = (good_line % (7, 1) + b'{"user_id": trunc\n\x00\xff\xfe\n'
                             + good_line % (8, 2))
    broken["latin1.csv"] = "user_id,item_id,event_type,ts\nJosé,i1,view,2025-01-01\n".encode(
        "latin-1")
    broken["truncated.csv"] = b"user_id,item_id,event_type,ts\nu9,i9,view,2025-01-01\nu9,i"
    broken["utf16.csv"] = "user_id,item_id,event_type,ts\nu8,i8,view,2025-01-01\n".encode(
        "utf-16")
    paths_in = []
    for name, data in broken.items():
        (tmp_path / name).write_bytes(data)
        paths_in.append(tmp_path / name)
    reports = ingest_paths(paths_in, data_paths=paths)
    outcome = {}
    for name, r in zip(broken, reports, strict=True):
        assert r.balanced, name
        if r.error:
            assert name in r.error, r.error  # the message names the file
            assert r.accepted == 0, name
        outcome[name] = r.error.split(": ", 1)[-1][:60] if r.error else \
            f"{r.accepted} accepted, {r.n_quarantined} quarantined"
    print("\n" + "\n".join(f"  {k}: {v}" for k, v in outcome.items()))
    for name in ("truncated.parquet", "garbage.parquet", "no_required_columns.csv"):
        assert reports[list(broken).index(name)].error, name
    mixed = reports[list(broken).index("mixed.jsonl")]  # bad lines never block good ones
    assert mixed.accepted == 2 and mixed.quarantined == {"malformed_row": 2}
    latin1 = reports[list(broken).index("latin1.csv")]
    assert latin1.quarantined == {"bad_encoding": 1}
    # Earlier parts are untouched; only whole new parts were added.
    after = {p.name: p.stat().st_size for p in LandingZone(paths).event_parts()}
    assert all(after[name] == size for name, size in before)
