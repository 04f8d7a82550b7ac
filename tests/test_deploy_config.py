"""The deployment files are checked by the same code Ray runs on them, without starting Ray.

`ray up` validates cluster.yaml with `prepare_config` + `validate_config` before it touches AWS,
and `serve deploy` parses deploy/serve_config.yaml with `ServeDeploySchema`; a file that passes
here gets past those steps. Serve ignores keys it does not know, so the tests also refuse any key
that is not a field of the schema, where a typo would otherwise be dropped silently.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import ray.autoscaler
import yaml
from pydantic import BaseModel
from ray.autoscaler._private.util import prepare_config, validate_config
from ray.serve._private import constants as serve_constants
from ray.serve.config import AutoscalingConfig
from ray.serve.schema import (
    DeploymentSchema,
    HTTPOptionsSchema,
    ServeApplicationSchema,
    ServeDeploySchema,
)

from tracker.config import Config
from tracker.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
CLUSTER_YAML = ROOT / "cluster.yaml"
SERVE_CONFIG = ROOT / "deploy" / "serve_config.yaml"
DEPLOY_FILES = (CLUSTER_YAML, SERVE_CONFIG)

SECRETS = (
    "TRACKER_ADMIN_TOKEN",
    "TRACKER_SECRET",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
)
DIRECT_INGRESS_ENV = ("RAY_SERVE_THROUGHPUT_OPTIMIZED", "RAY_SERVE_ENABLE_DIRECT_INGRESS")


def _load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict), f"{path.name}: expected a mapping at the top"
    return data


def _serve_app() -> dict[str, Any]:
    (app,) = _load(SERVE_CONFIG)["applications"]
    assert isinstance(app, dict)
    return app


def _env_vars() -> dict[str, str]:
    env_vars = _serve_app()["runtime_env"]["env_vars"]
    assert isinstance(env_vars, dict)
    return env_vars


def _unknown_keys(data: dict[str, Any], model: type[BaseModel]) -> set[str]:
    known = set(model.model_fields)
    known |= {f.alias for f in model.model_fields.values() if f.alias}
    return set(data) - known


def test_cluster_yaml_passes_the_validation_ray_up_runs_before_touching_aws() -> None:
    raw = _load(CLUSTER_YAML)
    schema_path = Path(ray.autoscaler.__file__).parent / "ray-schema.json"
    jsonschema.validate(raw, json.loads(schema_path.read_text(encoding="utf-8")))

    prepared = prepare_config(copy.deepcopy(raw))
    validate_config(prepared)

    assert prepared["provider"]["type"] == "aws"
    workers = prepared["available_node_types"]["tracker.worker"]
    assert 1 <= workers["min_workers"] <= workers["max_workers"]


def test_serve_config_passes_serve_deploy_schema_with_no_key_serve_would_ignore() -> None:
    raw = _load(SERVE_CONFIG)
    parsed = ServeDeploySchema.model_validate(raw)

    assert _unknown_keys(raw, ServeDeploySchema) == set()
    assert _unknown_keys(raw["http_options"], HTTPOptionsSchema) == set()
    for app in raw["applications"]:
        assert _unknown_keys(app, ServeApplicationSchema) == set()
        for deployment in app["deployments"]:
            assert _unknown_keys(deployment, DeploymentSchema) == set()
            autoscaling = deployment.get("autoscaling_config")
            if autoscaling is not None:
                AutoscalingConfig.model_validate(autoscaling)
                assert _unknown_keys(autoscaling, AutoscalingConfig) == set()
    assert parsed.http_options.host == "0.0.0.0"


def test_serve_config_deploys_the_tracker_app_with_its_ingress_at_the_root() -> None:
    app = ServeDeploySchema.model_validate(_load(SERVE_CONFIG)).applications[0]

    assert app.name == "tracker"
    assert app.import_path == "serve_app:app"
    assert app.route_prefix == "/"
    assert [d.name for d in app.deployments] == ["TrackerIngress"]


def test_the_configured_deployment_is_the_ingress_of_serve_app() -> None:
    serve_app = pytest.importorskip("serve_app")

    # Binding a deployment does not start Ray; the bound ingress carries its name.
    assert serve_app.app._bound_deployment.name == _serve_app()["deployments"][0]["name"]


def test_every_tracker_variable_in_the_deploy_files_is_a_config_field() -> None:
    known = {f"TRACKER_{field.name.upper()}" for field in dataclasses.fields(Config)}
    for path in DEPLOY_FILES:
        mentioned = set(re.findall(r"\bTRACKER_[A-Z0-9_]+\b", path.read_text(encoding="utf-8")))
        assert mentioned, f"{path.name} mentions no TRACKER_ variable"
        assert mentioned <= known, f"{path.name}: unknown {sorted(mentioned - known)}"
    assert set(_env_vars()) >= {"TRACKER_STORAGE", "TRACKER_PLACEMENT", "TRACKER_HOSTS"}


def test_the_serve_config_settings_make_a_valid_config() -> None:
    env_vars = _env_vars()
    config = Config.from_env({k: str(v) for k, v in env_vars.items()})

    assert config.storage == env_vars["TRACKER_STORAGE"]
    assert config.storage.startswith("s3://"), "a cluster needs storage shared by all nodes"
    assert config.placement == env_vars["TRACKER_PLACEMENT"]


def test_no_secret_is_written_into_the_deploy_files() -> None:
    assignment = re.compile(rf"\b({'|'.join(SECRETS)})\s*[:=]")
    for path in DEPLOY_FILES:
        found = assignment.findall(path.read_text(encoding="utf-8"))
        assert found == [], f"{path.name} sets {found}"
    for key in _env_vars():
        assert key not in SECRETS
        assert key.startswith(("TRACKER_", "AWS_")), f"unexpected env var {key}"


def _start_commands(cluster: dict[str, Any]) -> dict[str, str]:
    """The `ray start` line of the head and of the workers, by config key."""
    starts = {}
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        (starts[key],) = [cmd for cmd in cluster[key] if "ray start" in cmd]
    return starts


def test_every_ray_process_on_the_cluster_runs_serve_with_direct_ingress() -> None:
    constants_source = inspect.getsource(serve_constants)
    for name in DIRECT_INGRESS_ENV:
        assert f'"{name}"' in constants_source, f"Ray no longer reads {name}"

    for key, start in _start_commands(_load(CLUSTER_YAML)).items():
        exports = start.split("ray start", 1)[0]
        for name in DIRECT_INGRESS_ENV:
            assert f"{name}=1" in exports, f"{key}: {name} is not exported before ray start"


def test_serve_trusts_forwarded_client_addresses_from_where_port_8000_is_open() -> None:
    cluster = _load(CLUSTER_YAML)
    (rule,) = cluster["provider"]["security_group"]["IpPermissions"]
    assert (rule["FromPort"], rule["ToPort"]) == (8000, _load(SERVE_CONFIG)["http_options"]["port"])
    (allowed,) = [ip_range["CidrIp"] for ip_range in rule["IpRanges"]]

    for key, start in _start_commands(cluster).items():
        exports = start.split("ray start", 1)[0]
        assert f"FORWARDED_ALLOW_IPS={allowed};" in exports, f"{key} does not trust {allowed}"


def test_the_head_deploys_the_serve_config_the_cluster_ships() -> None:
    cluster = _load(CLUSTER_YAML)

    assert cluster["file_mounts"]["~/tracker"] == "."
    assert (
        cluster["head_start_ray_commands"][-1].count(
            "serve deploy ~/tracker/" + SERVE_CONFIG.relative_to(ROOT).as_posix()
        )
        == 1
    )


def test_the_commit_linger_is_read_from_the_environment_and_bounded() -> None:
    assert Config.from_env({"TRACKER_COMMIT_LINGER_MS": "2.5"}).commit_linger_ms == 2.5
    assert Config.from_env({"TRACKER_COMMIT_LINGER_MS": "0"}).commit_linger_ms == 0
    for bad in ("-1", "1000", "soon"):
        with pytest.raises(ConfigError, match="TRACKER_COMMIT_LINGER_MS"):
            Config.from_env({"TRACKER_COMMIT_LINGER_MS": bad})


def test_the_alarm_timeout_is_read_from_the_environment_and_must_be_positive() -> None:
    assert Config.from_env({}).alarm_timeout_s == 30
    assert Config.from_env({"TRACKER_ALARM_TIMEOUT_S": "2.5"}).alarm_timeout_s == 2.5
    for bad in ("0", "-1", "soon"):
        with pytest.raises(ConfigError, match="TRACKER_ALARM_TIMEOUT_S"):
            Config.from_env({"TRACKER_ALARM_TIMEOUT_S": bad})


def test_the_host_timeout_is_read_from_the_environment_and_bounded() -> None:
    assert Config.from_env({}).host_timeout_s == 30
    assert Config.from_env({"TRACKER_HOST_TIMEOUT_S": "2.5"}).host_timeout_s == 2.5
    for bad in ("0", "-1", "3601", "nan", "soon"):
        with pytest.raises(ConfigError, match="TRACKER_HOST_TIMEOUT_S"):
            Config.from_env({"TRACKER_HOST_TIMEOUT_S": bad})


@pytest.mark.parametrize(
    "key",
    [
        "TRACKER_SESSION_TIMEOUT_S",
        "TRACKER_ALARM_INTERVAL_S",
        "TRACKER_RETENTION_S",
        "TRACKER_PASSIVATE_AFTER_S",
        "TRACKER_COMPACT_INTERVAL_S",
        "TRACKER_COMPACT_LOG_BYTES",
    ],
)
def test_durations_and_sizes_must_be_positive(key: str) -> None:
    assert Config.from_env({key: "2"}) is not None
    for bad in ("0", "-5"):
        with pytest.raises(ConfigError, match=key):
            Config.from_env({key: bad})


@pytest.mark.parametrize("bad", ["inf", "-inf", "nan"])
def test_no_setting_takes_an_infinite_or_undefined_number(bad: str) -> None:
    for key in ("TRACKER_SESSION_TIMEOUT_S", "TRACKER_RATE_LIMIT", "TRACKER_ALARM_TIMEOUT_S"):
        with pytest.raises(ConfigError, match=key):
            Config.from_env({key: bad})


def test_the_open_requests_per_client_are_read_from_the_environment_and_not_negative() -> None:
    assert Config.from_env({}).open_requests_per_client == 32
    assert Config.from_env({"TRACKER_OPEN_REQUESTS_PER_CLIENT": "0"}).open_requests_per_client == 0
    for bad in ("-1", "many", "2.5"):
        with pytest.raises(ConfigError, match="TRACKER_OPEN_REQUESTS_PER_CLIENT"):
            Config.from_env({"TRACKER_OPEN_REQUESTS_PER_CLIENT": bad})
