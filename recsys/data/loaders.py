"""Turn public dataset formats into the event contract (and a catalogue when there is one).

Loaders only reshape; validation happens in ingestion like for any other
source, so a corrupt line in a public dump is quarantined, not trusted.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from recsys import columns as C

FORMATS = ("movielens", "ml100k", "retailrocket", "sasrec", "contract")


@dataclass
class Loaded:
    events: pd.DataFrame
    items: pd.DataFrame | None = None


def load(path: Path | str, fmt: str) -> Loaded:
    """Load a dataset file (or folder for MovieLens) in one of ``FORMATS``."""
    path = Path(path)
    loaders = {
        "movielens": load_movielens,
        "ml100k": load_ml100k,
        "retailrocket": load_retailrocket,
        "sasrec": load_sasrec_txt,
        "contract": load_contract,
    }
    if fmt not in loaders:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    return loaders[fmt](path)


def _text_ids(col) -> np.ndarray:
    """Ids as text, keeping missing ones missing (``astype(str)`` would say "nan")."""
    s = pd.Series(col)
    if pd.api.types.is_float_dtype(s) and s.dropna().eq(s.dropna().round()).all():
        s = s.astype("Int64")  # a NaN in the column made pandas read ids as floats
    return s.astype("string").astype(object).where(s.notna(), None).to_numpy()


def _events(user, item, etype, ts, value=None) -> pd.DataFrame:
    return pd.DataFrame({
        C.USER_ID: _text_ids(user),
        C.ITEM_ID: _text_ids(item),
        C.EVENT_TYPE: etype,
        C.TS: ts,
        C.VALUE: value if value is not None else np.nan,
    })


def load_movielens(path: Path) -> Loaded:
    """MovieLens ``ratings.dat`` (``::``) or ``ratings.csv`` (header), with movies if beside it.

    ``path`` may be the ratings file or the folder holding it.
    """
    folder = path if path.is_dir() else path.parent
    ratings = path if path.is_file() else next(
        (folder / n for n in ("ratings.dat", "ratings.csv") if (folder / n).exists()), None)
    if ratings is None:
        raise FileNotFoundError(f"{path}: no ratings.dat or ratings.csv")
    if ratings.suffix == ".dat":
        df = pd.read_csv(
            ratings, sep="::", engine="python", header=None,
            names=["user", "item", "rating", "ts"], encoding="latin-1")
    else:
        df = pd.read_csv(ratings).rename(columns={"userId": "user", "movieId": "item",
                                                   "rating": "rating", "timestamp": "ts"})
    events = _events(df["user"], df["item"], "rating",
                     pd.to_datetime(df["ts"], unit="s"), df["rating"].astype(float))
    items = None
    movies = next((folder / n for n in ("movies.dat", "movies.csv") if (folder / n).exists()),
                  None)
    if movies is not None:
        if movies.suffix == ".dat":
            m = pd.read_csv(movies, sep="::", engine="python", header=None,
                            names=["item", "title", "genres"], encoding="latin-1")
        else:
            m = pd.read_csv(movies).rename(columns={"movieId": "item"})
        items = pd.DataFrame({
            C.ITEM_ID: _text_ids(m["item"]),
            C.TITLE: m["title"],
            C.CATEGORY: m["genres"].str.split("|").str[0],
            C.DESCRIPTION: m["genres"].str.replace("|", ", "),
        })
    return Loaded(events, items)


def load_ml100k(path: Path) -> Loaded:
    """MovieLens 100K ``u.data``: ``user<TAB>item<TAB>rating<TAB>unix_ts``, no header."""
    file = path / "u.data" if path.is_dir() else path
    df = pd.read_csv(file, sep="\t", header=None, names=["user", "item", "rating", "ts"])
    return Loaded(_events(df["user"], df["item"], "rating", pd.to_datetime(df["ts"], unit="s"),
                          df["rating"].astype(float)))


RETAILROCKET_EVENTS = {"view": "view", "addtocart": "cart", "transaction": "purchase"}


def load_retailrocket(path: Path) -> Loaded:
    """RetailRocket ``events.csv``: timestamp (ms), visitorid, event, itemid, transactionid."""
    file = path / "events.csv" if path.is_dir() else path
    df = pd.read_csv(file, dtype={"visitorid": str, "itemid": str, "event": str})
    # Unknown event names pass through unchanged so that ingestion quarantines them visibly.
    etype = df["event"].map(RETAILROCKET_EVENTS).fillna(df["event"])
    return Loaded(_events(df["visitorid"], df["itemid"], etype.to_numpy(),
                          pd.to_datetime(df["timestamp"], unit="ms")))


def load_sasrec_txt(path: Path, start: str = "2020-01-01") -> Loaded:
    """SASRec-style ``user item`` lines with no timestamps: file order is time order.

    Timestamps are synthesised as one second apart in file order, which keeps
    every user's sequence in the published order and makes a global time
    order that replay can stream.
    """
    df = pd.read_csv(path, sep=r"\s+", header=None, names=["user", "item"], dtype=str,
                     engine="c")
    ts = pd.Timestamp(start) + pd.to_timedelta(np.arange(len(df)), unit="s")
    return Loaded(_events(df["user"], df["item"], "view", ts))


def load_contract(path: Path) -> Loaded:
    """A file already in the event contract (CSV or Parquet)."""
    df = pd.read_parquet(path) if path.suffix in (".parquet", ".pq") else pd.read_csv(path)
    return Loaded(df)
