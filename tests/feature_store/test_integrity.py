"""The checksums of feature_store.integrity, each against a known damage."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import polars as pl
import pytest

from feature_store import integrity
from feature_store.integrity import IntegrityError


def test_a_json_checksum_catches_a_changed_value_and_a_renamed_key(tmp_path):
    path = tmp_path / "registry.json"
    doc = integrity.with_checksum({"songs": 10, "params": {"n_mels": 128}})
    path.write_text(json.dumps(doc, indent=2))
    assert integrity.read_json(path) == doc
    path.write_text(json.dumps({**doc, "songs": 11}))
    with pytest.raises(IntegrityError, match=r"registry\.json fails its checksum: the file is damaged; repair it"):
        integrity.read_json(path)
    # one damaged byte in the key itself: the file would otherwise pass for one written before checksums
    renamed = {("checksun" if k == "checksum" else k): v for k, v in doc.items()}
    path.write_text(json.dumps(renamed))
    with pytest.raises(IntegrityError, match="fails its checksum"):
        integrity.read_json(path)
    path.write_text(json.dumps({"songs": 10}))  # written before checksums: read as it is
    assert integrity.read_json(path) == {"songs": 10}
    path.write_bytes(b'{"songs": 1\xff}')
    with pytest.raises(IntegrityError, match=r"registry\.json cannot be read"):
        integrity.read_json(path)
    with pytest.raises(FileNotFoundError):
        integrity.read_json(tmp_path / "absent.json")


def test_row_digests_name_the_first_damaged_clip(tmp_path):
    rows = np.arange(12, dtype=np.float32).reshape(3, 4)
    digests = integrity.row_digests(rows)
    integrity.check_rows(rows, digests, path=tmp_path / "mel.h5", array="mel", clip_ids=["a", "b", "c"])
    damaged = rows.copy()
    damaged.view(np.uint8)[1, 5] ^= 0x10  # one bit of the second row
    with pytest.raises(IntegrityError, match=r"mel\.h5: clip b \(mel\) fails its checksum"):
        integrity.check_rows(damaged, digests, path=tmp_path / "mel.h5", array="mel", clip_ids=["a", "b", "c"])


def test_archives_empty_foreign_or_damaged_are_named(tmp_path):
    path = tmp_path / "model.keras"
    path.write_bytes(b"")
    with pytest.raises(IntegrityError, match=r"model\.keras is empty \(0 bytes\)"):
        integrity.check_archive(path)
    path.write_bytes(b"not a zip file")
    with pytest.raises(IntegrityError, match="is not a readable archive"):
        integrity.check_archive(path)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("config.json", "{" + '"x": 1, ' * 200 + '"y": 2}')
    integrity.check_archive(path)
    data = bytearray(path.read_bytes())
    data[60] ^= 0x01  # inside the stored member's bytes
    path.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="config.json fails its CRC"):
        integrity.check_archive(path)


def test_parquet_pages_are_checked(tmp_path):
    path = tmp_path / "index.parquet"
    frame = pl.DataFrame({"clip_id": [f"c{i}" for i in range(2000)], "row": np.arange(2000)})
    integrity.write_parquet(frame, path)
    assert integrity.read_parquet(path).equals(frame)
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0x40
    path.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match=r"index\.parquet"):
        integrity.read_parquet(path)
