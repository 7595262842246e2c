"""Saving fitted estimators: one safetensors file, tensors plus JSON, nothing executable.

A model file is a `safetensors <https://github.com/huggingface/safetensors>`_ file. Its tensors
are the estimator's learned arrays; its metadata holds one JSON document (the format name and
version, the lvmkit version, the class name, the hyperparameters from ``get_params()``, JSON-able
learned state) and a SHA-256 of that JSON and of every tensor's bytes, so a file changed after it
was saved is refused rather than silently mis-read. No pickle is ever written or read: loading a
file cannot run code from it.

How an estimator takes part
---------------------------
1. Inherit :class:`Persistent` (it adds ``save(path)``).
2. Implement the two hooks::

       def _get_state(self) -> tuple[dict[str, numpy.ndarray | torch.Tensor], dict]:
           # named tensors (learned arrays), and JSON-able extra state (numbers, strings,
           # lists, dicts; tuples, string arrays and torch dtypes are encoded too)
       def _set_state(self, tensors: dict, extra: dict) -> None:
           # restore them on an instance built from the saved hyperparameters

   Tensors come back with the type they were saved with (NumPy arrays as NumPy arrays, torch
   tensors as CPU torch tensors), bit for bit.
3. Register the class, once, where it is defined::

       from lvmkit._persist import Persistent, register

       @register
       class VAE(Persistent, BaseEstimator):
           ...

   ``lvmkit.load`` finds the class by its name in :data:`REGISTRY`. A class that is not yet
   registered when a file names it is looked up by importing the module recorded in the file,
   when that module is part of lvmkit (nothing outside lvmkit is ever imported by a load).

Hyperparameters are saved from ``get_params(deep=False)`` and passed back to ``__init__``. Values
that cannot be stored as JSON or tensors (a NumPy ``RandomState``, a custom ``torch.nn.Module``,
a function) make ``save`` raise :class:`UnsavableError`, naming the parameter and what to do.
Array-valued parameters (e.g. ``means_init``) and unfitted estimators as parameters (e.g. the
template of ``MixtureAnomalyDetector``) are stored. A fitted estimator held as learned state is
stored with :func:`get_nested` / :func:`set_nested`.

Saving is atomic: the file is written to a temporary file in the same folder, flushed, synced
and renamed over the target, so an interrupted save leaves any previous file intact.
"""

from __future__ import annotations

import hashlib
import json
import numbers
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

FORMAT = "lvmkit"
FORMAT_VERSION = 1

#: class name -> class, for every estimator that can be loaded. Fill it with :func:`register`.
REGISTRY: dict[str, type] = {}


class ModelFileError(ValueError):
    """A file that cannot be loaded as an lvmkit model (with the reason and what to try)."""


class UnsavableError(TypeError):
    """An estimator holds a value that a model file cannot store."""


def register(cls: type | None = None, *, name: str | None = None):
    """Class decorator: make ``cls`` loadable by ``lvmkit.load`` under ``name`` (its class name).

    Registering a different class under a name already taken is an error (two estimators would
    claim the same files).
    """

    def add(klass: type) -> type:
        key = name or klass.__name__
        previous = REGISTRY.get(key)
        if (
            previous is not None
            and previous is not klass
            and _qualname(previous) != _qualname(klass)
        ):
            raise ValueError(
                f"register: the name {key!r} is already taken by {_qualname(previous)}; "
                f"cannot register {_qualname(klass)} under it. Pass another name: "
                "@register(name='...')."
            )
        REGISTRY[key] = klass
        klass._persist_name = key
        return klass

    return add(cls) if cls is not None else add


def _qualname(klass: type) -> str:
    return f"{klass.__module__}.{klass.__qualname__}"


def learned_state(estimator, skip: tuple[str, ...] = ()) -> tuple[dict, dict]:
    """Every learned attribute of ``estimator`` (public, ending in ``_``, not in ``skip``):
    numeric arrays as tensors, the rest as JSON-able extra state (the usual ``_get_state``)."""
    tensors, extra = {}, {}
    for name, value in vars(estimator).items():
        if name.startswith("_") or not name.endswith("_") or name in skip:
            continue
        if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
            tensors[name] = value
        else:
            extra[name] = value
    return tensors, extra


class Persistent:
    """Mixin adding ``save(path)`` to an estimator that implements the state hooks."""

    _persist_name: str | None = None

    def _get_state(self) -> tuple[dict, dict]:
        """(named tensors, JSON-able extra state) of the fitted estimator."""
        raise NotImplementedError(f"{type(self).__name__} does not implement _get_state")

    def _set_state(self, tensors: dict, extra: dict) -> None:
        """Restore what :meth:`_get_state` returned."""
        raise NotImplementedError(f"{type(self).__name__} does not implement _set_state")

    def save(self, path, *, metadata: dict | None = None) -> Path:
        """Save the fitted model to ``path`` (one file; ``.lvm`` is the usual suffix).

        The file holds tensors (safetensors) and JSON only: the hyperparameters, the learned
        state and the lvmkit version. Load it with ``lvmkit.load(path)``; the loaded model gives
        identical ``score_samples``. The write is atomic: an interrupted save leaves any
        previous file at ``path`` intact. Returns the path written.

        ``metadata``: an optional JSON-able dict stored alongside (e.g. where the data came
        from); ``lvmkit.io.describe(path)['metadata']`` reads it back.
        """
        data = to_bytes(self, metadata=metadata)
        return write_atomic(Path(path), data)


# ====================================================================== encoding values
_MARKERS = (
    "__tensor__",
    "__tuple__",
    "__str_array__",
    "__torch_dtype__",
    "__torch_device__",
    "__estimator__",
    "__ndarray_scalar__",
)


def _hint(value) -> str:
    if isinstance(value, np.random.RandomState):
        return "Set it to an int seed or None before saving, e.g. model.set_params(random_state=0)."
    if isinstance(value, np.random.Generator):
        return "Set it to an int seed or None before saving."
    if isinstance(value, torch.nn.Module):
        return (
            "A model file never holds code. Use one of lvmkit's built-in architectures (chosen by "
            "name or size parameters), or save the module's weights yourself with "
            "torch.save(module.state_dict(), ...)."
        )
    if callable(value):
        return "A model file never holds code; replace the callable by one of the named options."
    return "Replace it with a number, string, list or array before saving."


def encode(value, where: str, tensors: dict, owner: str):
    """``value`` as JSON, moving arrays into ``tensors`` (under keys derived from ``where``)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, torch.dtype):
        return {"__torch_dtype__": str(value).removeprefix("torch.")}
    if isinstance(value, torch.device):
        return {"__torch_device__": str(value)}
    if isinstance(value, (np.ndarray, torch.Tensor)):
        if isinstance(value, np.ndarray) and value.dtype.kind in "OUS":
            items = value.ravel().tolist()
            if all(isinstance(item, str) for item in items):
                return {"__str_array__": items, "shape": list(value.shape)}
            raise UnsavableError(
                f"{owner}.save: {_where_label(where)} is an array of Python objects "
                f"({value.dtype}), which a "
                "model file cannot hold (tensors and JSON only, never pickled objects). "
                "Convert it to numbers or strings before saving."
            )
        if isinstance(value, np.ndarray) and value.dtype.kind not in "biuf":
            raise UnsavableError(
                f"{owner}.save: {_where_label(where)} has dtype {value.dtype}, which a model file "
                f"cannot hold; use a real or integer dtype."
            )
        key = where
        tensors[key] = value
        return {"__tensor__": key}
    if isinstance(value, tuple):
        return {
            "__tuple__": [encode(v, f"{where}[{i}]", tensors, owner) for i, v in enumerate(value)]
        }
    if isinstance(value, list):
        return [encode(v, f"{where}[{i}]", tensors, owner) for i, v in enumerate(value)]
    if isinstance(value, dict):
        bad = [k for k in value if not isinstance(k, str)]
        if bad or any(k in _MARKERS for k in value):
            raise UnsavableError(
                f"{owner}.save: {_where_label(where)} is a dict with key "
                f"{(bad or [next(k for k in value if k in _MARKERS)])[0]!r}; "
                "a model file stores dicts with string keys only (and not lvmkit's reserved "
                "'__...__' keys). Use string keys."
            )
        return {k: encode(v, f"{where}.{k}", tensors, owner) for k, v in value.items()}
    if isinstance(value, Persistent) and getattr(type(value), "_persist_name", None):
        # An estimator given as a hyperparameter: its class and its own hyperparameters.
        return {
            "__estimator__": type(value)._persist_name,
            "params": _encode_params(value, f"{where}.", tensors, owner),
        }
    raise UnsavableError(
        f"{owner}.save: {_where_label(where)} is a "
        f"{type(value).__module__}.{type(value).__qualname__}, which a "
        "model file cannot hold (it stores tensors and JSON only, never pickled Python objects). "
        + _hint(value)
    )


def decode(value, tensors: dict):
    """Inverse of :func:`encode`."""
    if isinstance(value, list):
        return [decode(v, tensors) for v in value]
    if not isinstance(value, dict):
        return value
    if "__tensor__" in value:
        return tensors[value["__tensor__"]]
    if "__tuple__" in value:
        return tuple(decode(v, tensors) for v in value["__tuple__"])
    if "__str_array__" in value:
        return np.asarray(value["__str_array__"], dtype=object).reshape(value["shape"])
    if "__torch_dtype__" in value:
        return getattr(torch, value["__torch_dtype__"])
    if "__torch_device__" in value:
        return torch.device(value["__torch_device__"])
    if "__estimator__" in value:
        cls = find_class(value["__estimator__"], None)
        return cls(**{k: decode(v, tensors) for k, v in value["params"].items()})
    return {k: decode(v, tensors) for k, v in value.items()}


def _encode_params(estimator, prefix: str, tensors: dict, owner: str) -> dict:
    params = estimator.get_params(deep=False)
    return {
        name: encode(value, f"{prefix}params.{name}", tensors, owner)
        for name, value in params.items()
    }


def _where_label(where: str) -> str:
    """'params.random_state' -> "parameter 'random_state'"; other places as they are."""
    if where.startswith("params."):
        return f"parameter {where[len('params.') :]!r}"
    if where.startswith("extra."):
        return f"learned attribute {where[len('extra.') :]!r}"
    return repr(where)


# ====================================================================== nested estimators
def get_nested(estimator, owner: str) -> dict:
    """A *fitted* estimator held as learned state, as a value ``_get_state`` may return in its
    extra state (its arrays are stored as tensors like any others)."""
    if not isinstance(estimator, Persistent) or not getattr(type(estimator), "_persist_name", None):
        raise UnsavableError(
            f"{owner}.save: the fitted {type(estimator).__name__} inside it cannot be saved (it is "
            "not an lvmkit estimator with save support). Use an lvmkit estimator."
        )
    tensors, extra = estimator._get_state()
    return {
        "class": type(estimator)._persist_name,
        "params": estimator.get_params(deep=False),
        "tensors": dict(tensors),
        "extra": extra,
    }


def set_nested(state: dict):
    """The fitted estimator that :func:`get_nested` described (after loading)."""
    cls = find_class(state["class"], None)
    estimator = cls(**state["params"])
    estimator._set_state(state["tensors"], state["extra"])
    return estimator


# ====================================================================== the file
def _as_cpu_tensor(value, where: str, owner: str) -> tuple[torch.Tensor, str]:
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu").contiguous(), "torch"
    arr = np.asarray(value)
    if arr.dtype.kind not in "biuf":
        raise UnsavableError(
            f"{owner}.save: tensor {where!r} has dtype {arr.dtype}; a model file holds real, "
            "integer or boolean arrays only."
        )
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    return torch.from_numpy(np.array(arr, copy=True, order="C")), "numpy"


def _tensor_bytes(t: torch.Tensor) -> memoryview:
    return memoryview(t.reshape(-1).view(torch.uint8).numpy())


def _digest(state_json: str, tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256(state_json.encode("utf-8"))
    for name in sorted(tensors):
        t = tensors[name]
        h.update(f"\0{name}\0{str(t.dtype)}\0{tuple(t.shape)}\0".encode())
        h.update(_tensor_bytes(t))
    return h.hexdigest()


def to_bytes(estimator, metadata: dict | None = None) -> bytes:
    """The model file's bytes for ``estimator`` (see :meth:`Persistent.save`)."""
    from safetensors.torch import save as st_save

    from lvmkit import __version__

    owner = type(estimator).__name__
    name = getattr(type(estimator), "_persist_name", None)
    if name is None or REGISTRY.get(name) is not type(estimator):
        raise UnsavableError(
            f"{owner}.save: {owner} is not registered for saving (lvmkit.load could not find it "
            "again). Decorate the class with lvmkit._persist.register."
        )
    tensors: dict = {}
    params = _encode_params(estimator, "", tensors, owner)
    own_tensors, extra = estimator._get_state()
    extra_json = encode(extra, "extra", tensors, owner)
    overlap = set(own_tensors) & set(tensors)
    if overlap:
        raise UnsavableError(f"{owner}.save: tensor name(s) {sorted(overlap)} are used twice.")
    tensors.update(own_tensors)
    cpu, kinds, seen = {}, {}, set()
    for key, value in tensors.items():
        t, kind = _as_cpu_tensor(value, key, owner)
        if t.numel() and t.untyped_storage().data_ptr() in seen:
            t = t.clone()  # safetensors refuses tensors sharing memory
        if t.numel():
            seen.add(t.untyped_storage().data_ptr())
        cpu[key], kinds[key] = t, kind
    state = {
        "class": name,
        "module": type(estimator).__module__,
        "lvmkit_version": __version__,
        "params": params,
        "extra": extra_json,
        "own_tensors": sorted(own_tensors),
        "tensor_types": kinds,
        "metadata": metadata or {},
    }
    try:
        state_json = json.dumps(state, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise UnsavableError(
            f"{owner}.save: its state could not be written as JSON ({exc}). A _get_state hook "
            "returned a value that is not JSON-able."
        ) from None
    header_meta = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "lvmkit_version": __version__,
        "class": name,
        "state": state_json,
        "sha256": _digest(state_json, cpu),
    }
    return st_save(cpu, metadata=header_meta)


def write_atomic(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temporary file in the same folder, fsync, rename)."""
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise FileNotFoundError(
            f"{path}: cannot save there, the folder {folder} does not exist. Create it first "
            f"(mkdir -p {folder})."
        )
    if path.is_dir():
        raise IsADirectoryError(
            f"{path}: is a folder; give a file name such as {path / 'model.lvm'}."
        )
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp creates the file 0600; give it what a plain open() would (or the old file's).
        try:
            mode = path.stat().st_mode & 0o777
        except FileNotFoundError:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.chmod(tmp, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:  # make the rename itself durable (POSIX); harmless where unsupported
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass
    return path


def find_class(name: str, module: str | None, path=None) -> type:
    """The registered class ``name``, importing lvmkit's ``module`` when it is not yet known."""
    cls = REGISTRY.get(name)
    if cls is None and module and (module == "lvmkit" or module.startswith("lvmkit.")):
        import importlib

        try:
            importlib.import_module(module)
        except ImportError:
            pass
        cls = REGISTRY.get(name)
    if cls is None:
        where = f"{path}: " if path is not None else ""
        known = ", ".join(sorted(REGISTRY)) or "none"
        raise ModelFileError(
            f"{where}the model class {name!r} is unknown to this lvmkit (it knows {known}). The "
            "file was probably written by a newer lvmkit or by a plugin: upgrade lvmkit, or "
            "import the module that defines the class before loading."
        )
    return cls


def read_header(path) -> tuple[dict, dict, bytes]:
    """(safetensors header, lvmkit state, raw bytes) of a model file, with every check but the
    checksum; raises :class:`ModelFileError` naming what is wrong."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file. Check the path to the model file.")
    if path.is_dir():
        raise ModelFileError(
            f"{path}: is a folder, not a model file. Give the path to a .lvm file."
        )
    raw = path.read_bytes()
    not_model = (
        f"{path}: not an lvmkit model file ({{why}}). Model files are written by model.save(path) "
        "or 'lvmkit fit ... -o model.lvm'; check you passed the model, not the data."
    )
    if not raw:
        raise ModelFileError(not_model.format(why="it is empty, 0 bytes; an interrupted copy?"))
    if len(raw) < 9:
        raise ModelFileError(not_model.format(why=f"it has only {len(raw)} bytes"))
    n = int.from_bytes(raw[:8], "little")
    if raw[8:9] != b"{":
        raise ModelFileError(not_model.format(why="it is not a safetensors file"))
    if 8 + n > len(raw):
        raise ModelFileError(
            f"{path}: the model file is truncated: its header needs {8 + n} bytes but the file has "
            f"{len(raw)}. Save the model again or copy the complete file."
        )
    try:
        header = json.loads(raw[8 : 8 + n].decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ModelFileError(
            f"{path}: the model file is corrupted (its header is not valid JSON). Save the model "
            "again or copy an intact file."
        ) from None
    if not isinstance(header, dict):
        raise ModelFileError(not_model.format(why="its header is not a safetensors header"))
    meta = header.get("__metadata__") or {}
    if meta.get("format") != FORMAT:
        raise ModelFileError(
            not_model.format(
                why="a safetensors file without lvmkit's metadata: tensors saved by another "
                "program?"
            )
        )
    try:
        version = int(meta.get("format_version", ""))
    except ValueError:
        raise ModelFileError(
            f"{path}: the model file is corrupted (format version {meta.get('format_version')!r} "
            "is not a number). Save the model again."
        ) from None
    if version > FORMAT_VERSION:
        from lvmkit import __version__

        raise ModelFileError(
            f"{path}: the file has model format version {version}, written by lvmkit "
            f"{meta.get('lvmkit_version', '?')}; this lvmkit ({__version__}) reads format "
            f"versions up to {FORMAT_VERSION}. Upgrade lvmkit (pip install -U lvmkit) to load it."
        )
    ends = [
        info["data_offsets"][1]
        for key, info in header.items()
        if key != "__metadata__" and isinstance(info, dict) and "data_offsets" in info
    ]
    available = len(raw) - 8 - n
    needed = max(ends, default=0)
    if available < needed:
        raise ModelFileError(
            f"{path}: the model file is truncated: it holds {available} bytes of tensor data but "
            f"its header describes {needed}. Save the model again or copy the complete file."
        )
    if available > needed:
        raise ModelFileError(
            f"{path}: the model file is corrupted: {available - needed} unexpected bytes follow "
            "its tensor data. Save the model again or copy an intact file."
        )
    try:
        state = json.loads(meta["state"])
        state["class"], state["params"], state["extra"]  # noqa: B018 - presence check
    except (KeyError, TypeError, ValueError):
        raise ModelFileError(
            f"{path}: the model file is corrupted (its lvmkit state is missing or not valid "
            "JSON). Save the model again or copy an intact file."
        ) from None
    return header, state, raw


def from_file(path, device=None, with_state: bool = False):
    """The estimator saved at ``path`` (see ``lvmkit.load``); with ``with_state``, also the
    file's decoded JSON state (class, params, metadata, lvmkit version)."""
    from safetensors.torch import load as st_load

    header, state, raw = read_header(path)
    meta = header["__metadata__"]
    try:
        cpu = st_load(raw)
    except Exception as exc:  # safetensors raises its own error types on malformed data
        raise ModelFileError(
            f"{path}: the model file is corrupted ({type(exc).__name__}: {exc}). Save the model "
            "again or copy an intact file."
        ) from None
    if _digest(meta["state"], cpu) != meta.get("sha256"):
        raise ModelFileError(
            f"{path}: the model file is corrupted: its checksum (SHA-256) does not match its "
            "contents, so it changed after it was saved. Save the model again or copy an intact "
            "file."
        )
    cls = find_class(state["class"], state.get("module"), path)
    kinds = state.get("tensor_types", {})
    tensors = {k: (t.numpy() if kinds.get(k) == "numpy" else t) for k, t in cpu.items()}
    params = {k: decode(v, tensors) for k, v in state["params"].items()}
    if device is not None and "device" in params:
        params["device"] = device
    try:
        estimator = cls(**params)
    except TypeError as exc:
        raise ModelFileError(
            f"{path}: the saved hyperparameters do not fit this lvmkit's {cls.__name__} ({exc}); "
            f"the file was written by lvmkit {state.get('lvmkit_version', '?')}. Use that "
            "version, or refit the model."
        ) from None
    own = {name: tensors[name] for name in state.get("own_tensors", [])}
    estimator._set_state(own, decode(state["extra"], tensors))
    return (estimator, state) if with_state else estimator


def describe(path) -> dict:
    """What a model file holds, without building the model (for ``lvmkit info``)."""
    header, state, raw = read_header(path)
    meta = header["__metadata__"]
    tensors = {
        key: {"dtype": info.get("dtype"), "shape": info.get("shape")}
        for key, info in sorted(header.items())
        if key != "__metadata__"
    }
    return {
        "path": str(path),
        "bytes": len(raw),
        "format": meta.get("format"),
        "format_version": int(meta["format_version"]),
        "lvmkit_version": state.get("lvmkit_version"),
        "class": state["class"],
        "params": state["params"],
        "tensors": tensors,
        "metadata": state.get("metadata", {}),
        "sha256": meta.get("sha256"),
    }
