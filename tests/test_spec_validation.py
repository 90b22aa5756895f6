"""Issue 9 §2: every bad spec is rejected before Ray starts, naming the field; numbers in any YAML
spelling; duplicate keys; search.target; micro_batch_size; corpus sizes; resources; the CLI."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml

from orchestrator.cluster import unplaceable
from orchestrator.spec import validate_spec
from trainers.fields import SpecError
from orchestrator.spec_types import Resources
from tests.test_spec import good_spec, with_change
from trainers.config import TrainConfig, batch_geometry

REPO = Path(__file__).resolve().parents[1]


def write_yaml(tmp_path: Path, spec: dict, replace: dict[str, str] | None = None) -> Path:
    """The spec as a YAML file; `replace` edits the text (to write numbers as YAML would read them)."""
    text = yaml.safe_dump(spec, sort_keys=False)
    for old, new in (replace or {}).items():
        assert old in text, (old, text)
        text = text.replace(old, new)
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    return path


# -- numbers in any YAML spelling, at the trainer's own config boundary ---------------------------

def test_yaml_exponents_without_a_dot_reach_every_trial_as_floats(tmp_path):
    spec = with_change(good_spec(tmp_path), "trainer.weight_decay", "WD")
    spec["trainer"].update(peak_flops="PF", warmup_frac="WF", min_lr_ratio="MR")
    path = write_yaml(tmp_path, spec, {"WD": "1e-2", "PF": "1e12", "WF": "2e-2", "MR": "1e-1"})
    assert yaml.safe_load(path.read_text())["trainer"]["weight_decay"] == "1e-2"  # YAML's reading
    _, grid = validate_spec(path)
    for trial in grid.trials:
        config = trial.train_config
        assert (config.weight_decay, config.peak_flops, config.warmup_frac, config.min_lr_ratio) == (
            0.01, 1e12, 0.02, 0.1)
        assert all(isinstance(v, float) for v in (config.weight_decay, config.peak_flops))


def test_train_config_from_yaml_strings_coerces_and_names_bad_values():
    raw = {"shape": {"target_params": "2e4", "n_ctx": "64", "head_dim": 16, "aspect_ratio": "16"},
           "dataset_tokens": "2e5", "batch_tokens": "2048", "weight_decay": "1e-2", "max_steps": "1e2"}
    config = TrainConfig.from_dict(raw)
    assert (config.dataset_tokens, config.max_steps, config.weight_decay) == (200_000, 100, 0.01)
    assert config.shape.n_ctx == 64 and isinstance(config.max_steps, int)
    for key, value, message in [("grad_clip", "x", "grad_clip: must be a number"),
                                ("checkpoint_interval_s", "soon", "checkpoint_interval_s: must be a number"),
                                ("weight_decay", -1.0, "weight_decay: must be >= 0"),
                                ("warmup_frac", 1.0, "warmup_frac: must be in [0, 1)"),
                                ("seed", -1, "seed: must be an integer >= 0"),
                                ("max_steps", 2.5, "max_steps: must be a positive integer")]:
        with pytest.raises(ValueError, match="^" + re.escape(message)):
            TrainConfig.from_dict({**raw, key: value})
    with pytest.raises(ValueError, match=r"^shape\.n_layer: must be a positive integer"):
        TrainConfig.from_dict({**raw, "shape": {"n_layer": "two", "d_model": 32, "n_heads": 2, "d_ff": 64, "n_ctx": 64}})


@pytest.mark.parametrize("key,value,message", [
    ("grad_clip", "x", "trainer.grad_clip: must be a number, got 'x'"),
    ("checkpoint_interval_s", "soon", "trainer.checkpoint_interval_s: must be a number, got 'soon'"),
    ("weight_decay", -1.0, "trainer.weight_decay: must be >= 0, got -1.0"),
    ("min_lr_ratio", 2, "trainer.min_lr_ratio: must be in [0, 1], got 2"),
    ("min_delta", -0.1, "trainer.min_delta: must be >= 0"),
    ("peak_flops", 0, "trainer.peak_flops: must be a positive number"),
    ("eval_tokens", 0, "trainer.eval_tokens: must be a positive integer"),
])
def test_bad_trainer_values_name_the_field(tmp_path, key, value, message):
    with pytest.raises(SpecError) as err:
        validate_spec(with_change(good_spec(tmp_path), f"trainer.{key}", value))
    assert str(err.value).startswith(message), str(err.value)


def test_a_key_written_twice_is_refused(tmp_path):
    path = write_yaml(tmp_path, good_spec(tmp_path), {"  cut: cheapest_first": "  cut: error\n  cut: cheapest_first"})
    with pytest.raises(SpecError, match=r"^budget\.cut: written twice \(lines \d+ and \d+\)"):
        validate_spec(path)


def test_problems_of_every_section_are_reported_together(tmp_path):
    spec = with_change(good_spec(tmp_path), "trainer.weight_decay", -1)
    spec["axes"]["seeds"] = [-1]
    spec["resources"]["workers"] = 0
    spec["budget"]["cut"] = "random"
    with pytest.raises(SpecError) as err:
        validate_spec(spec)
    lines = str(err.value).splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "axes.seeds[0]", "trainer.weight_decay", "resources.workers", "budget.cut"], lines


# -- search.target, validated by the searcher's own interpreter -----------------------------------

@pytest.mark.parametrize("target,message", [
    ({"foo": 3}, "search.target.foo: unknown key"),
    ({"largest": 0}, "search.target.largest: must be a positive integer"),
    ({"points": "abc"}, "search.target.points: must be a non-empty list"),
    ({"points": [[1e6, "abc"]]}, "search.target.points[0][1]: must be a number"),
    ({"compute": -1}, "search.target.compute: must be a positive number"),
    ({"compute": 1e20, "largest": 3}, "search.target: give one of"),
    ({"compute": 1e20, "reference": {"E": 1.7}}, "search.target.reference.A: required"),
])
def test_bad_search_target_names_the_field(tmp_path, target, message):
    spec = with_change(good_spec(tmp_path), "search", {"kind": "active", "max_trials": 4, "target": target})
    with pytest.raises(SpecError) as err:
        validate_spec(spec)
    assert str(err.value).startswith(message), str(err.value)


def test_compute_target_for_the_kaplan_law_needs_its_own_reference(tmp_path):
    search = {"kind": "active", "max_trials": 4, "law": "kaplan", "target": {"compute": 1e20}}
    with pytest.raises(SpecError, match=r"^search\.target\.reference: required for law kaplan"):
        validate_spec(with_change(good_spec(tmp_path), "search", search))
    search["target"]["reference"] = {"N_c": 8.8e13, "alpha_N": 0.076, "D_c": 5.4e13, "alpha_D": 0.095}
    spec, _ = validate_spec(with_change(good_spec(tmp_path), "search", search))
    assert spec.search.target["compute"] == 1e20


# -- batch geometry: micro_batch_size is never clamped ---------------------------------------------

def test_micro_batch_larger_than_the_per_rank_batch_is_an_error(tmp_path):
    # batch_tokens 2048 / n_ctx 64 = 32 sequences; over 2 workers, 16 per rank.
    config = TrainConfig.from_dict({"shape": {"target_params": 2e4, "n_ctx": 64, "head_dim": 16, "aspect_ratio": 16},
                                    "dataset_tokens": 200_000, "batch_tokens": 2048, "micro_batch_size": 64})
    with pytest.raises(ValueError, match=r"^micro_batch_size: 64 does not divide the per-rank batch of 32"):
        batch_geometry(config, 1, 3000)
    spec = with_change(good_spec(tmp_path), "trainer.micro_batch_size", 32)
    validate_spec(spec)  # 32 of 32: fine on one worker
    spec["resources"]["workers"] = 2
    with pytest.raises(SpecError, match=r"^trainer\.micro_batch_size: \(trial \S+\) micro_batch_size: 32 does "
                                        r"not divide the per-rank batch of 16.*\(and 3 more trials\)"):
        validate_spec(spec)
    spec["trainer"]["micro_batch_size"] = 8
    assert batch_geometry(validate_spec(spec)[1].trials[0].train_config, 2, 3000).grad_accum_steps == 2


def test_batch_must_split_over_the_workers(tmp_path):
    spec = with_change(good_spec(tmp_path), "resources.workers", 3)
    with pytest.raises(SpecError, match=r"^axes\.batch_tokens: .*32 sequences, not divisible by world_size=3"):
        validate_spec(spec)


# -- the data: the corpus must hold D plus the validation split ------------------------------------

def small_corpus(tmp_path: Path, n_bytes: int) -> Path:
    path = tmp_path / "small.txt"
    path.write_bytes(bytes(32 + i % 90 for i in range(n_bytes)))
    return path


def test_dataset_tokens_larger_than_the_corpus_is_caught(tmp_path):
    spec = good_spec(tmp_path)
    spec["corpus"]["source"] = str(small_corpus(tmp_path, 300_000))  # byte tokenizer: 300 000 tokens
    spec["trainer"]["val_tokens"] = 8192
    spec["axes"]["dataset_tokens"] = [2e5, 8e5]
    with pytest.raises(SpecError) as err:
        validate_spec(spec)
    available = (300_000 // 4096 - 2) * 4096  # whole 4096-token blocks, less 2 for validation
    assert str(err.value).startswith(f"axes.dataset_tokens: (trial N2e4-ar16-hd16-c64-D8e5-B2048-s0) 800000 "
                                     f"must be in 1..{available}"), str(err.value)
    assert "(and 1 more trials)" in str(err.value)
    spec["axes"]["dataset_tokens"] = [2e5]
    assert len(validate_spec(spec)[1].trials) == 2
    spec["trainer"]["val_tokens"] = 300_000  # needs every block of the corpus
    with pytest.raises(SpecError, match=r"^trainer\.val_tokens: .*need fewer than all"):
        validate_spec(spec)


def test_extra_eval_sets_the_corpus_cannot_provide(tmp_path):
    spec = good_spec(tmp_path)
    spec["trainer"]["extra_evals"] = {"missing": str(tmp_path / "nope.txt"),
                                      "tiny": {"source": str(small_corpus(tmp_path, 40))}}
    with pytest.raises(SpecError) as err:
        validate_spec(spec)
    lines = str(err.value).splitlines()
    assert lines[0].startswith("trainer.extra_evals.missing.source: no files match"), lines
    assert lines[1].startswith("trainer.extra_evals.tiny: (trial"), lines
    assert "leaves no evaluation window in 40 tokens" in lines[1]
    spec["trainer"]["extra_evals"] = {"wide": {"source": "builtin", "tokenizer": "bpe:1000"}}
    with pytest.raises(SpecError, match=r"^trainer\.extra_evals\.wide: .*its vocabulary \(1000, bpe:1000\) is larger than the model's \(256\)"):
        validate_spec(spec)


def test_deferred_data_checks_still_check_everything_else(tmp_path):
    spec = with_change(good_spec(tmp_path), "corpus.source", "/cluster/only/*.jsonl")
    validate_spec(spec, check_corpus=False)
    spec["trainer"]["weight_decay"] = -1
    with pytest.raises(SpecError, match=r"^trainer\.weight_decay"):
        validate_spec(spec, check_corpus=False)


# -- resources against the cluster -----------------------------------------------------------------

def test_unplaceable_names_the_resource():
    two_cpus = [{"CPU": 2.0}]
    assert unplaceable(Resources(cpus_per_worker=2), two_cpus, where="m") is None
    assert unplaceable(Resources(cpus_per_worker=64), two_cpus, where="m").startswith(
        "resources.cpus_per_worker: 64 CPUs per rank, but no node has that many")
    assert unplaceable(Resources(gpus_per_worker=1), two_cpus, where="m").startswith(
        "resources.gpus_per_worker: 1 GPUs per rank")
    # two ranks of 1 CPU fit on 2 CPUs: the trial's driver reserves no CPU (issue 11)
    assert unplaceable(Resources(workers=2), two_cpus, where="m") is None
    assert unplaceable(Resources(workers=3), two_cpus, where="m").startswith("resources.workers:")
    assert unplaceable(Resources(workers=3), [{"CPU": 2.0}, {"CPU": 1.0}], where="m") is None
    assert unplaceable(Resources(workers=2, cpus_per_worker=1.5), [{"CPU": 2.0}, {"CPU": 1.0}],
                       where="m").startswith("resources.workers:")
    assert unplaceable(Resources(workers=3, gpus_per_worker=1), [{"CPU": 8, "GPU": 2}, {"CPU": 8, "GPU": 1}],
                       where="m") is None


def test_trial_requests_fit_the_ranks_alone():
    """Every resource request path agrees: ranks hold all CPUs/GPUs, a multi-worker trial's
    driver none (a token of Ray's memory resource, since Tune refuses an all-zero request)."""
    from orchestrator.cluster import max_concurrent_trials, trial_resources

    two = Resources(workers=2, cpus_per_worker=1)
    assert trial_resources(two)["CPU"] == 0 and trial_resources(two)["memory"] > 0
    assert trial_resources(Resources(cpus_per_worker=2, gpus_per_worker=0.5)) == {"CPU": 2, "GPU": 0.5}
    assert max_concurrent_trials(two, {"CPU": 2.0, "memory": 1e9}) == 1
    assert max_concurrent_trials(two, {"CPU": 5.0}) == 2
    assert max_concurrent_trials(Resources(gpus_per_worker=1), {"CPU": 8.0, "GPU": 3.0}) == 3


@pytest.mark.parametrize("resources,field", [({"cpus_per_worker": 64}, "resources.cpus_per_worker"),
                                             ({"gpus_per_worker": 64}, "resources.gpus_per_worker"),
                                             ({"workers": 4}, "resources.workers")])
def test_run_refuses_resources_no_node_can_hold_before_ray_starts(tmp_path, monkeypatch, resources, field):
    import ray

    from orchestrator.sweep import run_sweep

    def no_ray(*args, **kwargs):
        raise AssertionError("ray.init called for a spec that cannot run")

    monkeypatch.setattr(ray, "init", no_ray)
    spec = good_spec(tmp_path)
    spec["resources"].update(resources)
    with pytest.raises(SpecError, match=rf"^{field}: .*this machine"):
        run_sweep(spec, num_cpus=2)
    assert not (tmp_path / "store").exists()


def test_run_refuses_resources_the_connected_cluster_cannot_hold(tmp_path):
    import ray

    from orchestrator.sweep import run_sweep

    # address="local": a cluster of its own, never one another test (or process) left running.
    ray.init(address="local", num_cpus=1, include_dashboard=False, _node_ip_address="127.0.0.1")
    try:
        spec = with_change(good_spec(tmp_path), "resources.cpus_per_worker", 2)
        with pytest.raises(SpecError, match=r"^resources\.cpus_per_worker: 2 CPUs per rank.*the Ray cluster"):
            run_sweep(spec, address=ray.get_runtime_context().gcs_address)
        assert not (tmp_path / "store" / "t" / "tune").exists()  # no Tune work
    finally:
        ray.shutdown()


# -- the command line ------------------------------------------------------------------------------

def scalesweep(*args: str, cwd: Path, capsys) -> tuple[int, str, str]:
    """`scalesweep ARGS` run in `cwd` (the CLI's own main, in this process): (code, out, err)."""
    from scalesweep.cli import main

    here = os.getcwd()
    os.chdir(cwd)
    try:
        code = main(list(args))
    finally:
        os.chdir(here)
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_prints_one_line_per_problem_and_exits_2(tmp_path, capsys):
    spec = with_change(good_spec(tmp_path), "trainer.grad_clip", "GC")
    spec["search"] = {"kind": "active", "max_trials": 4, "target": {"foo": 3}}
    path = write_yaml(tmp_path, spec, {"GC": "x"})
    code, _, err = scalesweep("validate", str(path), cwd=tmp_path, capsys=capsys)
    assert code == 2
    assert err.splitlines() == [
        "scalesweep validate: error: trainer.grad_clip: must be a number, got 'x'",
        "scalesweep validate: error: search.target.foo: unknown key; allowed keys: largest, compute, "
        "points, reference, stop_when"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.yaml"]  # nothing created


@pytest.mark.parametrize("what", ["directory", "missing"])
def test_validate_a_directory_or_missing_file_is_one_line(tmp_path, what, capsys):
    target = tmp_path if what == "directory" else tmp_path / "nope.yaml"
    code, _, err = scalesweep("validate", str(target), cwd=tmp_path, capsys=capsys)
    assert code == 2 and len(err.splitlines()) == 1, err
    assert err.startswith(f"scalesweep validate: error: {target}: ")
    assert list(tmp_path.iterdir()) == []


def test_validate_defer_flag_on_a_cluster_only_corpus(tmp_path, capsys):
    example = REPO / "examples" / "kaplan_small.yaml"
    code, _, err = scalesweep("validate", str(example), cwd=tmp_path, capsys=capsys)
    assert code == 2 and err.startswith("scalesweep validate: error: corpus.source: no files match")
    assert "--defer-data-checks leaves this check to the trials" in err  # the way out is named
    code, out, err = scalesweep("validate", "--defer-data-checks", str(example), cwd=tmp_path, capsys=capsys)
    assert code == 0, err
    assert "40 trials" in out and "data checks deferred" in out


@pytest.mark.parametrize("command", [["train", "--target-params", "1e5", "--config"], ["demo", "--out", "OUT", "--spec"]])
def test_every_yaml_reader_refuses_a_key_written_twice(tmp_path, capsys, command):
    """Same kind as the spec's duplicate keys: the trainer's --config and demo's --spec too."""
    from scalesweep.cli import main

    path = tmp_path / "twice.yaml"
    path.write_text("dataset_tokens: 100000\nlr: 1e-3\nlr: 2e-3\n")
    argv = [str(tmp_path / "out") if a == "OUT" else a for a in command] + [str(path)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"scalesweep {command[0]}: error: lr: written twice (lines 2 and 3); keep one"]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("axes,message", [
    ({"target_params": 1e21}, "axes.target_params: target_params 1e+21 at aspect_ratio 16 asks for a model wider than"),
    ({"aspect_ratio": 1e-6}, "axes.target_params: target_params 20000 at aspect_ratio 1e-06 asks for a model deeper than"),
])
def test_an_absurd_shape_request_is_refused_at_once(tmp_path, axes, message):
    """The shape search scanned every width/depth up to the request: 1e21 took minutes and tens
    of GB (the spec fuzz test was OOM-killed at 24 GB in CI). Now a one-line error naming the axis."""
    spec = good_spec(tmp_path)
    for key, value in axes.items():
        spec = with_change(spec, f"axes.{key}", value)
    with pytest.raises(SpecError) as err:
        validate_spec(spec)
    assert str(err.value).startswith(message), str(err.value)
