"""How the assets are run: retries, the training pool, automation conditions.

* **Retries.** :data:`RETRY_POLICY` retries a step up to twice, with exponential backoff and
  jitter, for *transient* failures: a feature build locked by another build
  (``StoreLockedError``), a build whose worker process was killed (``WorkerDiedError``, the
  out-of-memory killer), an ``OSError`` on a busy disk. Errors that a retry cannot fix
  (bad parameters, a store that upstream never built) are raised through :func:`permanent`
  as ``dagster.Failure(allow_retries=False)``, so they fail at once with a clear message.
* **Training pool.** Training steps claim a slot of the :data:`TRAINING_POOL` pool. The
  project's instance (``deploy/dagster.yaml``) gives every pool one slot
  (``concurrency.pools.default_limit``), so at most one model trains at a time across all
  runs: one training step can use several GB.
* **Automation.** Ingest is started by the weekly schedule or the audio sensor. Splits and
  features follow their upstream eagerly; training waits for the weekly cron tick
  (:data:`WEEKLY_CRON`) and then runs once all its features have been refreshed since that
  tick; the report follows any model that changed.
* **Models of an index table version** (the opt-in ``<view>_table_models`` of
  :mod:`assets.table_models`): :data:`ON_DEP_DATA_VERSION_CHANGED` trains a cell when the
  *data version* of the table partition it reads changed, not when the table was merely
  materialized again: a re-publish that changes no row keeps the data version, and retrains
  nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import dagster as dg

from feature_store.errors import ParameterError, StoreError, StoreLockedError, WorkerDiedError

#: Monday 03:00: the weekly schedule refreshes ingest, and training follows this tick.
WEEKLY_CRON = "0 3 * * 1"
#: The concurrency pool of the training steps (one slot: see ``deploy/dagster.yaml``).
TRAINING_POOL = "training"

RETRY_POLICY = dg.RetryPolicy(max_retries=2, delay=5, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)

#: Splits and features: refresh as soon as any upstream changed (and fill new partitions).
EAGER = dg.AutomationCondition.eager()
#: Training: once per weekly tick, after every feature partition it reads was refreshed.
ON_WEEKLY_CRON = dg.AutomationCondition.on_cron(WEEKLY_CRON)
#: The report: whenever any model changed. Unlike ``eager()`` it neither waits for *every*
#: model partition to exist (the report covers the models trained so far) nor fires for a
#: report that is merely missing (a report of no models says nothing).
ON_ANY_MODEL_UPDATED = (
    dg.AutomationCondition.any_deps_updated().since_last_handled()
    & ~dg.AutomationCondition.any_deps_in_progress()
    & ~dg.AutomationCondition.in_progress()
).with_label("any model updated")

#: A check over every partition of its asset (``models_current``): re-evaluated once any of its
#: asset's or its additional deps' partitions changed, when none is being built.
ON_ANY_DEP_UPDATED = (
    dg.AutomationCondition.any_deps_updated().since_last_handled()
    & ~dg.AutomationCondition.any_deps_in_progress()
).with_label("any dep updated")

#: Models trained on an index table version: once the data version of a dependency's partition
#: changed since the previous tick (``data_version_changed`` compares the data version of the
#: partition's newest event after the tick's cursor with the one before it, so a
#: materialization that records the same data version is no change). Changes made by the run
#: that also trained the cell do not count (as in ``any_deps_updated``), nor does a dependency
#: that is only requested: its data version is known once it ran, on the next tick. The first
#: evaluation has no earlier tick to compare with: a table recorded before it trains nothing
#: until its data version changes (materialize such cells by hand, or backfill them).
ON_DEP_DATA_VERSION_CHANGED = (
    dg.AutomationCondition.any_deps_match(
        (dg.AutomationCondition.data_version_changed() & ~dg.AutomationCondition.executed_with_root_target())
        .with_label("data_version_changed_without_root")
    ).since_last_handled()
    & ~dg.AutomationCondition.any_deps_missing()
    & ~dg.AutomationCondition.any_deps_in_progress()
    & ~dg.AutomationCondition.in_progress()
).with_label("dep data version changed")


@contextlib.contextmanager
def permanent() -> Iterator[None]:
    """Turn errors that no retry can fix into ``dagster.Failure(allow_retries=False)``.

    ``ParameterError`` (bad configuration) and ``StoreError`` (missing upstream data) fail
    the step at once; ``StoreLockedError`` (a concurrent build), ``WorkerDiedError`` (a killed
    worker) and other errors stay retryable under :data:`RETRY_POLICY`.
    """
    try:
        yield
    except (StoreLockedError, WorkerDiedError):
        raise
    except (ParameterError, StoreError) as exc:
        raise dg.Failure(description=f"{type(exc).__name__}: {exc}", allow_retries=False) from exc
