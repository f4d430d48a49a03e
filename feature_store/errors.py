"""Exceptions raised by the feature store.

Modelled on librosa's ``ParameterError``: bad input raises one clear exception that says
what was wrong and which values would have been accepted.
"""

from __future__ import annotations


class GTZANError(Exception):
    """Base class for every error that this project raises on purpose."""


class ParameterError(GTZANError, ValueError):
    """A parameter or argument is invalid; the message names the accepted values."""


class AudioError(GTZANError):
    """An audio file cannot be decoded or is unusable; the file is quarantined, not fatal."""


class StoreError(GTZANError):
    """A store is missing, incomplete or was built with other parameters."""


class StoreLockedError(StoreError):
    """Another process is building the same store and the lock could not be taken in time."""


class WorkerDiedError(StoreError):
    """A worker process of a build died (killed, out of memory): nothing was published, and
    running the build again may well succeed."""
