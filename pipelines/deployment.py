"""Where a scaled-out deployment's services are, read from the environment in one place.

Dagster-free. :class:`Deployment` holds what the Celery executor, its workers and Dagster's
PostgreSQL storage need to find each other; every host of a deployment (webserver, daemon,
run workers, Celery workers) gets the same variables, except ``GTZAN_HOST_NAME``.

==================================  ==============================  ===============================
variable                            default                         meaning
==================================  ==============================  ===============================
``GTZAN_BROKER_URL``                ``redis://127.0.0.1:6379/0``    Celery broker
``GTZAN_RESULT_BACKEND``            ``redis://127.0.0.1:6379/1``    Celery result backend
``GTZAN_POSTGRES_URL``              (unset)                         Dagster storage (``dagster.yaml``),
                                                                    ``postgresql+psycopg2://...``
``GTZAN_HOST_NAME``                 ``socket.gethostname()``        this host's name in step metadata
``GTZAN_CELERY_VISIBILITY_TIMEOUT`` ``3600``                        seconds before a lost step reruns
``GTZAN_ALLOWED_ROOTS``             ``$GTZAN_DATA_DIR``             where run config may point the
                                                                    resources (read by
                                                                    :class:`pipelines.settings.Settings`)
==================================  ==============================  ===============================

A step that a Celery worker received is acknowledged only when it ends (``task_acks_late``),
so when a worker host is lost mid-step, its step goes back to the queue once the broker's
visibility timeout has passed, and another worker runs it. The timeout must be longer than
the longest step: a step still running after it is handed to a second worker as well.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from typing import Any

#: Every environment variable this module reads, with its meaning.
ENV_VARS: dict[str, str] = {
    "GTZAN_BROKER_URL": "Celery broker of GTZAN_EXECUTOR=celery (default: redis://127.0.0.1:6379/0)",
    "GTZAN_RESULT_BACKEND": "Celery result backend of GTZAN_EXECUTOR=celery (default: redis://127.0.0.1:6379/1)",
    "GTZAN_POSTGRES_URL": "PostgreSQL URL (postgresql+psycopg2://user:password@host:5432/db) of Dagster's run, "
    "event-log and schedule storage, named by the deployment's dagster.yaml (deploy/dagster.yaml.in)",
    "GTZAN_HOST_NAME": "name of this host, recorded as worker_host in each step's metadata "
    "(default: the machine's host name)",
    "GTZAN_CELERY_VISIBILITY_TIMEOUT": "seconds after which the broker hands a step whose worker was lost to "
    "another worker; longer than the longest step (default: 3600)",
    "GTZAN_ALLOWED_ROOTS": "folders, separated by ':', that a run's config may point the audio path, store root, "
    "model root and report folder into; the folders of GTZAN_DIR, GTZAN_STORE_DIR, GTZAN_MODEL_DIR and "
    "GTZAN_REPORT_DIR are allowed too (default: $GTZAN_DATA_DIR)",
}

DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/0"
DEFAULT_RESULT_BACKEND = "redis://127.0.0.1:6379/1"
DEFAULT_VISIBILITY_TIMEOUT = 3600
#: Modules every Celery worker imports at start: the code location, so that a worker that
#: cannot load it fails at once rather than at its first step.
CELERY_INCLUDE = ("pipelines.definitions",)


def host_name(environ: dict[str, str] | None = None) -> str:
    """This host's name: ``$GTZAN_HOST_NAME``, else the machine's host name."""
    env = os.environ if environ is None else environ
    return env.get("GTZAN_HOST_NAME", "").strip() or socket.gethostname()


@dataclass(frozen=True)
class Deployment:
    """The services of a deployment and the name of the host this process runs on.

    Attributes
    ----------
    broker_url, result_backend : str
        Celery's broker and result backend.
    postgres_url : str or None
        Dagster's storage, when the instance keeps it in PostgreSQL.
    host_name : str
        This host's name.
    visibility_timeout : int
        Seconds after which an unacknowledged step is handed to another worker.
    """

    broker_url: str = DEFAULT_BROKER_URL
    result_backend: str = DEFAULT_RESULT_BACKEND
    postgres_url: str | None = None
    host_name: str = field(default_factory=socket.gethostname)
    visibility_timeout: int = DEFAULT_VISIBILITY_TIMEOUT

    def __post_init__(self) -> None:
        from feature_store.errors import ParameterError

        for name, var in (("broker_url", "GTZAN_BROKER_URL"), ("result_backend", "GTZAN_RESULT_BACKEND"),
                          ("postgres_url", "GTZAN_POSTGRES_URL")):
            value = getattr(self, name)
            if value is not None and "://" not in value:
                raise ParameterError(f"{var} must be a URL (scheme://...), got {value!r}")
        # dagster-postgres installs psycopg2, and SQLAlchemy 2.1 reads a bare postgresql:// as psycopg 3
        if self.postgres_url is not None and not self.postgres_url.startswith("postgresql+psycopg2://"):
            raise ParameterError(
                f"GTZAN_POSTGRES_URL must start with postgresql+psycopg2:// (the driver dagster-postgres installs), "
                f"got {self.postgres_url!r}"
            )
        if not isinstance(self.visibility_timeout, int) or self.visibility_timeout < 1:
            raise ParameterError(
                f"GTZAN_CELERY_VISIBILITY_TIMEOUT must be a positive integer, got {self.visibility_timeout!r}"
            )

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Deployment:
        """The deployment that the ``GTZAN_*`` variables of :data:`ENV_VARS` describe.

        Raises
        ------
        ParameterError
            If a URL has no scheme or the visibility timeout is not a positive integer.
        """
        from feature_store.errors import ParameterError

        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        timeout = get("GTZAN_CELERY_VISIBILITY_TIMEOUT") or str(DEFAULT_VISIBILITY_TIMEOUT)
        if not timeout.isdigit():
            raise ParameterError(f"GTZAN_CELERY_VISIBILITY_TIMEOUT must be a positive integer, got {timeout!r}")
        return cls(
            broker_url=get("GTZAN_BROKER_URL") or DEFAULT_BROKER_URL,
            result_backend=get("GTZAN_RESULT_BACKEND") or DEFAULT_RESULT_BACKEND,
            postgres_url=get("GTZAN_POSTGRES_URL"),
            host_name=host_name(env),
            visibility_timeout=int(timeout),
        )

    def env(self) -> dict[str, str]:
        """The ``GTZAN_*`` variables that give this deployment (:meth:`from_env` reads them back)."""
        env = {"GTZAN_BROKER_URL": self.broker_url, "GTZAN_RESULT_BACKEND": self.result_backend,
               "GTZAN_HOST_NAME": self.host_name, "GTZAN_CELERY_VISIBILITY_TIMEOUT": str(self.visibility_timeout)}
        if self.postgres_url is not None:
            env["GTZAN_POSTGRES_URL"] = self.postgres_url
        return env

    def celery_config(self) -> dict[str, Any]:
        """Config of dagster-celery's ``celery_executor``, and of its workers (``-y`` YAML).

        The executor (which sends steps) and the workers (which run them) must agree on it:
        the acknowledgement and the visibility timeout take effect in the workers.
        """
        return {
            "broker": self.broker_url,
            "backend": self.result_backend,
            "include": list(CELERY_INCLUDE),
            "config_source": {
                # acknowledge a step when it ends, so that a lost worker's step is redelivered
                "task_acks_late": True,
                "worker_prefetch_multiplier": 1,
                "broker_transport_options": {
                    "visibility_timeout": self.visibility_timeout,
                    # look for lost steps every few seconds (kombu's default sweep is ~100 s)
                    "unacked_restore_interval": max(1, min(10, self.visibility_timeout // 6)),
                    "unacked_restore_throttle": 1,
                    # dagster-celery's defaults, which this key would otherwise drop
                    "max_retries": 3,
                    "interval_start": 0,
                    "interval_step": 0.2,
                    "interval_max": 0.5,
                },
                "result_backend_transport_options": {"visibility_timeout": self.visibility_timeout},
            },
        }
