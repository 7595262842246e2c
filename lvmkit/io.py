"""Loading saved models: ``lvmkit.load(path)``.

Models are saved with ``model.save(path)`` (see :mod:`lvmkit._persist` for the file format: one
safetensors file with tensors, and JSON for the hyperparameters, the learned state and the lvmkit
version; no pickle, so loading never runs code from the file).
"""

from __future__ import annotations

from pathlib import Path

from lvmkit._persist import (
    FORMAT_VERSION,
    REGISTRY,
    ModelFileError,
    UnsavableError,
    describe,
    from_file,
)

__all__ = ["FORMAT_VERSION", "ModelFileError", "UnsavableError", "describe", "load", "save"]


def load(path, *, device=None):
    """Load a model saved by ``model.save(path)`` (or ``lvmkit fit ... -o path``).

    Parameters
    ----------
    path : str or Path
    device : str or torch.device, optional
        Override the saved ``device`` hyperparameter, e.g. ``'cpu'`` for a model fitted on a GPU.

    Returns the fitted estimator; its ``score_samples`` are identical to the saved model's.

    Raises :class:`ModelFileError` (a ``ValueError``) when the file is not an lvmkit model, was
    written in a newer format version, is truncated, fails its checksum or names an unknown
    class; ``FileNotFoundError`` when there is no such file.
    """
    import lvmkit  # noqa: F401  (registers every estimator lvmkit exports)

    return from_file(Path(path), device=device)


def save(model, path) -> Path:
    """``model.save(path)``, for symmetry with :func:`load`."""
    if not hasattr(model, "save") or type(model).__name__ not in REGISTRY:
        raise UnsavableError(
            f"save: a {type(model).__name__} cannot be saved by lvmkit; only lvmkit's estimators "
            "can (e.g. GaussianMixture)."
        )
    return model.save(path)
