"""HDF5 access with the store's compression filter registered.

The ``mel`` datasets are compressed with Blosc (LZ4, byte shuffle), from ``hdf5plugin``:
on this project's 2-core VM it writes float32 clips several times faster than h5py's
built-in lzf for a store of about the same size, and reads them faster than uncompressed
ones (BENCHMARKS.md). A reader needs the filter registered, which importing ``hdf5plugin`` does;
open the files through :func:`h5py`, or ``import hdf5plugin`` before ``h5py.File`` in your
own code. Command-line tools (``h5ls``, ``h5dump``) find it with
``HDF5_PLUGIN_PATH=$(python -c "import hdf5plugin; print(hdf5plugin.PLUGIN_PATH)")``.
Stores written with lzf by older versions stay readable: lzf ships with h5py.

The chunks are compressed by :func:`chunk_codec` (numcodecs' Blosc, the same c-blosc 1.x
format the HDF5 filter reads, byte for byte) and written to the file as they are
(``write_direct_chunk``): by the build's worker processes when there are many of them, so
that the one process writing the files does not also do all the compression.
"""

from __future__ import annotations

from typing import Any

#: Compression of the mel datasets, as recorded in every HDF5 file's ``compression`` attribute.
COMPRESSION_NAME: str = "blosc:lz4:5:shuffle"


def h5py() -> Any:
    """The ``h5py`` module, with the Blosc filter registered."""
    import h5py as _h5py
    import hdf5plugin  # noqa: F401 - registers Blosc and the other filters with HDF5

    return _h5py


def compression() -> dict[str, Any]:
    """``create_dataset`` keyword arguments of :data:`COMPRESSION_NAME`."""
    import hdf5plugin

    return dict(hdf5plugin.Blosc(cname="lz4", clevel=5, shuffle=hdf5plugin.Blosc.SHUFFLE))


def chunk_codec() -> Any:
    """The numcodecs Blosc codec of :data:`COMPRESSION_NAME`: its output is an HDF5 chunk.

    The element size (shuffle's type size) is taken from each array encoded.
    """
    from numcodecs import Blosc

    return Blosc(cname="lz4", clevel=5, shuffle=Blosc.SHUFFLE)
