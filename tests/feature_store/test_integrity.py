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
    path.write_text(json.dumps({"songs": 10}))  # no checksum: refused with the remedy, never taken for an older file
    with pytest.raises(IntegrityError, match=r"registry\.json has no checksum .*repair it with `gtzan features verify"):
        integrity.read_json(path)
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


# ---------------------------------------------------------------------------------------
# the bounded reader: sizes checked before anything is parsed or decompressed
# ---------------------------------------------------------------------------------------
def test_read_json_refuses_a_file_over_the_bound_unread(tmp_path):
    path = tmp_path / "metrics.json"
    with open(path, "wb") as fh:  # sparse: claims far more than MAX_JSON_BYTES without writing it
        fh.truncate(integrity.MAX_JSON_BYTES + 1)
    with pytest.raises(IntegrityError, match=rf"metrics\.json is {integrity.MAX_JSON_BYTES + 1} bytes, more than the "
                                             rf"{integrity.MAX_JSON_BYTES} a JSON file may have"):
        integrity.read_json(path)
    path.write_text("[" * 100_000 + "]" * 100_000)  # nested past the parser's recursion limit
    with pytest.raises(IntegrityError, match="cannot be read"):
        integrity.read_json(path)


def test_read_bounded_refuses_what_is_not_a_regular_file(tmp_path):
    import os

    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    with pytest.raises(IntegrityError, match="is not a regular file"):
        integrity.read_bounded(fifo, limit=10)  # would block forever on open/read without O_NONBLOCK
    assert integrity.read_bounded(_write(tmp_path / "a", b"12345"), limit=5) == b"12345"
    with pytest.raises(IntegrityError, match="is 6 bytes, more than the 5"):
        integrity.read_bounded(_write(tmp_path / "b", b"123456"), limit=5)


def _write(path, data):
    path.write_bytes(data)
    return path


def test_read_npz_reads_what_np_savez_writes(tmp_path):
    path = tmp_path / "probe.npz"
    np.savez(path, a=np.arange(6, dtype=np.float32).reshape(2, 3), b=np.float64(2.5))
    got = integrity.read_npz(path)
    np.testing.assert_array_equal(got["a"], np.arange(6, dtype=np.float32).reshape(2, 3))
    assert float(got["b"]) == 2.5 and got["a"].flags.writeable


def test_read_npz_refuses_a_zip_bomb_from_its_directory(tmp_path):
    path = tmp_path / "probe.npz"
    np.savez_compressed(path, w0=np.zeros(1 << 20, dtype=np.float32))  # 4 MiB of zeros in a few KB
    assert path.stat().st_size < 64 << 10
    with pytest.raises(IntegrityError, match=r"probe\.npz claims 1 arrays of \d+ bytes uncompressed, more than the "
                                             r"1048576 allowed"):
        integrity.read_npz(path, max_bytes=1 << 20)


def test_read_npz_refuses_a_header_that_claims_more_than_the_member(tmp_path):
    import io

    buf = io.BytesIO()
    np.save(buf, np.zeros(4, dtype=np.float32))
    member = bytearray(buf.getvalue())
    at = member.index(b"(4,)")
    member[at: at + 4] = b"(9,)"  # the header now claims 9 values; the member holds 4
    path = tmp_path / "rows.npz"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("x.npy", bytes(member))
    with pytest.raises(IntegrityError, match=r"its member x\.npy is not the array its header describes"):
        integrity.read_npz(path)
    path.write_bytes(b"")
    with pytest.raises(IntegrityError, match=r"rows\.npz is empty \(0 bytes\)"):
        integrity.read_npz(path)


def test_a_manifest_lists_every_file_and_catches_a_consistent_rewrite(tmp_path):
    from feature_store import manifest

    gen = tmp_path / "gen-1"
    gen.mkdir()
    integrity.write_parquet(pl.DataFrame({"clip_id": ["a", "b"], "label": [0, 1]}), gen / "index.parquet")
    (gen / "mel.h5").write_bytes(b"rows")
    manifest.write_manifest(gen)
    files = manifest.read_manifest(gen)
    assert sorted(files) == ["index.parquet", "mel.h5"] and files["mel.h5"]["bytes"] == 4
    manifest.check_files(gen, ["index.parquet"])
    assert manifest.verify_files(gen, expected=["index.parquet", "mel.h5"]) == []
    # a valid Parquet file, page checksums and all, with other labels: only the manifest knows
    integrity.write_parquet(pl.DataFrame({"clip_id": ["a", "b"], "label": [0, 0]}), gen / "index.parquet")
    integrity.read_parquet(gen / "index.parquet")
    with pytest.raises(IntegrityError, match=r"index\.parquet (does not match its sha256|is \d+ bytes, not)"):
        manifest.check_files(gen, ["index.parquet"])
    (gen / "extra.bin").write_bytes(b"x")
    problems = manifest.verify_files(gen)
    assert len(problems) == 2 and all("\n" not in p for p in problems)
    assert "index.parquet" in problems[0] and "extra.bin is not listed" in problems[1]
    (gen / "manifest.json").unlink()
    with pytest.raises(IntegrityError, match=r"has no manifest\.json \(written by an older version.*verify --repair"):
        manifest.check_files(gen, ["index.parquet"])


def test_a_manifest_never_names_a_path_outside_its_folder(tmp_path):
    import json as json_

    from feature_store import manifest

    gen = tmp_path / "gen-1"
    gen.mkdir()
    doc = integrity.with_checksum({"files": {"../../etc/passwd": {"bytes": 1, "sha256": "0" * 64}}})
    (gen / "manifest.json").write_text(json_.dumps(doc))
    with pytest.raises(IntegrityError, match="does not list files as a manifest does"):
        manifest.read_manifest(gen)


def test_read_parquet_refuses_a_file_whose_footer_claims_too_many_rows(tmp_path, monkeypatch):
    path = tmp_path / "index.parquet"
    integrity.write_parquet(pl.DataFrame({"x": list(range(100))}), path)
    monkeypatch.setattr(integrity, "MAX_PARQUET_ROWS", 99)
    with pytest.raises(IntegrityError, match=r"index\.parquet claims 100 rows"):
        integrity.read_parquet(path)
