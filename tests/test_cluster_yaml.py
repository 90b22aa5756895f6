"""cluster.yaml must validate against the autoscaler's JSON schema that ships inside `ray`,
so a typo in a key fails CI instead of `ray up`."""

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


def _schema() -> dict:
    import ray.autoscaler

    return json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())


def _config() -> dict:
    return yaml.safe_load((REPO / "cluster.yaml").read_text())


def test_cluster_yaml_matches_rays_schema():
    jsonschema.validate(_config(), _schema())


def test_cluster_yaml_has_gpu_workers_and_a_cpu_head():
    config = _config()
    types = config["available_node_types"]
    assert types[config["head_node_type"]]["resources"] == {"CPU": 0}
    assert any(t["resources"].get("GPU", 0) >= 8 for t in types.values())
    assert any("127.0.0.1" in c for c in config["head_start_ray_commands"])


def test_a_typo_fails_the_schema():
    config = _config()
    config["available_node_types"]["gpu_p4d"]["max_worker"] = 3  # typo of max_workers
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(config, _schema())
