"""Ray options for the tracker's actors: one public setting, checked, merged over the tracker's."""

from __future__ import annotations

import pytest

from tracker.actors import actor_options
from tracker.config import Config
from tracker.errors import ConfigError


def test_actor_options_are_read_from_the_environment_as_a_json_object() -> None:
    env = {"TRACKER_RAY_ACTOR_OPTIONS": '{"runtime_env": {"env_vars": {"A": "1"}}, "memory": 5}'}
    config = Config.from_env(env)
    assert config.ray_actor_options == {"runtime_env": {"env_vars": {"A": "1"}}, "memory": 5}


def test_actor_options_that_are_not_a_json_object_are_refused_naming_the_variable() -> None:
    with pytest.raises(ConfigError, match="TRACKER_RAY_ACTOR_OPTIONS='\\[1\\]'"):
        Config.from_env({"TRACKER_RAY_ACTOR_OPTIONS": "[1]"})
    with pytest.raises(ConfigError, match="TRACKER_RAY_ACTOR_OPTIONS='\\{no'"):
        Config.from_env({"TRACKER_RAY_ACTOR_OPTIONS": "{no"})


@pytest.mark.parametrize("name", ["name", "namespace", "lifetime", "max_restarts"])
def test_an_option_the_tracker_sets_itself_is_refused_naming_it(name: str) -> None:
    with pytest.raises(ConfigError, match=f"TRACKER_RAY_ACTOR_OPTIONS: '{name}' is set by"):
        Config(ray_actor_options={name: "x"}).validate()


def test_an_actors_options_are_the_trackers_with_the_operators_added() -> None:
    env = {"runtime_env": {"env_vars": {"AWS_ENDPOINT_URL": "http://127.0.0.1:9"}}}
    config = Config(namespace="shop", ray_actor_options={**env, "num_cpus": 0.5})
    options = actor_options("host-0", config)
    assert options["runtime_env"] == env["runtime_env"]
    assert options["num_cpus"] == 0.5  # the operator's, over the tracker's 0
    assert (options["name"], options["namespace"], options["lifetime"]) == (
        "host-0",
        "shop",
        "detached",
    )
    assert "runtime_env" not in actor_options("host-0", Config())
