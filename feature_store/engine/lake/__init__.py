"""The feature index as a Delta Lake table: one per view and clip length, with versions.

* :class:`~feature_store.engine.lake.table.IndexTable`: time travel (:meth:`scan` by version
  or time) and :meth:`version_digest`; its base :class:`~feature_store.engine.lake.writes.Writes`:
  atomic shard commits, once per task and once per shard however many builds race
  (:meth:`commit_shard`, :meth:`replace_shard`); its base :class:`~feature_store.engine.lake.upkeep.Upkeep`:
  :meth:`compact`, :meth:`history`, and :meth:`vacuum` and :meth:`referenced_object_keys`
  by one retention rule;
* :mod:`~feature_store.engine.lake.records`: the row schema and the typed records
  (:class:`Lineage`, :class:`CommitResult`, :class:`TableVersion`, :class:`VacuumReport`);
  row digests are stored as int64 bit-reinterpreted from uint64 (see there);
* :mod:`~feature_store.engine.lake.files`: a version's data files, written with page
  checksums under their digest's name and put create-only (local folder or S3), and read
  checked and bounded.

Rows are partitioned by ``label``, so that a query of some labels reads their files only.
"""

from __future__ import annotations

from feature_store.engine.lake.files import DataFile
from feature_store.engine.lake.records import CommitResult, Lineage, TableVersion, VacuumReport, from_stored, to_stored
from feature_store.engine.lake.table import IndexTable

__all__ = ["CommitResult", "DataFile", "IndexTable", "Lineage", "TableVersion", "VacuumReport", "from_stored",
           "to_stored"]
