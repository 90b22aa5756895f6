"""Metrics store contract (docs/architecture.md §3): layout, atomic parts, dedupe, bad parts, other readers."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from metrics import (
    RUNS_SCHEMA,
    SCHEMA_VERSION,
    TrialWriter,
    UnreadablePartWarning,
    curves_schema,
    list_sweeps,
    load_curves,
    load_runs,
)

CONTRACT_CURVES = curves_schema().names


def curve_rows(steps, loss=1.0, **extra):
    return [dict(step=s, tokens_seen=100 * s, flops=1e6 * s, val_loss=loss, train_loss=loss + 0.1,
                 lr=1e-3, timestamp=1.7e9 + s, **extra) for s in steps]


def run_row(status="completed", **overrides):
    row = dict(status=status, n_layer=2, d_model=64, n_heads=4, d_ff=256, n_ctx=64,
               vocab_size=256, non_embedding_params=98304, total_params=140000,
               dataset_tokens=200_000, regime="tokens", batch_tokens=2048, lr=1e-3, seed=0,
               zero_stage=0, precision="fp32", world_size=1, tokens_seen=200_000, steps=97,
               flops=1.2e11, wall_s=12.5, final_val_loss=2.5, best_val_loss=2.4, best_step=90)
    row.update(overrides)
    return row


def files_under(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file())


def test_layout_schema_version_no_temp_files_and_compaction_at_run_end(tmp_path):
    writer = TrialWriter(str(tmp_path), "sw", "trialA", attempt=0)
    writer.append_curves(curve_rows([0, 1]))
    writer.append_curves(curve_rows([2], val_loss_wiki=3.0))
    assert files_under(tmp_path / "sw") == [
        "curves/trial_id=trialA/part-0-000000.parquet",
        "curves/trial_id=trialA/part-0-000001.parquet",
    ]
    part = pq.read_table(tmp_path / "sw/curves/trial_id=trialA/part-0-000000.parquet")
    assert part.schema.metadata[b"scalesweep.schema_version"] == str(SCHEMA_VERSION).encode()
    assert part.schema.field("timestamp").type == pa.timestamp("us", tz="UTC")
    assert part["trial_id"].to_pylist() == ["trialA", "trialA"]
    before = load_curves(str(tmp_path), "sw")

    writer.write_run(run_row())  # the attempt ended: its curve parts merge into one
    assert files_under(tmp_path / "sw") == [
        "curves/trial_id=trialA/part-0-000002.parquet",
        "runs/trial_id=trialA/part-0.parquet",
    ]
    assert load_curves(str(tmp_path), "sw").equals(before)


def test_readers_see_each_row_once_while_compaction_is_half_done(tmp_path):
    writer = TrialWriter(str(tmp_path), "sw", "a")
    writer.append_curves(curve_rows([0, 1]))
    writer.append_curves(curve_rows([2]))
    parts = sorted((tmp_path / "sw/curves/trial_id=a").iterdir())
    saved = {p: p.read_bytes() for p in parts}
    writer.compact_curves()
    for path, data in saved.items():  # the old parts back: as if not yet deleted
        path.write_bytes(data)
    assert load_curves(str(tmp_path), "sw")["step"].to_pylist() == [0, 1, 2]
    assert load_curves(str(tmp_path), "sw", all_attempts=True)["step"].to_pylist() == [0, 1, 2]


def test_sequence_continues_for_a_recreated_writer(tmp_path):
    TrialWriter(str(tmp_path), "sw", "t1", attempt=1).append_curves(curve_rows([0]))
    TrialWriter(str(tmp_path), "sw", "t1", attempt=0).append_curves(curve_rows([0]))
    again = TrialWriter(str(tmp_path), "sw", "t1", attempt=1)
    again.append_curves(curve_rows([1]))
    again.append_curves(curve_rows([2]))
    names = files_under(tmp_path / "sw/curves/trial_id=t1")
    assert names == ["part-0-000000.parquet", "part-1-000000.parquet", "part-1-000001.parquet",
                     "part-1-000002.parquet"]


def test_curves_dedupe_keeps_latest_attempt_per_step(tmp_path):
    TrialWriter(str(tmp_path), "sw", "a", 0).append_curves(curve_rows(range(5), loss=3.0))
    retry = TrialWriter(str(tmp_path), "sw", "a", 1)
    retry.append_curves(curve_rows([3, 4], loss=2.0))
    retry.append_curves(curve_rows([4, 5], loss=1.0))  # same attempt, later part wins for step 4
    TrialWriter(str(tmp_path), "sw", "b", 0).append_curves(curve_rows([0], loss=9.0))

    table = load_curves(str(tmp_path), "sw")
    assert table.column_names == CONTRACT_CURVES
    got = list(zip(table["trial_id"].to_pylist(), table["step"].to_pylist(),
                   table["attempt"].to_pylist(), table["val_loss"].to_pylist()))
    assert got == [("a", 0, 0, 3.0), ("a", 1, 0, 3.0), ("a", 2, 0, 3.0), ("a", 3, 1, 2.0),
                   ("a", 4, 1, 1.0), ("a", 5, 1, 1.0), ("b", 0, 0, 9.0)]
    every = load_curves(str(tmp_path), "sw", all_attempts=True)
    assert list(zip(every["attempt"].to_pylist(), every["step"].to_pylist()))[5:] == [
        (1, 3), (1, 4), (1, 5), (0, 0)]  # one row per (trial, attempt, step): 5 + 3 + 1
    assert every.num_rows == 9
    # sweep=None: the path is the sweep directory itself
    assert load_curves(str(tmp_path / "sw")).equals(table)


def test_runs_one_row_per_trial_latest_attempt(tmp_path):
    TrialWriter(str(tmp_path), "sw", "a", 0).write_run(run_row("failed", error="OOM"))
    TrialWriter(str(tmp_path), "sw", "a", 1).write_run(run_row("completed", best_val_loss=2.0))
    TrialWriter(str(tmp_path), "sw", "b", 0).write_run(run_row("diverged", best_val_loss=None))
    runs = load_runs(str(tmp_path), "sw")
    assert runs.column_names[: len(RUNS_SCHEMA)] == RUNS_SCHEMA.names
    assert runs.select(["trial_id", "attempt", "status", "best_val_loss"]).to_pylist() == [
        {"trial_id": "a", "attempt": 1, "status": "completed", "best_val_loss": 2.0},
        {"trial_id": "b", "attempt": 0, "status": "diverged", "best_val_loss": None},
    ]
    every = load_runs(str(tmp_path), "sw", all_attempts=True, as_pandas=True)
    assert list(every["status"]) == ["failed", "completed", "diverged"]
    assert every["error"].tolist()[0] == "OOM"


def test_write_run_validates_status_and_required_columns(tmp_path):
    writer = TrialWriter(str(tmp_path), "sw", "a")
    with pytest.raises(ValueError, match="status 'finished' not in"):
        writer.write_run(run_row("finished"))
    with pytest.raises(ValueError, match=r"missing required columns \['d_model'\]"):
        writer.write_run({k: v for k, v in run_row().items() if k != "d_model"})
    with pytest.raises(ValueError, match=r"unknown columns \['val_los'\]"):
        writer.append_curves([dict(step=0, tokens_seen=0, flops=0.0, val_loss=1.0, val_los=2.0)])
    with pytest.raises(ValueError, match="trial_id"):
        TrialWriter(str(tmp_path), "sw", "a/../b")
    assert not (tmp_path / "sw" / "runs").exists()


def test_extra_evals_and_extra_run_columns_unify_with_nulls(tmp_path):
    first = TrialWriter(str(tmp_path), "sw", "a")
    first.append_curves(curve_rows([0]))
    first.append_curves(curve_rows([1], val_loss_wiki=4.5))
    first.write_run(run_row(d_ff_ratio=4.0, tag="demo"))
    TrialWriter(str(tmp_path), "sw", "b").write_run(run_row())
    curves = load_curves(str(tmp_path), "sw")
    assert curves["val_loss_wiki"].to_pylist() == [None, 4.5]
    runs = load_runs(str(tmp_path), "sw")
    assert runs["tag"].to_pylist() == ["demo", None]
    assert runs.schema.field("d_ff_ratio").type == pa.float64()


def test_unreadable_part_is_warned_and_skipped(tmp_path):
    writer = TrialWriter(str(tmp_path), "sw", "a")
    writer.append_curves(curve_rows([0]))
    writer.append_curves(curve_rows([1]))
    broken = tmp_path / "sw/curves/trial_id=a/part-0-000001.parquet"
    broken.write_bytes(broken.read_bytes()[:40])  # truncated, as after a crash mid-copy
    # a leftover hidden temp file from a crashed writer is not a part at all
    (tmp_path / "sw/curves/trial_id=a/.part-0-000002.parquet.tmp").write_bytes(b"junk")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = load_curves(str(tmp_path), "sw")
    assert table["step"].to_pylist() == [0]
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and str(broken) in messages[0]


def test_empty_or_missing_store_reads_as_empty_tables(tmp_path):
    curves = load_curves(str(tmp_path / "nothing"), "sw")
    runs = load_runs(str(tmp_path), "sw")
    assert curves.num_rows == 0 and curves.schema.equals(curves_schema())
    assert runs.num_rows == 0 and runs.column_names == RUNS_SCHEMA.names
    assert list_sweeps(str(tmp_path)) == []


def test_list_sweeps(tmp_path):
    TrialWriter(str(tmp_path), "beta", "a").append_curves(curve_rows([0]))
    TrialWriter(str(tmp_path), "alpha", "a").write_run(run_row())
    (tmp_path / "not-a-sweep").mkdir()
    assert list_sweeps(str(tmp_path)) == ["alpha", "beta"]
    assert list_sweeps(tmp_path.as_uri()) == ["alpha", "beta"]  # file:// URI via pyarrow.fs


def test_duckdb_polars_pandas_and_pyarrow_dataset_read_the_store(tmp_path):
    """The plain reads docs/architecture.md §3 names, on runs/ and curves/ as folders."""
    import duckdb
    import pandas as pd
    import polars as pl
    import pyarrow.dataset as ds

    for trial in ("t0", "t1"):
        TrialWriter(str(tmp_path), "sw", trial).append_curves(curve_rows([0, 1]))
        TrialWriter(str(tmp_path), "sw", trial).write_run(run_row())
    for kind, rows in (("curves", ["t0", "t0", "t1", "t1"]), ("runs", ["t0", "t1"])):
        folder = f"{tmp_path}/sw/{kind}"
        contract = CONTRACT_CURVES if kind == "curves" else RUNS_SCHEMA.names
        duck = duckdb.sql(f"SELECT * FROM read_parquet('{folder}/**/*.parquet', hive_partitioning=true) "
                          "ORDER BY trial_id")
        assert set(contract) <= set(duck.columns)
        assert [r[0] for r in duck.select("trial_id").fetchall()] == rows

        polars_df = pl.scan_parquet(f"{folder}/**/*.parquet", hive_partitioning=True).collect().sort("trial_id")
        assert set(contract) <= set(polars_df.columns)
        assert polars_df["trial_id"].cast(pl.String).to_list() == rows

        frame = pd.read_parquet(folder)  # hive partitions by default: the user report's read
        assert set(contract) <= set(frame.columns)
        assert sorted(frame["trial_id"].astype(str)) == rows

        hive = ds.HivePartitioning.discover(infer_dictionary=True)  # as pq.read_table discovers it
        dataset = ds.dataset(folder, format="parquet", partitioning=hive)
        assert sorted(dataset.to_table()["trial_id"].to_pylist()) == rows

    frame = load_curves(str(tmp_path), "sw", as_pandas=True)
    assert list(frame.columns) == CONTRACT_CURVES
    assert str(frame["timestamp"].dt.tz) == "UTC" and frame["step"].tolist() == [0, 1, 0, 1]
    assert load_runs(str(tmp_path), "sw").schema.field("trial_id").type == pa.string()  # the contract's type


OLD_STORE = Path(__file__).parent / "data" / "store_v1_string_trial_id"  # written by an earlier writer


def test_a_store_with_string_trial_ids_still_loads_and_compacts(tmp_path):
    import shutil

    runs, curves = load_runs(str(OLD_STORE), "tiny"), load_curves(str(OLD_STORE), "tiny")
    assert pq.read_schema(next(OLD_STORE.glob("tiny/runs/*/*.parquet"))).field("trial_id").type == pa.string()
    assert runs.schema == load_runs(str(OLD_STORE), "tiny").schema and runs.schema.field("trial_id").type == pa.string()
    assert runs["trial_id"].to_pylist() == ["t0", "t1"] and runs["final_val_loss"].to_pylist() == [2.5, 1.5]
    assert curves["trial_id"].to_pylist() == ["t0"] * 3 + ["t1"] * 3 and curves["step"].to_pylist() == [0, 1, 2] * 2
    # a new attempt written next to old parts: both read, and the store still loads as one table
    store = tmp_path / "store"
    shutil.copytree(OLD_STORE, store)
    writer = TrialWriter(str(store), "tiny", "t0", attempt=1)
    writer.append_curves(curve_rows([0]))
    writer.append_curves(curve_rows([1]))
    writer.write_run(run_row(final_val_loss=9.0))
    assert load_runs(str(store), "tiny")["final_val_loss"].to_pylist() == [9.0, 1.5]
    assert load_curves(str(store), "tiny", all_attempts=True).num_rows == 8


def test_writer_refuses_number_like_ids_that_hive_readers_would_retype(tmp_path):
    # DuckDB infers partition types; "00123" would come back as an integer and clash with the
    # string column inside the file.
    with pytest.raises(ValueError, match="bare number"):
        TrialWriter(str(tmp_path), "sw", "00123")
    assert os.listdir(tmp_path) == []


def test_part_deleted_under_a_reader_makes_it_list_again(tmp_path, monkeypatch):
    import pyarrow.fs as pafs

    import metrics.readers as store

    writer = TrialWriter(str(tmp_path), "sw", "a")
    writer.append_curves(curve_rows([0]))
    writer.append_curves(curve_rows([1]))
    real_list, listings = store.list_parts, []

    def stale_first_listing(fs, directory):
        infos = real_list(fs, directory)
        listings.append(directory)
        if len(listings) == 1:  # a part a compacting writer deleted after we listed it
            gone = f"{directory}/trial_id=a/part-0-000009.parquet"
            infos.append(pafs.FileInfo(gone, type=pafs.FileType.File))
        return infos

    monkeypatch.setattr(store, "list_parts", stale_first_listing)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a vanished part is not an unreadable one
        table = load_curves(str(tmp_path), "sw")
    assert table["step"].to_pylist() == [0, 1] and len(listings) == 2


def test_cluster_scale_integer_flops_are_stored_as_doubles(tmp_path):
    """A 1e9-parameter run on 2e10 tokens spends ~1.2e20 FLOPs: an int past 2**53 that Arrow
    will not put in a float64 column by itself. The writer must take it (trainer passes ints)."""
    flops = 6 * 10**9 * 2 * 10**10 + 7
    writer = TrialWriter(str(tmp_path), "big", "t0")
    writer.append_curves([dict(step=1, tokens_seen=2 * 10**10, flops=flops, val_loss=2.0, sweep="big", trial_id="t0")])
    writer.write_run(run_row(flops=flops, flops_6n=flops, tokens_seen=2 * 10**10))
    assert load_runs(str(tmp_path), "big").column("flops")[0].as_py() == pytest.approx(1.2e20)
    assert load_curves(str(tmp_path), "big").column("flops")[0].as_py() == pytest.approx(1.2e20)
    with pytest.raises(ValueError, match="trial_id"):
        writer.append_curves([dict(step=2, tokens_seen=1, flops=1, val_loss=1.0, trial_id="other")])


def test_family_and_loss_per_position_columns(tmp_path):
    """A runs row written before `family` reads as a transformer; an LSTM row needs no n_heads
    or d_ff, a transformer row still does; loss_per_position survives compaction beside a part
    written before it."""
    _write_bytes(tmp_path / "sw" / "runs" / "trial_id=bad" / "part-0.parquet",
                 _parquet_bytes(_good_run_table(family=None)))
    lstm = TrialWriter(str(tmp_path), "sw", "lstm")
    lstm.append_curves(curve_rows([0]))
    lstm.append_curves(curve_rows([1], loss_per_position=[2.0, 1.5, 1.25]))
    lstm.write_run(run_row(family="lstm", n_heads=None, d_ff=None, d_attn=None))
    with pytest.raises(ValueError, match=r"missing required columns \['n_heads', 'd_ff'\]"):
        TrialWriter(str(tmp_path), "sw", "t").write_run(run_row(family="transformer", n_heads=None, d_ff=None))
    runs = load_runs(str(tmp_path), "sw").to_pylist()
    assert [(r["trial_id"], r["family"], r["n_heads"]) for r in runs] == [("bad", "transformer", 4), ("lstm", "lstm", None)]
    curves = load_curves(str(tmp_path), "sw")
    assert curves["loss_per_position"].to_pylist() == [None, [2.0, 1.5, 1.25]]
    assert len(files_under(tmp_path / "sw" / "curves")) == 1  # compacted at write_run


# --------------------------------------------------------------------------------------------
# Unreadable parts: every kind is skipped and named, in every reader


def _good_run_table(**changes) -> pa.Table:
    """A runs part as TrialWriter writes it, with columns replaced or dropped (None)."""
    table = pa.Table.from_pylist([{**run_row(), "sweep": "sw", "trial_id": "bad", "attempt": 0}],
                                 schema=RUNS_SCHEMA)
    for name, value in changes.items():
        index = table.schema.get_field_index(name)
        table = table.remove_column(index)
        if value is not None:
            table = table.add_column(index, name, pa.array([value]))
    return table


def _with_version(table: pa.Table, version: bytes) -> pa.Table:
    return table.replace_schema_metadata({b"scalesweep.schema_version": version})


def _write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _parquet_bytes(table: pa.Table) -> bytes:
    import io

    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


BAD_RUN_PARTS = {
    # kind: (bytes of runs/trial_id=bad/part-0.parquet, words the reason must hold)
    "truncated": (lambda: _parquet_bytes(_good_run_table())[:60], "not a readable Parquet file"),
    "not parquet": (lambda: b'{"status": "completed"}\n', "not a readable Parquet file"),
    "empty file": (lambda: b"", "not a readable Parquet file"),
    "lr stored as a string": (lambda: _parquet_bytes(_good_run_table(lr="0.001")),
                              "column 'lr' is string, the contract says double"),
    "missing required column": (lambda: _parquet_bytes(_good_run_table(best_val_loss=1.0, status=None)),
                                "missing required columns ['status']"),
    "newer schema version": (lambda: _parquet_bytes(_with_version(_good_run_table(), b"99")),
                             "schema version 99"),
    "garbled schema version": (lambda: _parquet_bytes(_with_version(_good_run_table(), b"v2")),
                               "schema version b'v2' is not an integer"),
    "extra column of a conflicting type": (lambda: _parquet_bytes(_good_run_table().append_column("tag", pa.array([7]))),
                                           "column 'tag' is int64 here but string in most parts"),
}


@pytest.mark.parametrize("kind", sorted(BAD_RUN_PARTS))
def test_every_kind_of_unreadable_runs_part_is_named_and_skipped(tmp_path, kind):
    make, reason = BAD_RUN_PARTS[kind]
    TrialWriter(str(tmp_path), "sw", "a").write_run(run_row(tag="x"))
    TrialWriter(str(tmp_path), "sw", "b").write_run(run_row(tag="y", best_val_loss=2.0))
    bad = tmp_path / "sw/runs/trial_id=bad/part-0.parquet"
    _write_bytes(bad, make())

    skipped = []
    with pytest.warns(UnreadablePartWarning) as caught:
        runs = load_runs(str(tmp_path), "sw", skipped=skipped)
    assert runs["trial_id"].to_pylist() == ["a", "b"]  # the good parts are all there
    assert runs["tag"].to_pylist() == ["x", "y"]
    assert [(p.path, reason in p.reason) for p in skipped] == [(str(bad), True)], skipped
    assert [str(bad) in str(w.message) and reason in str(w.message) for w in caught] == [True]
    # reading only that trial's partition (as a retried trial does) skips it too, unless the
    # conflict was with other parts
    only_bad = []
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        alone = load_runs(str(tmp_path), "sw", trial_id="bad", skipped=only_bad)
    conflict_with_others = kind == "extra column of a conflicting type"
    assert alone.num_rows == int(conflict_with_others)
    assert [p.path for p in only_bad] == ([] if conflict_with_others else [str(bad)])


def test_unreadable_curve_parts_of_every_kind_are_named_and_skipped(tmp_path):
    TrialWriter(str(tmp_path), "sw", "a").append_curves(curve_rows([0, 1]))
    directory = tmp_path / "sw/curves/trial_id=b"
    good = pa.Table.from_pylist([{**curve_rows([5])[0], "timestamp": None, "sweep": "sw", "trial_id": "b",
                                  "attempt": 0}], schema=curves_schema())
    parts = {
        "part-0-000000.parquet": _parquet_bytes(good)[:50],
        "part-0-000001.parquet": b"",
        "part-0-000002.parquet": _parquet_bytes(good.set_column(
            good.schema.get_field_index("step"), "step", pa.array(["5"]))),
        "part-0-000003.parquet": _parquet_bytes(good.drop_columns(["val_loss"])),
        "part-0-000004.parquet": _parquet_bytes(_with_version(good, str(SCHEMA_VERSION + 1).encode())),
        "notes.parquet": _parquet_bytes(good),  # not a part name
    }
    for name, data in parts.items():
        _write_bytes(directory / name, data)
    skipped = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        curves = load_curves(str(tmp_path), "sw", skipped=skipped)
    assert curves["step"].to_pylist() == [0, 1]
    assert sorted(Path(p.path).name for p in skipped) == sorted(parts)
    assert sorted(w.message.part.path for w in caught) == sorted(p.path for p in skipped)
    assert all(w.message.part.path in str(w.message) for w in caught)


def test_compaction_keeps_the_parts_when_one_is_unreadable(tmp_path):
    writer = TrialWriter(str(tmp_path), "sw", "a")
    writer.append_curves(curve_rows([0]))
    writer.append_curves(curve_rows([1]))
    broken = tmp_path / "sw/curves/trial_id=a/part-0-000001.parquet"
    broken.write_bytes(b"not parquet")
    with pytest.warns(UserWarning, match="not compacting"):
        writer.write_run(run_row())
    assert files_under(tmp_path / "sw/curves") == ["trial_id=a/part-0-000000.parquet",
                                                    "trial_id=a/part-0-000001.parquet"]
    with pytest.warns(UnreadablePartWarning, match=str(broken)):
        assert load_curves(str(tmp_path), "sw")["step"].to_pylist() == [0]


def test_old_runs_parts_without_the_geometry_columns_still_read(tmp_path):
    old = _good_run_table(micro_batch_size=None, grad_accum_steps=None)
    assert "micro_batch_size" not in old.column_names
    _write_bytes(tmp_path / "sw/runs/trial_id=bad/part-0.parquet", _parquet_bytes(old))
    TrialWriter(str(tmp_path), "sw", "new").write_run(run_row(micro_batch_size=4, grad_accum_steps=2))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        runs = load_runs(str(tmp_path), "sw")
    assert runs.select(["trial_id", "micro_batch_size", "grad_accum_steps"]).to_pylist() == [
        {"trial_id": "bad", "micro_batch_size": None, "grad_accum_steps": None},
        {"trial_id": "new", "micro_batch_size": 4, "grad_accum_steps": 2}]


_EARLY_PREDICTION_COLUMNS = ["stop_reason", "planned_steps", "predicted_loss", "predicted_lo", "predicted_hi",
                             "predicted_level", "predicted_method"]


def test_a_version_1_store_without_the_early_prediction_columns_still_reads(tmp_path):
    """Schema version 1 (before early prediction) reads under today's reader: its early-stopped
    run keeps its status, and the columns added in version 2 read as nulls."""
    assert SCHEMA_VERSION == 2
    old = _good_run_table(status="early_stopped", **{c: None for c in _EARLY_PREDICTION_COLUMNS})
    old = _with_version(old, b"1")
    assert not set(_EARLY_PREDICTION_COLUMNS) & set(old.column_names)
    _write_bytes(tmp_path / "sw/runs/trial_id=bad/part-0.parquet", _parquet_bytes(old))
    TrialWriter(str(tmp_path), "sw", "new").write_run(run_row(
        "early_stopped", stop_reason="predicted_final", planned_steps=200, predicted_loss=2.3,
        predicted_lo=2.28, predicted_hi=2.32, predicted_level=0.9, predicted_method="power_law"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        runs = load_runs(str(tmp_path), "sw")
    rows = {r["trial_id"]: r for r in runs.to_pylist()}
    assert rows["bad"]["status"] == "early_stopped"
    assert [rows["bad"][c] for c in _EARLY_PREDICTION_COLUMNS] == [None] * 7
    assert [rows["new"][c] for c in _EARLY_PREDICTION_COLUMNS] == [
        "predicted_final", 200, 2.3, 2.28, 2.32, 0.9, "power_law"]
    new_part = next((tmp_path / "sw/runs/trial_id=new").glob("part-*.parquet"))
    assert pq.read_schema(new_part).metadata[b"scalesweep.schema_version"] == b"2"


def test_stop_reason_is_one_of_the_documented_reasons_and_only_for_early_stopped(tmp_path):
    writer = TrialWriter(str(tmp_path), "sw", "a")
    with pytest.raises(ValueError, match="stop_reason 'bored'"):
        writer.write_run(run_row("early_stopped", stop_reason="bored"))
    with pytest.raises(ValueError, match="stop_reason 'patience' needs status early_stopped"):
        writer.write_run(run_row("completed", stop_reason="patience"))
    assert not (tmp_path / "sw" / "runs").exists()
    writer.write_run(run_row("early_stopped", stop_reason="patience"))
    assert load_runs(str(tmp_path), "sw")["stop_reason"].to_pylist() == ["patience"]


def test_fit_and_online_readers_of_a_store_skip_an_unreadable_part(tmp_path):
    from fitting.data import load_fit_data
    from fitting.laws import get_law
    from orchestrator.active_search import ActiveSearcher
    from orchestrator.budget import BudgetLedger
    from orchestrator.grid import expand_grid
    from orchestrator.spec import load_spec
    from orchestrator.trial import TrialConfig

    for i, n in enumerate([1e5, 3e5, 1e6, 3e6]):
        TrialWriter(str(tmp_path), "sw", f"t{i}").write_run(
            run_row(non_embedding_params=int(n), best_val_loss=2 + 10 / n ** 0.3))
    bad = tmp_path / "sw/runs/trial_id=bad/part-0.parquet"
    _write_bytes(bad, _parquet_bytes(_good_run_table(lr="fast")))
    with pytest.warns(UnreadablePartWarning, match=str(bad)):
        data = load_fit_data(str(tmp_path / "sw"), law=get_law("kaplan_n"))
    assert len(data) == 4
    # The online fitter reads a store the way a sweep seeds it: the searcher's seed_from_store.
    spec = {"name": "sw", "storage": str(tmp_path), "corpus": {"source": "builtin", "tokenizer": "byte"},
            "axes": {"target_params": [2.5e4, 1e5], "aspect_ratio": 16, "head_dim": 16, "n_ctx": 64,
                     "dataset_tokens": [1e6], "batch_tokens": 2048},
            "search": {"kind": "grid"}, "budget": {"flops": 1e18}}
    searcher = ActiveSearcher(expand_grid(load_spec(spec)).trials, law="chinchilla",
                              settings=TrialConfig(sweep="sw", storage=str(tmp_path)),
                              ledger=BudgetLedger(limit_flops=1e18), max_concurrent=1)
    with pytest.warns(UnreadablePartWarning, match=str(bad)):
        assert searcher.seed_from_store() == 4
    assert sorted(searcher.fitter.run_ids) == ["t0", "t1", "t2", "t3"] and searcher.fitter.n_runs == 4
