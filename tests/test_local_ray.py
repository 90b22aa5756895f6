"""The private local Ray's start (orchestrator/local_ray.py): a start that fails is cleaned up and
tried once more, and a second failure is one line from the CLI, not Ray's traceback.

Ray's own failure here ("The current node timed out during startup", a bare Exception raised
when the raylet misses its 30 s window on an overloaded machine) cannot be produced on demand,
so `ray.init` raises it; every other part (the retry, the real start after it, the cleanup, the
CLI) is real."""

import argparse
import glob
import os

import pytest
import yaml

from orchestrator import local_ray

pytestmark = pytest.mark.slow  # real Ray starts and a CLI run: scheduled among the long files

TIMED_OUT = ("The current node timed out during startup. This could happen because some of the raylet "
             "failed to startup or the GCS has become overloaded.")


def _left_over_temp_dirs() -> set[str]:
    return set(glob.glob(os.path.join(local_ray._temp_root(), "ss-ray-*")))


def _failing_init(real_init, fail_times: int, calls: list):
    def init(*args, **kwargs):
        calls.append(kwargs.get("_temp_dir"))
        if len(calls) <= fail_times:
            raise Exception(TIMED_OUT)  # what ray._private.node raises
        return real_init(*args, **kwargs)
    return init


def test_a_start_that_times_out_is_cleaned_up_and_tried_once_more(monkeypatch, capfd):
    """...and the instance that starts keeps Ray's default token auth without Ray's every-run
    notice about it ("Set RAY_AUTH_MODE=disabled to opt out")."""
    import ray

    calls: list = []
    monkeypatch.setattr(ray, "init", _failing_init(ray.init, 1, calls))
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    private = local_ray.start_private(1, None, log_to_driver=False)
    try:
        assert len(calls) == 2 and ray.is_initialized()
        assert not os.path.exists(calls[0])  # the failed attempt's temp dir is gone
        assert private.temp_dir == calls[1] and os.path.isdir(calls[1])
        assert ray.cluster_resources().get("CPU") == 1
        assert os.environ.get("RAY_AUTH_MODE") == "token"  # Ray's default for a new local cluster, kept
    finally:
        private.stop()
    assert not os.path.exists(calls[1]) and not ray.is_initialized()
    out = capfd.readouterr()
    assert "Token authentication is enabled" not in out.out + out.err


def test_run_says_in_one_line_that_ray_did_not_start(tmp_path, monkeypatch, capsys):
    import ray

    from scalesweep.cli import main
    from tests.test_sweep import tiny_spec

    before = _left_over_temp_dirs()
    calls: list = []
    monkeypatch.setattr(ray, "init", _failing_init(ray.init, 99, calls))
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(tiny_spec(tmp_path / "store")))
    rc = main(["run", str(spec), "--num-cpus", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(calls) == local_ray.START_ATTEMPTS
    assert len(err) == 1 and err[0].startswith("scalesweep run: error: the local Ray did not start (2 tries; last: "
                                               "The current node timed out during startup."), err
    assert "Traceback" not in "\n".join(err)
    assert _left_over_temp_dirs() <= before  # nothing of either attempt is left
    assert not ray.is_initialized()


def test_other_runtime_errors_keep_their_traceback(monkeypatch):
    """Only the faults named in ENVIRONMENT_ERRORS are shortened: a bug stays visible."""
    from scalesweep import cli

    def boom(args):
        raise RuntimeError("a bug")

    class Parser:
        def parse_args(self, argv):
            return argparse.Namespace(func=boom, command="validate")

    monkeypatch.setattr(cli, "build_parser", Parser)
    with pytest.raises(RuntimeError, match="a bug"):
        cli.main(["validate"])

