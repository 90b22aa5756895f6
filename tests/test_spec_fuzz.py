"""Property test: a mutated spec is either rejected with a SpecError naming a field on every line,
or fully valid (every trial's TrainConfig and batch geometry build), and a rejected spec never
reaches Ray (`run_sweep` raises the SpecError before `ray.init`)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.spec import validate_spec
from trainers.fields import SpecError
from tests.test_spec import with_change
from trainers.config import batch_geometry

TOP_KEYS = ("name", "storage", "corpus", "axes", "trainer", "resources", "search", "budget", "early_prediction")
# A problem line: a field path under a top-level key ("trainer.lr", "axes.seeds[1]", "budget").
FIELD_LINE = re.compile(r"^(%s)(\.[A-Za-z0-9_]+|\[\d+\])*: \S" % "|".join(TOP_KEYS))

PATHS = ["name", "storage", "corpus", "corpus.source", "corpus.tokenizer", "corpus.vocab_size",
         "axes.target_params", "axes.aspect_ratio", "axes.head_dim", "axes.n_ctx", "axes.dataset_tokens",
         "axes.regime", "axes.seeds", "axes.batch_tokens", "axes.lr", "axes.n_heads", "axes.colour",
         "trainer.zero_stage", "trainer.precision", "trainer.eval_every", "trainer.patience",
         "trainer.weight_decay", "trainer.warmup_frac", "trainer.min_lr_ratio", "trainer.grad_clip",
         "trainer.micro_batch_size", "trainer.val_tokens", "trainer.eval_tokens", "trainer.max_steps",
         "trainer.checkpoint_interval_s", "trainer.peak_flops", "trainer.seed", "trainer.extra_evals",
         "trainer.noise_scale_every", "early_prediction", "early_prediction.enabled",
         "early_prediction.min_fraction", "early_prediction.rel_ci", "early_prediction.rule",
         "resources.cpus_per_worker", "resources.gpus_per_worker", "resources.workers",
         "search", "search.kind", "search.max_trials", "search.target", "search.law",
         "budget", "budget.flops", "budget.cut", "budget.gpu_hours"]

VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 3), st.integers(-10**9, 10**9),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=6),
    st.sampled_from(["1e-2", "2e5", "-1", "x", "kaplan", "bpe:300", "1e12", "auto", "active", "dataset"]),
    st.lists(st.one_of(st.integers(-5, 10**6), st.text(max_size=3)), max_size=3),
    st.dictionaries(st.sampled_from(["foo", "largest", "compute", "points", "kind", "source"]),
                    st.one_of(st.integers(-2, 10**21), st.text(max_size=3)), max_size=2),
)


def tiny_spec(tmp: Path, corpus: Path) -> dict:
    return {
        "name": "fuzz", "storage": str(tmp / "store"),
        "corpus": {"source": str(corpus), "tokenizer": "byte"},
        "axes": {"target_params": [2e4], "aspect_ratio": 16, "head_dim": 16, "n_ctx": 64,
                 "dataset_tokens": [1e5, 2e5], "regime": "tokens", "seeds": [0], "batch_tokens": 2048},
        "trainer": {"zero_stage": 0, "precision": "fp32", "eval_every": 50, "val_tokens": 8192},
        "resources": {"cpus_per_worker": 1, "gpus_per_worker": 0, "workers": 1},
        "search": {"kind": "grid"},
        "budget": {"flops": 1e13, "cut": "cheapest_first"},
    }


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "text.txt"
    path.write_bytes(bytes(32 + (i * 7) % 90 for i in range(400_000)))
    return path


def assert_rejected_or_valid(spec_or_path, tmp_path: Path, monkeypatch) -> None:
    try:
        spec, grid = validate_spec(spec_or_path)
    except SpecError as err:
        lines = str(err).splitlines()
        assert lines and all(FIELD_LINE.match(line) or line.startswith(str(tmp_path)) for line in lines), lines
        import ray

        from orchestrator.sweep import run_sweep

        def no_ray(*args, **kwargs):
            raise AssertionError("a rejected spec reached ray.init")

        monkeypatch.setattr(ray, "init", no_ray)
        with pytest.raises(SpecError):
            run_sweep(spec_or_path)
        return
    for trial in grid.trials:  # valid: everything the trainer checks before training holds
        config = trial.train_config
        batch_geometry(config, spec.resources.workers, config.dataset_tokens // (config.shape.n_ctx + 1))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(changes=st.lists(st.tuples(st.sampled_from(PATHS), VALUES), min_size=1, max_size=3))
def test_mutated_specs_are_rejected_by_field_or_fully_valid(changes, corpus, tmp_path, monkeypatch):
    spec = tiny_spec(tmp_path, corpus)
    for path, value in changes:
        spec = with_change(spec, path, value)
    assert_rejected_or_valid(spec, tmp_path, monkeypatch)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_duplicated_yaml_line_is_rejected_or_harmless(data, corpus, tmp_path, monkeypatch):
    lines = yaml.safe_dump(tiny_spec(tmp_path, corpus), sort_keys=False).splitlines()
    index = data.draw(st.integers(0, len(lines) - 1))
    text = "\n".join(lines[: index + 1] + [lines[index]] + lines[index + 1:])
    path = tmp_path / "dup.yaml"
    path.write_text(text)
    if re.match(r"^\s*[A-Za-z_]+:", lines[index]):  # a mapping key written twice: always refused
        with pytest.raises(SpecError, match=r"written twice"):
            validate_spec(path)
    assert_rejected_or_valid(path, tmp_path, monkeypatch)
