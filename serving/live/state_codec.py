"""A refresh of the online state as bytes for Redis, and back (issue 17).

The leader's refresh (:class:`serving.live.state.Refresh`, as the refresh process sends
it: rankings without their recommender) is written as three safe formats, never pickle,
so that whoever can write Redis cannot run code in the workers:

- ``meta``: JSON (ids, clock, counts, how the arrays fit together);
- ``arrays``: a numpy ``.npz`` archive, read back with ``allow_pickle=False`` (object
  arrays are refused on both sides);
- ``rows``: the feature rows as an Arrow IPC stream.

The recommender's catalogue of the touched customers is the snapshot's with their ids
and home stores (``History.of_customers``): only those travel, the decoding scorer
supplies the rest.
"""

from __future__ import annotations

import io
import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pyarrow as pa

from serving.live.state import Refresh
from serving.ranked_lists import AHEAD_PARTS, AheadLists
from serving.scoring import LiveRanking, RowUpdate, Scorer
from training.recs.candidates import CandidateTable
from training.recs.tables import PairTable

FORMAT = 1
"""Bumped when the layout changes: a worker refuses an entry of another format."""


class StateFormatError(ValueError):
    """A state entry this code cannot read (another format, a damaged or foreign one)."""


def encode(refresh: Refresh) -> dict[str, bytes]:
    """``refresh`` (portable: rankings without recommender) as ``meta``, ``arrays`` and
    ``rows`` bytes."""
    update = refresh.update
    arrays: dict[str, np.ndarray] = {"consent": update.consent, "churn": update.churn}
    arrays["channel"] = update.channel
    meta: dict = {
        "format": FORMAT,
        "ids": list(update.ids),
        "removed": list(update.removed),
        "as_of": refresh.as_of.isoformat(),
        "n_events": int(refresh.n_events),
        "seconds": float(refresh.seconds),
        "ranking": None,
    }
    if update.ranking is not None:
        meta["ranking"] = _encode_ranking(update.ranking, arrays)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return {
        "meta": json.dumps(meta, separators=(",", ":")).encode(),
        "arrays": buffer.getvalue(),
        "rows": _table_bytes(refresh.rows),
    }


def decode(fields: dict, scorer: Scorer) -> Refresh:
    """The refresh :func:`encode` wrote (field names as str or, read from Redis, bytes),
    for ``scorer`` (the snapshot it was computed for); :class:`StateFormatError` for
    anything else."""
    fields = {k.encode() if isinstance(k, str) else k: v for k, v in fields.items()}
    try:
        meta = json.loads(fields[b"meta"])
        if meta.get("format") != FORMAT:
            raise StateFormatError(f"state entry of format {meta.get('format')}, not {FORMAT}")
        with np.load(io.BytesIO(fields[b"arrays"]), allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
        rows = pa.ipc.open_stream(fields[b"rows"]).read_all().to_pandas()
    except StateFormatError:
        raise
    except (KeyError, ValueError, TypeError, OSError, pa.ArrowException) as exc:
        raise StateFormatError(f"not a state entry: {exc}") from None
    ranking = None
    if meta["ranking"] is not None:
        ranking = _decode_ranking(meta["ranking"], arrays, scorer)
    update = RowUpdate(
        list(meta["ids"]),
        None,  # the models' matrices: a worker keeps predictions (Refresh.portable)
        None,
        arrays["consent"],
        arrays["churn"],
        arrays["channel"],
        ranking,
        list(meta["removed"]),
    )
    as_of = pd.Timestamp(meta["as_of"])
    return Refresh(rows, update, as_of, int(meta["n_events"]), float(meta["seconds"]))


def _encode_ranking(ranking: LiveRanking, arrays: dict[str, np.ndarray]) -> dict:
    """The ranking's arrays into ``arrays`` (``r.`` names); its layout as JSON."""
    personal = ranking.personal
    for name in ("indptr", "item", "sources", "als_rank"):
        arrays[f"r.personal.{name}"] = getattr(personal, name)
    customers = ranking.customers
    parts = {}
    for name, value in customers.parts.items():
        if isinstance(value, PairTable):
            arrays[f"r.part.{name}.keys"] = value.keys
            for column, values in value.columns.items():
                arrays[f"r.part.{name}.col.{column}"] = values
            parts[name] = {"pairs": int(value.n_cols), "columns": list(value.columns)}
        elif isinstance(value, np.ndarray):
            arrays[f"r.part.{name}"] = value
            parts[name] = {"array": True}
        else:
            raise TypeError(f"customer part {name}: {type(value).__name__} has no safe format")
    arrays["r.factor_rows"] = customers.factor_rows
    arrays["r.home_store"] = customers.catalogue.home_store
    if customers.folded_at is not None:
        arrays["r.folded_at"] = customers.folded_at
        arrays["r.folded"] = customers.folded
    if ranking.ahead is not None:
        for name in AHEAD_PARTS:
            arrays[f"r.ahead.{name}"] = getattr(ranking.ahead, name)
    return {
        "ahead": ranking.ahead is not None,
        "codes": list(ranking.codes),
        "code_values": list(ranking.codes.values()),
        "alive": int(ranking.alive),
        "customer_ids": [str(c) for c in customers.catalogue.customer_ids],
        "t": int(customers.t),
        "parts": parts,
    }


def _decode_ranking(meta: dict, arrays: dict[str, np.ndarray], scorer: Scorer) -> LiveRanking:
    """The :class:`LiveRanking` :func:`_encode_ranking` wrote (without recommender:
    :meth:`Scorer.apply_rows` rebuilds it from the customer parts)."""
    from training.recs.model import CustomerUpdate

    if scorer.recommender is None:
        raise StateFormatError("a state entry with recommendations for a snapshot without")
    personal = CandidateTable(
        *(arrays[f"r.personal.{n}"] for n in ("indptr", "item", "sources", "als_rank"))
    )
    parts: dict[str, object] = {}
    for name, layout in meta["parts"].items():
        if "pairs" in layout:
            columns = {c: arrays[f"r.part.{name}.col.{c}"] for c in layout["columns"]}
            parts[name] = PairTable(arrays[f"r.part.{name}.keys"], layout["pairs"], columns)
        else:
            parts[name] = arrays[f"r.part.{name}"]
    catalogue = replace(
        scorer.recommender.catalogue_,
        customer_ids=pd.Index(meta["customer_ids"], dtype="str"),
        home_store=arrays["r.home_store"],
    )
    customers = CustomerUpdate(
        parts=parts,
        catalogue=catalogue,
        factor_rows=arrays["r.factor_rows"],
        t=meta["t"],
        folded_at=arrays.get("r.folded_at"),
        folded=arrays.get("r.folded"),
    )
    codes = dict(zip(meta["codes"], meta["code_values"], strict=True))
    ahead = None
    if meta.get("ahead"):  # entries written before lists were ranked ahead have none
        ahead = AheadLists(*(arrays[f"r.ahead.{name}"] for name in AHEAD_PARTS))
    return LiveRanking(None, personal, codes, alive=meta["alive"], customers=customers, ahead=ahead)


def _table_bytes(rows: pd.DataFrame) -> bytes:
    """The feature rows (index customer_id) as an Arrow IPC stream."""
    table = pa.Table.from_pandas(rows, preserve_index=True)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()
