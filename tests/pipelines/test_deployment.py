"""The deployment's environment, the configured Celery executor, and the scale extra's pins."""

import importlib.metadata
import re
import tomllib
from pathlib import Path

import dagster as dg
import pytest

from feature_store.errors import ParameterError
from pipelines.deployment import DEFAULT_BROKER_URL, Deployment, host_name

REPO = Path(__file__).resolve().parents[2]


def test_from_env_reads_every_variable():
    d = Deployment.from_env({
        "GTZAN_BROKER_URL": "redis://10.1.0.1:6379/0",
        "GTZAN_RESULT_BACKEND": "redis://10.1.0.1:6379/1",
        "GTZAN_POSTGRES_URL": "postgresql+psycopg2://gtzan@10.1.0.1:5432/dagster",
        "GTZAN_HOST_NAME": " worker-2 ",
        "GTZAN_CELERY_VISIBILITY_TIMEOUT": "90",
    })
    assert d == Deployment(
        broker_url="redis://10.1.0.1:6379/0",
        result_backend="redis://10.1.0.1:6379/1",
        postgres_url="postgresql+psycopg2://gtzan@10.1.0.1:5432/dagster",
        host_name="worker-2",
        visibility_timeout=90,
    )
    with pytest.raises(AttributeError):
        d.broker_url = "redis://elsewhere"  # type: ignore[misc]


def test_defaults_and_host_name_fallback():
    import socket

    d = Deployment.from_env({"GTZAN_HOST_NAME": "  "})
    assert d.broker_url == DEFAULT_BROKER_URL == "redis://127.0.0.1:6379/0"
    assert d.postgres_url is None and d.visibility_timeout == 3600
    assert d.host_name == host_name({}) == socket.gethostname()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"GTZAN_BROKER_URL": "127.0.0.1:6379"}, "GTZAN_BROKER_URL must be a URL"),
        ({"GTZAN_RESULT_BACKEND": "redis"}, "GTZAN_RESULT_BACKEND must be a URL"),
        ({"GTZAN_POSTGRES_URL": "mysql://db/x"}, "GTZAN_POSTGRES_URL must start with postgresql\\+psycopg2://"),
        ({"GTZAN_POSTGRES_URL": "postgresql://db/x"}, "GTZAN_POSTGRES_URL must start with postgresql\\+psycopg2://"),
        ({"GTZAN_CELERY_VISIBILITY_TIMEOUT": "-5"}, "GTZAN_CELERY_VISIBILITY_TIMEOUT must be a positive integer"),
        ({"GTZAN_CELERY_VISIBILITY_TIMEOUT": "0"}, "GTZAN_CELERY_VISIBILITY_TIMEOUT must be a positive integer"),
    ],
)
def test_bad_values_are_one_line_errors(env, message):
    with pytest.raises(ParameterError, match=message):
        Deployment.from_env(env)


def test_celery_executor_is_configured_from_the_environment(monkeypatch):
    """The executor's Celery app gets the broker, backend and late acknowledgement of the env."""
    from dagster._core.execution.retries import RetryMode
    from dagster._core.system_config.objects import ResolvedRunConfig
    from dagster_celery.executor import CeleryExecutor
    from dagster_celery.make_app import make_app

    from pipelines.definitions import executor_def

    monkeypatch.setenv("GTZAN_BROKER_URL", "redis://10.9.0.1:6379/0")
    monkeypatch.setenv("GTZAN_RESULT_BACKEND", "redis://10.9.0.1:6379/1")
    monkeypatch.setenv("GTZAN_CELERY_VISIBILITY_TIMEOUT", "90")
    executor = executor_def("celery")
    assert executor.name == "celery"

    @dg.op
    def noop() -> None: ...

    @dg.job(executor_def=executor)
    def job() -> None:
        noop()

    config = dict(ResolvedRunConfig.build(job, {}).execution.execution_engine_config)
    config.pop("retries")
    assert config["include"] == ["pipelines.definitions"]
    app = make_app(CeleryExecutor(retries=RetryMode.ENABLED, **config).app_args())
    assert app.conf.broker_url == "redis://10.9.0.1:6379/0"
    assert app.conf.result_backend == "redis://10.9.0.1:6379/1"
    assert app.conf.task_acks_late is True
    assert app.conf.worker_prefetch_multiplier == 1
    assert app.conf.broker_transport_options["visibility_timeout"] == 90
    assert app.conf.broker_transport_options["unacked_restore_interval"] <= 10


def test_host_metadata_names_the_host_the_step_ran_on(monkeypatch, tiny_resources):
    from assets.ingest import audio_catalog

    monkeypatch.setenv("GTZAN_HOST_NAME", "worker-7")
    result = dg.materialize([audio_catalog], resources=tiny_resources)
    mat = result.asset_materializations_for_node("audio_catalog")[0]
    assert mat.metadata["worker_host"].value == "worker-7"


def test_scale_extra_is_installed_beside_dagster():
    """dagster-celery and dagster-postgres import, and pin exactly the installed dagster."""
    import dagster_celery  # noqa: F401
    import dagster_postgres  # noqa: F401

    dagster_version = importlib.metadata.version("dagster")
    for dist in ("dagster-celery", "dagster-postgres"):
        pins = [r for r in importlib.metadata.requires(dist) or [] if re.match(r"dagster\s*==", r)]
        assert pins == [f"dagster=={dagster_version}"], (dist, pins)


def test_dagster_and_its_integrations_are_pinned_to_one_release():
    """dagster 1.N.M goes with the integration libraries 0.(N+16).M: one release, bumped together."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    reqs = project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]
    pins = dict(re.fullmatch(r"(dagster[\w-]*)(?:\[[\w,]+\])?==([\d.]+)", r).groups() for r in reqs
                if r.startswith("dagster"))
    major, minor, patch = pins["dagster"].split(".")
    assert major == "1"
    core = {"dagster", "dagster-webserver"}
    assert {name: v for name, v in pins.items() if name in core} == dict.fromkeys(core, pins["dagster"])
    integrations = {name: v for name, v in pins.items() if name not in core}
    assert set(integrations) >= {"dagster-celery", "dagster-postgres", "dagster-k8s"}
    assert set(integrations.values()) == {f"0.{int(minor) + 16}.{patch}"}


def test_readme_documents_every_deployment_variable():
    from pipelines.deployment import ENV_VARS

    section = (REPO / "README.md").read_text().split("## Running at scale", 1)[1].split("\n## ", 1)[0]
    rows = set(re.findall(r"^\| `(GTZAN_\w+)` \|", section, re.M))
    assert rows == set(ENV_VARS)
