"""Saving and loading: round trips (bitwise-identical scores), bad files, atomic saves."""

import json
import os

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

import lvmkit
from lvmkit import (
    BernoulliMixture,
    GaussianMixture,
    MixtureAnomalyDetector,
    PoissonMixture,
    load,
)
from lvmkit._persist import REGISTRY, ModelFileError, UnsavableError, read_header, register
from lvmkit.io import describe
from tests.conftest import blobs, quiet


@pytest.fixture(scope="module")
def X():
    return blobs(n=300, d=3, k=3)[0]


def _fitted_attrs(model):
    return {k: v for k, v in vars(model).items() if k.endswith("_") and not k.startswith("_")}


def assert_same_model(a, b, X):
    assert type(a) is type(b)
    assert a.get_params().keys() == b.get_params().keys()
    for name, value in a.get_params(deep=False).items():
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(value, b.get_params(deep=False)[name])
        elif not hasattr(value, "get_params"):
            assert value == b.get_params(deep=False)[name], name
    attrs_a, attrs_b = _fitted_attrs(a), _fitted_attrs(b)
    assert attrs_a.keys() == attrs_b.keys()
    for name, value in attrs_a.items():
        if isinstance(value, np.ndarray):
            assert value.dtype == attrs_b[name].dtype, name
            np.testing.assert_array_equal(value, attrs_b[name], err_msg=name)
        elif not hasattr(value, "get_params"):
            assert value == attrs_b[name], name
    # Bitwise identical scores, not merely close.
    sa, sb = a.score_samples(X), b.score_samples(X)
    assert sa.dtype == sb.dtype
    assert sa.tobytes() == sb.tobytes()


# ====================================================================== round trips
@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gaussian_round_trip_is_bitwise(tmp_path, X, covariance_type, dtype):
    model = quiet(
        GaussianMixture(
            3, covariance_type=covariance_type, dtype=dtype, n_init=2, random_state=0
        ).fit,
        X + 1e4,
    )  # shifted data: shift state matters
    path = model.save(tmp_path / "m.lvm")
    loaded = load(path)
    assert_same_model(model, loaded, X + 1e4)
    np.testing.assert_array_equal(model.predict_proba(X + 1e4), loaded.predict_proba(X + 1e4))
    np.testing.assert_array_equal(model.predict(X + 1e4), loaded.predict(X + 1e4))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_poisson_and_bernoulli_round_trip(tmp_path, dtype):
    rng = np.random.default_rng(1)
    counts = rng.poisson(rng.choice([1.0, 6.0], size=(200, 1)), size=(200, 4)).astype(float)
    bits = (rng.random((200, 6)) < rng.choice([0.2, 0.8], size=(200, 1))).astype(float)
    for cls, data in ((PoissonMixture, counts), (BernoulliMixture, bits)):
        model = quiet(cls(2, dtype=dtype, random_state=0).fit, data)
        loaded = load(model.save(tmp_path / f"{cls.__name__}.lvm"))
        assert_same_model(model, loaded, data)


def test_anomaly_detector_round_trip(tmp_path, X):
    detector = quiet(
        MixtureAnomalyDetector(GaussianMixture(2, random_state=0), contamination=0.05).fit, X
    )
    loaded = load(detector.save(tmp_path / "d.lvm"))
    assert isinstance(loaded.estimator, GaussianMixture)
    assert loaded.estimator.n_components == 2 and not hasattr(loaded.estimator, "weights_")
    assert loaded.threshold_ == detector.threshold_
    assert_same_model(detector.estimator_, loaded.estimator_, X)
    np.testing.assert_array_equal(detector.predict(X), loaded.predict(X))
    assert detector.score_samples(X).tobytes() == loaded.score_samples(X).tobytes()


def test_array_torch_dtype_and_feature_name_state_round_trip(tmp_path, X):
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    means_init = X[:3].copy()
    model = quiet(GaussianMixture(3, means_init=means_init, dtype=torch.float64).fit, frame)
    loaded = load(model.save(tmp_path / "m.lvm"))
    np.testing.assert_array_equal(loaded.means_init, means_init)
    assert loaded.dtype is torch.float64
    assert list(loaded.feature_names_in_) == ["a", "b", "c"]
    assert loaded.score_samples(frame).tobytes() == model.score_samples(frame).tobytes()
    assert isinstance(loaded.lower_bounds_, list)
    assert loaded.lower_bounds_ == model.lower_bounds_


def test_load_overrides_device_and_metadata_is_kept(tmp_path, X):
    model = quiet(GaussianMixture(2, random_state=0).fit, X)
    model.save(tmp_path / "m.lvm", metadata={"note": "hello", "columns": [0, 1, 2]})
    assert load(tmp_path / "m.lvm", device="cpu").device == "cpu"
    info = describe(tmp_path / "m.lvm")
    assert info["metadata"] == {"note": "hello", "columns": [0, 1, 2]}
    assert info["class"] == "GaussianMixture" and info["format_version"] == 1
    assert info["lvmkit_version"] == lvmkit.__version__
    assert info["tensors"]["means_"]["shape"] == [2, 3]


def test_registry_holds_every_estimator():
    for name in ("GaussianMixture", "PoissonMixture", "BernoulliMixture", "MixtureAnomalyDetector"):
        assert REGISTRY[name] is getattr(lvmkit, name)
    with pytest.raises(ValueError, match="already taken"):
        register(type("GaussianMixture", (), {}))


# ====================================================================== what cannot be saved
def test_unsavable_parameters_say_what_and_why(tmp_path, X):
    model = quiet(GaussianMixture(2, random_state=np.random.RandomState(0)).fit, X)
    with pytest.raises(
        UnsavableError,
        match=r"parameter 'random_state' is a .*RandomState.*"
        r"set_params\(random_state=0\)",
    ):
        model.save(tmp_path / "m.lvm")
    model.set_params(random_state=0, means_init=torch.nn.Linear(2, 2))
    with pytest.raises(
        UnsavableError, match=r"parameter 'means_init' is a torch.nn.*Linear.*never holds code"
    ):
        model.save(tmp_path / "m.lvm")
    assert not (tmp_path / "m.lvm").exists()


def test_unfitted_model_cannot_be_saved(tmp_path):
    with pytest.raises(ValueError, match="not fitted"):
        GaussianMixture(2).save(tmp_path / "m.lvm")


def test_save_into_missing_folder(tmp_path, X):
    model = quiet(GaussianMixture(1).fit, X)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        model.save(tmp_path / "nope" / "m.lvm")


# ====================================================================== bad files
@pytest.fixture
def saved(tmp_path, X):
    model = quiet(GaussianMixture(2, random_state=0).fit, X)
    return model.save(tmp_path / "m.lvm")


def _rewrite(path, change_meta=None, change_state=None, rehash=False):
    """Rewrite a model file with edited metadata/state (checksum left stale unless rehash)."""
    from lvmkit._persist import _digest

    header, state, raw = read_header(path)
    tensors = st_load(raw)
    meta = dict(header["__metadata__"])
    if change_state:
        change_state(state)
        meta["state"] = json.dumps(state, sort_keys=True)
    if change_meta:
        change_meta(meta)
    if rehash:
        meta["sha256"] = _digest(meta["state"], tensors)
    path.write_bytes(st_save(tensors, metadata=meta))


def test_flipped_tensor_byte_fails_the_checksum(saved):
    raw = bytearray(saved.read_bytes())
    raw[-5] ^= 0xFF
    saved.write_bytes(bytes(raw))
    with pytest.raises(ModelFileError, match="corrupted: its checksum"):
        load(saved)


def test_edited_hyperparameter_fails_the_checksum(saved):
    _rewrite(saved, change_state=lambda s: s["params"].update(n_components=3))
    with pytest.raises(ModelFileError, match="checksum"):
        load(saved)


@pytest.mark.parametrize("keep", [0.5, 0.9, 20, 5])
def test_truncated_file(saved, keep):
    raw = saved.read_bytes()
    n = int(len(raw) * keep) if isinstance(keep, float) else keep
    saved.write_bytes(raw[:n])
    with pytest.raises(ModelFileError, match="truncated|only 5 bytes"):
        load(saved)


def test_empty_file(tmp_path):
    (tmp_path / "e.lvm").write_bytes(b"")
    with pytest.raises(ModelFileError, match="not an lvmkit model file.*empty"):
        load(tmp_path / "e.lvm")


def test_trailing_garbage(saved):
    saved.write_bytes(saved.read_bytes() + b"junk")
    with pytest.raises(ModelFileError, match="unexpected bytes"):
        load(saved)


def test_not_a_model(tmp_path):
    (tmp_path / "data.csv").write_text("a,b\n1,2\n" * 10)
    with pytest.raises(
        ModelFileError,
        match="not an lvmkit model file .*not a safetensors file.*"
        "check you passed the model, not the data",
    ):
        load(tmp_path / "data.csv")
    (tmp_path / "w.safetensors").write_bytes(st_save({"w": torch.zeros(3)}))
    with pytest.raises(ModelFileError, match="without lvmkit's metadata"):
        load(tmp_path / "w.safetensors")
    with pytest.raises(FileNotFoundError, match="no such file"):
        load(tmp_path / "missing.lvm")
    with pytest.raises(ModelFileError, match="is a folder"):
        load(tmp_path)


def test_newer_format_version(saved):
    _rewrite(saved, change_meta=lambda m: m.update(format_version="2", lvmkit_version="9.0"))
    with pytest.raises(
        ModelFileError,
        match=r"format version 2, written by lvmkit 9\.0.*up to 1.*"
        r"Upgrade lvmkit",
    ):
        load(saved)


def test_unknown_class(saved):
    def rename(state):
        state["class"] = "NoSuchModel"
        state["module"] = "somewhere.else"

    _rewrite(saved, change_state=rename, rehash=True)
    with pytest.raises(ModelFileError, match="'NoSuchModel' is unknown.*upgrade lvmkit"):
        load(saved)


def test_file_is_safetensors_without_pickle(saved):
    raw = saved.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    meta = header["__metadata__"]
    assert meta["format"] == "lvmkit" and len(meta["sha256"]) == 64
    assert set(json.loads(meta["state"])) >= {"class", "params", "extra", "lvmkit_version"}
    assert b"\x80\x04\x95" not in raw and b"\x80\x05\x95" not in raw  # no pickle frames


# ====================================================================== atomic save
def test_interrupted_save_leaves_the_previous_file(tmp_path, X, monkeypatch):
    old = quiet(GaussianMixture(2, random_state=0).fit, X)
    path = old.save(tmp_path / "m.lvm")
    before = path.read_bytes()
    new = quiet(GaussianMixture(3, random_state=0).fit, X)

    def broken_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="No space left"):
        new.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert load(path).n_components == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.lvm"]  # no temporary file left


def test_save_replaces_and_keeps_permissions(tmp_path, X):
    model = quiet(GaussianMixture(2, random_state=0).fit, X)
    path = model.save(tmp_path / "m.lvm")
    os.chmod(path, 0o640)
    model.save(path)
    assert path.stat().st_mode & 0o777 == 0o640
    assert load(path).n_components == 2
