"""Variational autoencoders (auto-encoding variational Bayes) and a deterministic autoencoder.

``VAE`` fits p(z) = N(0, I), p(x | z) = likelihood(decoder(z)) and the amortized posterior
q(z | x) = N(mu(x), diag(sigma(x)²)) by stochastic gradient ascent on the ELBO, with the
reparameterization trick and the KL term in closed form. ``Autoencoder`` trains the same networks
deterministically on the reconstruction log-likelihood alone, for comparison.

Data are (N, D) vectors or images, (N, H, W) or (N, C, H, W). Outputs that are data (``decode``,
``reconstruct``, ``sample``, ``interpolate``) come back in the input's sample shape.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
from pathlib import Path

import numpy as np
import torch
from scipy import sparse
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted
from torch import nn

from lvmkit import _validation as v
from lvmkit import distributed
from lvmkit._persist import Persistent, register
from lvmkit.families.bernoulli import sample_probs as draw_bernoulli
from lvmkit.fit.sgd import (
    TrainingDivergedError,
    copy_module,
    load_checkpoint,
    share_of_batch,
    train,
)
from lvmkit.models.vae import DeepLatentModel, make_likelihood
from lvmkit.nn.networks import ACTIVATIONS, build_decoder, build_encoder
from lvmkit.objectives.elbo import elbo_terms, elbo_terms_at, gaussian_kl_per_dim
from lvmkit.objectives.iwae import iwae_terms
from lvmkit.objectives.marginal import log_importance_weights_lse
from lvmkit.objectives.score_function import elbo_surrogate
from lvmkit.posteriors.amortized import GaussianEncoder
from lvmkit.posteriors.local import LocalGaussian, fit_local

LIKELIHOODS = ("bernoulli", "gaussian", "gaussian-learned", "poisson")
BINARIZE = (None, "dynamic", "static", "threshold")
NETWORK = v.any_of(
    v.Options(("mlp", "conv")),
    v._Predicate(lambda m: isinstance(m, nn.Module), ""),
    description="'mlp', 'conv' or a torch.nn.Module",
)
HIDDEN = v._Predicate(
    lambda h: (
        isinstance(h, (tuple, list))
        and all(isinstance(u, numbers.Integral) and not isinstance(u, bool) and u >= 1 for u in h)
    ),
    "a tuple of positive ints (the hidden layer widths)",
)
OPTIONAL_POSITIVE = v.any_of(
    v.NONE, v.Interval(0, None, open_low=True), description="None or a number > 0"
)

# Parameters that do not change what a resumed fit computes.
_NOT_FINGERPRINTED = ("epochs", "verbose", "checkpoint", "patience")


# The largest root-mean-square of a feature, in units of the fixed decoder noise, that a
# 'gaussian' likelihood trains well on; raw 8-bit pixels (about 150) are far beyond it.
FIXED_NOISE_RATIO = 20.0
# Beyond this root-mean-square a network's inputs and outputs saturate or overflow, whatever
# the likelihood (standardized data is about 1).
NETWORK_SCALE = 1e4


def _scale_note(X: torch.Tensor, likelihood: str, std: float, dtype) -> str | None:
    """Why a VAE will not train on X at its scale (None when it can); an error when X's squares
    overflow the compute dtype."""
    rms = float(X.reshape(X.shape[0], -1).to(torch.float64).square().mean(0).sqrt().max())
    limit = v.square_limit(dtype, X[0].numel())
    fix = "Standardize X (e.g. sklearn.preprocessing.StandardScaler)"
    if likelihood == "poisson":
        fix = (
            "Check that these are counts; large counts train better as log1p(X) with a Gaussian "
            "likelihood"
        )
    if not rms <= limit:
        raise ValueError(
            f"X's values reach a root-mean-square of {rms:.3g}: their squares overflow "
            f"{str(dtype).replace('torch.', '')} arithmetic. {fix}."
        )
    if likelihood == "gaussian" and rms > FIXED_NOISE_RATIO * std:
        return (
            f"X's values reach a root-mean-square of {rms:.3g}, {rms / std:.3g} times the fixed "
            f"decoder noise decoder_std={std:g}: the reconstruction term is then huge and training "
            f"diverges or learns nothing. {fix}, or use likelihood='gaussian-learned', which "
            "learns the noise."
        )
    if rms > NETWORK_SCALE:
        return (
            f"X's values reach a root-mean-square of {rms:.3g}: a neural network's inputs and "
            f"outputs this large saturate or overflow, and training diverges. {fix}."
        )
    return None


def _network_shape(input_shape) -> tuple:
    """What the networks see per sample: images (H, W) gain a channel axis, (1, H, W)."""
    return (1, *input_shape) if len(input_shape) == 2 else tuple(input_shape)


class _DeepLatentBase(Persistent, TransformerMixin, BaseEstimator):
    """What the VAE and the autoencoder share: data checks, networks, the training loop, outputs."""

    _stochastic_scores = False

    _constraints = {
        "latent_dim": v.Interval(1, None, integer=True),
        "encoder": NETWORK,
        "decoder": NETWORK,
        "hidden_sizes": HIDDEN,
        "activation": v.Options(tuple(ACTIVATIONS)),
        "likelihood": v.Options(LIKELIHOODS),
        "binarize": v.Options(BINARIZE),
        "decoder_std": v.Interval(0, None, open_low=True),
        "learned_std": v.Options(("per-feature", "global")),
        "epochs": v.Interval(0, None, integer=True),
        "batch_size": v.Interval(1, None, integer=True),
        "lr": v.Interval(0, None, open_low=True),
        "max_grad_norm": OPTIONAL_POSITIVE,
        "validation_fraction": v.Interval(0, 1),
        "patience": v.any_of(
            v.NONE, v.Interval(1, None, integer=True), description="None or an int >= 1"
        ),
        "checkpoint": v.any_of(
            v.NONE,
            v._Predicate(lambda p: isinstance(p, (str, Path)), ""),
            description="None or a file path",
        ),
        "warm_start": v.BOOL,
        "random_state": v.RANDOM_STATE,
        "device": v.DEVICE,
        "dtype": v.Options(("float32", "float64", torch.float32, torch.float64)),
        "verbose": v.Interval(0, None, integer=True),
    }
    _hints = {
        "likelihood": "Use 'bernoulli' for binary (or binarized) images, 'gaussian' for real "
        "values, 'poisson' for counts.",
        "binarize": "'dynamic' resamples the pixels as Bernoulli(x) every epoch (the standard "
        "protocol).",
    }

    # ------------------------------------------------------------------ checks
    def _validate_params(self) -> None:
        v.validate_params(self, self._constraints, self._hints)
        if self.validation_fraction >= 1:
            raise ValueError(
                f"{type(self).__name__}: validation_fraction must be in [0, 1); got "
                f"{self.validation_fraction}. Use 0.1 to hold out a tenth of the data."
            )
        if self.binarize is not None and self.likelihood != "bernoulli":
            raise ValueError(
                f"{type(self).__name__}: binarize={self.binarize!r} only applies to "
                f"likelihood='bernoulli' (got likelihood={self.likelihood!r}); use binarize=None."
            )

    def _check_data(self, X, *, reset: bool) -> torch.Tensor:
        """(N, *input_shape) tensor on the compute device, in the compute dtype, values checked."""
        name = type(self).__name__
        if not (
            isinstance(X, torch.Tensor)
            or hasattr(X, "iloc")
            or sparse.issparse(X)
            or isinstance(X, np.memmap)
        ):
            X = np.asarray(X)
        ndim = X.ndim
        if ndim in (1, 2):
            # Tables (and the 1-D mistake): scikit-learn's checks and
            # messages, sparse/complex included.
            X2 = v.check_X(self, X, reset=reset, min_samples=2 if reset else 1)
            shape = tuple(X2.shape)
            if reset and hasattr(self, "input_shape_"):
                del self.input_shape_
        elif ndim in (3, 4):
            shape = tuple(X.shape)
            flat = (
                X.reshape(shape[0], -1)
                if isinstance(X, torch.Tensor)
                else np.asarray(X).reshape(shape[0], -1)
            )
            if not reset and tuple(shape[1:]) != tuple(self.input_shape_):
                raise ValueError(
                    f"X has samples of shape {tuple(shape[1:])}, but {name} was fitted on "
                    f"samples of shape {tuple(self.input_shape_)} ({self.n_features_in_} "
                    "features); pass data of the same shape."
                )
            X2 = v.check_X(self, flat, reset=reset, min_samples=2 if reset else 1)
        else:
            raise ValueError(
                f"{name} expects X of shape (n_samples, n_features), (n_samples, H, W) or "
                f"(n_samples, C, H, W); got an array of shape {tuple(X.shape)}."
            )
        if not reset:
            shape = (shape[0], *self.input_shape_)
        if reset:
            self.input_shape_ = tuple(int(s) for s in shape[1:])
        device = self._device if reset else torch.device(self.device_)
        X = v.as_tensor(X2, device=device, dtype=self._dtype if reset else self.module_dtype_)
        self._check_values(X)
        likelihood = getattr(self, "likelihood", "gaussian")
        if reset and likelihood != "bernoulli":  # fitting: will the networks train at X's scale?
            self._scale_note = _scale_note(
                X, likelihood, getattr(self, "decoder_std", 1.0), self._dtype
            )
            if self._scale_note is not None:
                v.warn(self._scale_note, UserWarning)
        return X.reshape(X.shape[0], *_network_shape(self.input_shape_))

    def _check_values(self, X: torch.Tensor) -> None:
        name = type(self).__name__
        if self.likelihood == "bernoulli":
            if self.binarize is None:
                bad = (X != 0) & (X != 1)
                if bool(bad.any()):
                    row, col = (int(i) for i in torch.nonzero(bad)[0])
                    raise ValueError(
                        f"{name}: likelihood='bernoulli' needs 0/1 data, but X[{row}, {col}] = "
                        f"{float(X[row, col]):g}. A Bernoulli likelihood of grey-scale data is not "
                        f"a valid likelihood. Scale the data to [0, 1] and pick binarize='dynamic' "
                        f"(resampled each epoch, the standard protocol), 'static' or 'threshold'; "
                        f"or use likelihood='gaussian'."
                    )
            else:
                lo, hi = float(X.min()), float(X.max())
                if lo < 0 or hi > 1:
                    raise ValueError(
                        f"{name}: binarize={self.binarize!r} reads the data as probabilities in "
                        f"[0, 1], but X ranges over [{lo:g}, {hi:g}]. Scale it first (for 8-bit "
                        "images, X / 255; on the command line, --scale 255)."
                    )
        elif self.likelihood == "poisson":
            if bool((X < 0).any()) or bool((X != torch.round(X)).any()):
                raise ValueError(
                    f"{name}: likelihood='poisson' needs non-negative integer counts; X has "
                    "negative or fractional values. Use likelihood='gaussian' for real values."
                )

    # ------------------------------------------------------------------ networks
    def _encoder_outputs(self) -> int:
        raise NotImplementedError

    def _build(self, input_shape, seed: int) -> nn.Module:
        d = math.prod(input_shape)
        hidden = tuple(int(h) for h in self.hidden_sizes)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            enc = (
                copy_module(self.encoder)
                if isinstance(self.encoder, nn.Module)
                else build_encoder(
                    self.encoder, input_shape, self._encoder_outputs(), hidden, self.activation
                )
            )
            dec = (
                copy_module(self.decoder)
                if isinstance(self.decoder, nn.Module)
                else build_decoder(
                    self.decoder, input_shape, self.latent_dim, hidden, self.activation
                )
            )
            likelihood = make_likelihood(
                self.likelihood, d, std=self.decoder_std, learned_std=self.learned_std
            )
        module = nn.Module()
        module.encoder = self._wrap_encoder(enc)
        module.model = DeepLatentModel(dec, likelihood, self.latent_dim)
        return module.to(device=self._device, dtype=self._dtype)

    def _wrap_encoder(self, net: nn.Module) -> nn.Module:
        return net

    def _add_local(self, module: nn.Module, n_points: int) -> None:
        """Per-data-point variational parameters, for inference='svi' (none otherwise)."""

    # ------------------------------------------------------------------ fitting
    def _fingerprint(self, X: torch.Tensor) -> str:
        params = {
            k: (repr(type(val).__name__) if isinstance(val, nn.Module) else repr(val))
            for k, val in sorted(self.get_params().items())
            if k not in _NOT_FINGERPRINTED
        }
        flat = X.reshape(X.shape[0], -1).double()
        digest = hashlib.sha256(
            json.dumps(
                [params, list(X.shape), float(flat.sum()), float(flat.square().sum())]
            ).encode()
        ).hexdigest()
        return f"{type(self).__name__}:{digest[:16]}"

    def fit(self, X, y=None, *, resume: bool = False, callbacks=()):
        """Train on X; ``resume=True`` continues from ``checkpoint`` if it exists.

        ``callbacks``: functions ``cb(estimator, epoch, history)`` called after every epoch (a
        truthy return stops training). Raises ``TrainingDivergedError`` if the loss becomes NaN.

        Under ``torch.distributed`` (see :mod:`lvmkit.distributed`) every rank calls ``fit`` with
        the same ``X`` and settings; each batch of ``batch_size`` rows (the global batch) is
        split between the ranks and DistributedDataParallel averages the gradients, which gives
        the one-process run. Rank 0 writes the checkpoint; ``resume=True`` may use another
        number of ranks than the run that wrote it.
        """
        self._validate_params()
        self._dtype = v.resolve_dtype(self.dtype)
        self._device = v.resolve_device(self.device, X)
        if resume and self.checkpoint is None:
            raise ValueError(
                f"{type(self).__name__}.fit(resume=True) needs the checkpoint parameter: the file "
                "to resume from (for example checkpoint='run.ckpt')."
            )
        fitted = dict(self.__dict__) if self.warm_start and hasattr(self, "module_") else None
        self._scale_note = None
        try:
            result = self._fit(X, resume, callbacks, fitted)
            self.__dict__.pop("_scale_note", None)
            return result
        except BaseException as exc:
            if fitted is not None:  # a failed warm-started fit leaves the fitted model as it was
                self.__dict__.clear()
                self.__dict__.update(fitted)
            note = self.__dict__.pop("_scale_note", None)
            if isinstance(exc, TrainingDivergedError) and note is not None:
                raise TrainingDivergedError(f"{note} ({exc})") from None  # the cause first
            raise

    def _fit(self, X, resume, callbacks, fitted):
        comm = distributed.current(self._device)
        X = self._check_data(X, reset=True)
        previous = self._warm_start_state(fitted)
        fingerprint = self._fingerprint(X)
        if comm.active:
            self._check_ranks_agree(comm, fingerprint)
        if (
            previous is not None
        ):  # a fine-tune resumes only from a checkpoint of the same starting weights
            start = hashlib.sha256()
            for key, t in sorted(previous.items()):
                start.update(key.encode() + t.detach().cpu().contiguous().numpy().tobytes())
            fingerprint += f":start-{start.hexdigest()[:16]}"
        ckpt = Path(self.checkpoint) if self.checkpoint is not None else None
        seed = None
        if resume and ckpt is not None and ckpt.exists():
            seed = load_checkpoint(ckpt).get("seed")
        if seed is None and previous is not None:
            seed = fitted[
                "seed_"
            ]  # the fitted model's validation split, not one that mixes in its training rows
        if seed is None:
            seed = int(check_random_state(self.random_state).randint(2**31 - 1))

        # Hold out a validation split (a seeded permutation) for early stopping.
        n = X.shape[0]
        n_val = int(round(self.validation_fraction * n))
        if self.validation_fraction > 0 and not 1 <= n_val < n:
            raise ValueError(
                f"validation_fraction={self.validation_fraction} of {n} samples leaves "
                f"{n_val} for validation; use a larger fraction or more data."
            )
        order = torch.from_numpy(np.random.RandomState(seed).permutation(n)).to(X.device)
        X_train, X_val = X[order[n_val:]], (X[order[:n_val]] if n_val else None)

        # Binarization: static and threshold once; dynamic per batch. Validation data once, seeded.
        g_data = torch.Generator(device=X.device).manual_seed(seed + 1)
        prepare = None
        if self.binarize == "static":
            X_train = draw_bernoulli(X_train, g_data)
        elif self.binarize == "threshold":
            X_train = (X_train > 0.5).to(X_train.dtype)
        if X_val is not None:
            X_val = self._binarized(X_val, seed + 2)

        module = self._build(_network_shape(self.input_shape_), seed)
        self._add_local(module, X_train.shape[0])
        if previous is not None:
            self._load_warm_start(module, previous)
        generator = torch.Generator(device=X.device).manual_seed(seed)
        if self.binarize == "dynamic":

            def dynamic(xb):
                return draw_bernoulli(xb, generator)

            prepare = dynamic

        def evaluate(Xv):
            # Across ranks each 1000-row block is shared as a training batch is (the same draws
            # as one process), and the ranks' sums are added: every rank gets the same score.
            g = torch.Generator(device=Xv.device).manual_seed(seed + 3)
            total = 0.0
            for start in range(0, Xv.shape[0], 1000):
                rows = torch.arange(start, min(start + 1000, Xv.shape[0]), device=Xv.device)
                idx, share, weight = share_of_batch(rows, comm)
                with share:
                    scores = self._validation_scores(module, Xv[idx], g)
                total += float(scores.sum()) if weight > 0 else 0.0
            return comm.sum([total])[0] / Xv.shape[0]

        self.module_ = module
        result = train(
            module,
            lambda xb, progress, idx: self._batch_terms(module, xb, progress, generator, idx),
            X_train,
            X_val=X_val,
            evaluate=evaluate,
            prepare=prepare,
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            generator=generator,
            max_grad_norm=self.max_grad_norm,
            patience=self.patience if X_val is not None else None,
            checkpoint=ckpt,
            resume=resume,
            fingerprint=fingerprint,
            extra={"seed": seed},
            callbacks=callbacks,
            alternate=self._alternation(module),
            verbose=self.verbose,
            owner=self,
            description=type(self).__name__,
            comm=comm,
        )
        module.eval()
        self.seed_ = seed
        self.device_ = str(X.device)
        self.module_dtype_ = self._dtype
        self.history_ = result.history
        self.n_iter_ = result.epochs_run
        self.best_epoch_ = result.best_epoch
        self.stopped_early_ = result.stopped_early
        curve = result.history["val_elbo"] if X_val is not None else result.history["elbo"]
        self.lower_bounds_ = [float(c) for c in curve]
        if result.best_score is not None:
            self.lower_bound_ = float(result.best_score)
        else:
            self.lower_bound_ = self.lower_bounds_[-1] if self.lower_bounds_ else float("nan")
        return self

    def _check_ranks_agree(self, comm, fingerprint: str) -> None:
        """Across processes every rank must pass the same X and settings (the data-parallel
        sampler splits each batch of those rows); per-point SVI does not run across ranks."""
        if getattr(self, "inference", "amortized") == "svi":
            raise ValueError(
                "inference='svi' keeps per-point variational parameters and does not run across "
                "processes yet; use inference='amortized' under torch.distributed, or fit in one "
                "process (lvmkit.distributed.single_process())."
            )
        prints = comm.gather(fingerprint)
        odd = [r for r, f in enumerate(prints) if f != prints[0]]
        if odd:
            raise ValueError(
                f"rank {odd[0]} passed other data or settings than rank 0 to {type(self).__name__}"
                ".fit: under torch.distributed every rank passes the same X (all the rows; each "
                "rank trains on its share of every batch) and the same parameters."
            )

    def _warm_start_state(self, fitted):
        """With warm_start=True and a fitted model: the network weights to start from, once X's
        sample shape is checked against the fitted one."""
        if fitted is None:
            return None
        name = type(self).__name__
        shape = tuple(fitted["input_shape_"])
        if shape != tuple(self.input_shape_):
            raise ValueError(
                f"{name}(warm_start=True): the model was fitted on samples of shape {shape} but X "
                f"has samples of shape {tuple(self.input_shape_)}; pass data of the same shape, or "
                f"set warm_start=False to train new networks."
            )
        # Per-point variational parameters (inference='svi') belong to
        # the old data: start them afresh.
        return {
            k: t.detach()
            for k, t in fitted["module_"].state_dict().items()
            if not k.startswith("local.")
        }

    def _load_warm_start(self, module: nn.Module, state) -> None:
        mine = module.state_dict()
        differ = [
            f"{k} {tuple(t.shape)} fitted, {tuple(mine[k].shape) if k in mine else 'absent'} now"
            for k, t in state.items()
            if k not in mine or mine[k].shape != t.shape
        ]
        differ += [
            f"{k} absent fitted" for k in mine if k not in state and not k.startswith("local.")
        ]
        if differ:
            raise ValueError(
                f"{type(self).__name__}(warm_start=True): the fitted networks do not match the "
                f"parameters now set ({'; '.join(differ[:3])}); keep latent_dim, hidden_sizes, the "
                f"networks and the likelihood as fitted, or set warm_start=False."
            )
        with torch.no_grad():
            for k, t in state.items():
                mine[k].copy_(t)

    def _validation_scores(self, module, xb, generator) -> torch.Tensor:
        return self._sample_scores(module, xb, generator, 1)

    def _alternation(self, module):
        """Parameter groups stepped in turn (EM-style), or None for joint updates."""
        if getattr(self, "update", "joint") != "alternating":
            return None
        return [list(module.encoder.parameters()), list(module.model.parameters())]

    # ------------------------------------------------------------------ helpers
    def _binarized(self, X: torch.Tensor, seed: int) -> torch.Tensor:
        """The data the likelihood scores: a seeded Bernoulli draw for 'dynamic'/'static'."""
        if self.binarize in ("dynamic", "static"):
            return draw_bernoulli(X, torch.Generator(device=X.device).manual_seed(seed))
        if self.binarize == "threshold":
            return (X > 0.5).to(X.dtype)
        return X

    def _input(self, X, *, for_likelihood: bool = False) -> torch.Tensor:
        """X checked and on the device. The likelihood scores binary data (a seeded Bernoulli draw
        of grey-scale input); the encoder reads grey values as they are (their expectation), so a
        representation does not depend on a random draw or on which other rows are in the batch."""
        check_is_fitted(self, "module_")
        X = self._check_data(X, reset=False)
        if for_likelihood or self.binarize == "threshold":
            return self._binarized(X, self.seed_ + 4)
        return X

    def _batches(self, X: torch.Tensor, size: int = 1000):
        for start in range(0, X.shape[0], size):
            yield X[start : start + size]

    def _out(self, t: torch.Tensor, shape=None) -> np.ndarray:
        t = t.detach()
        if shape is not None:
            t = t.reshape(t.shape[0], *shape)
        return v.to_numpy(t)

    def _latent(self, Z) -> torch.Tensor:
        check_is_fitted(self, "module_")
        Z = v.as_tensor(Z, device=torch.device(self.device_), dtype=self.module_dtype_)
        if Z.ndim != 2 or Z.shape[1] != self.latent_dim:
            raise ValueError(
                f"Z must have shape (n, {self.latent_dim}) (latent_dim={self.latent_dim}); got "
                f"{tuple(Z.shape)}."
            )
        return Z

    # ------------------------------------------------------------------ shared outputs
    @torch.no_grad()
    def decode(self, Z) -> np.ndarray:
        """The mean of p(x | z) for each row of Z (probabilities for a Bernoulli likelihood)."""
        Z = self._latent(Z)
        model = self.module_.model
        out = torch.cat([model.likelihood.mean(model.decode(z)) for z in self._batches(Z)])
        return self._out(out, self.input_shape_)

    @torch.no_grad()
    def reconstruct(self, X) -> np.ndarray:
        """decode(encode(X)): the mean of p(x | z) at the posterior mean
        of z. Denoises a corrupted X."""
        return self.decode(self.encode(X))

    @torch.no_grad()
    def interpolate(self, x1, x2, steps: int = 10) -> np.ndarray:
        """Decode ``steps`` points on the straight line between the latent codes of x1 and x2."""
        if not isinstance(steps, numbers.Integral) or steps < 2:
            raise ValueError(f"steps must be an int >= 2; got {steps!r}.")
        X = (
            np.stack([np.asarray(x1, dtype=np.float64), np.asarray(x2, dtype=np.float64)])
            if not isinstance(x1, torch.Tensor)
            else torch.stack([x1, x2])
        )
        Z = self.encode(X)
        t = np.linspace(0.0, 1.0, steps)[:, None]
        return self.decode((1 - t) * Z[0] + t * Z[1])

    def transform(self, X) -> np.ndarray:
        """Representations for downstream models: the posterior means of z (the encoder's code)."""
        return self.encode(X)

    def score(self, X, y=None) -> float:
        """The mean of ``score_samples(X)``."""
        return float(np.mean(self.score_samples(X)))

    def anomaly_score(self, X) -> np.ndarray:
        """−score_samples(X): larger is more anomalous."""
        return -self.score_samples(X)

    # ------------------------------------------------------------------ persistence
    _STATE = (
        "input_shape_",
        "n_features_in_",
        "seed_",
        "history_",
        "lower_bounds_",
        "lower_bound_",
        "n_iter_",
        "best_epoch_",
        "stopped_early_",
    )

    def _get_state(self):
        check_is_fitted(self, "module_")
        tensors = {f"module.{k}": t.detach().cpu() for k, t in self.module_.state_dict().items()}
        extra = {name: getattr(self, name) for name in self._STATE}
        extra["input_shape_"] = list(self.input_shape_)
        extra["dtype"] = str(self.module_dtype_).replace("torch.", "")
        return tensors, extra

    def _set_state(self, tensors, extra):
        for name in self._STATE:
            setattr(self, name, extra[name])
        self.input_shape_ = tuple(extra["input_shape_"])
        self._dtype = v.resolve_dtype(extra["dtype"])
        self._device = v.resolve_device(self.device)
        module = self._build(_network_shape(self.input_shape_), self.seed_)
        if "module.local.mu" in tensors:
            self._add_local(module, int(torch.as_tensor(tensors["module.local.mu"]).shape[0]))
        module.load_state_dict(
            {
                k[len("module.") :]: torch.as_tensor(t)
                for k, t in tensors.items()
                if k.startswith("module.")
            }
        )
        module.eval()
        self.module_ = module
        self.device_ = str(self._device)
        self.module_dtype_ = self._dtype

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # Monte Carlo scores (VAE) and the Bernoulli draw of grey input are seeded per call, so a
        # row's score depends on the other rows in the call: not subset-invariant. The encoder's
        # outputs (transform) are deterministic either way.
        tags.non_deterministic = self._stochastic_scores or self.binarize in ("dynamic", "static")
        # Outputs come in the compute dtype (float32 by default), whatever the input's dtype.
        tags.transformer_tags.preserves_dtype = []
        return tags


@register
class VAE(_DeepLatentBase):
    """Variational autoencoder: p(z) = N(0, I), p(x | z) =
    likelihood(decoder(z)), q(z | x) Gaussian.

    Trained by Adam on the ELBO, E_q[log p(x | z)] − beta·KL(q(z | x) ‖ p(z)), one reparameterized
    sample per data point, the KL in closed form, both summed over dimensions (never averaged).

    Parameters
    ----------
    latent_dim : int
        Dimension of z.
    encoder, decoder : {'mlp', 'conv'} or torch.nn.Module
        'mlp' uses ``hidden_sizes`` (the decoder mirrors them); 'conv' needs image data (N, H, W) or
        (N, C, H, W): two stride-2 convolutions, transposed in the decoder. A module of your own
        maps a batch of inputs (images as (batch, C, H, W), a channel axis added to (N, H, W)
        data) to (batch, 2·latent_dim) (mean, log-sd) for the encoder, and a batch
        of z to (batch, n_features) natural parameters for the decoder; it is copied, not trained
        in place.
    hidden_sizes : tuple of int, default=(200, 200)
        Widths of the 'mlp' networks' hidden layers. ``()`` makes both networks affine: the
        decoder is x_mean = W z + b, the encoder's mean and log-sd are affine in x. With
        ``likelihood='gaussian-learned'`` that is probabilistic PCA (``learned_std='global'``)
        or factor analysis (``'per-feature'``), and the ELBO can reach their maximum
        log-likelihood (see ``examples/vae_ppca_bridge.py``).
    activation : {'softplus', 'relu', 'tanh', 'elu'}, default='softplus'
    likelihood : {'bernoulli', 'gaussian', 'gaussian-learned', 'poisson'}, default='bernoulli'
        Bernoulli from logits (0/1 data, or binarized); Gaussian with std ``decoder_std``; Gaussian
        with a learned std (``learned_std='per-feature'`` or ``'global'``, starting at
        ``decoder_std``); Poisson from log-rates (counts).
    binarize : {None, 'dynamic', 'static', 'threshold'}, default=None
        For a Bernoulli likelihood of data in [0, 1]: 'dynamic' draws x ~ Bernoulli(x) afresh each
        epoch (the standard MNIST protocol), 'static' once, 'threshold' takes x > 0.5. Scoring a
        grey-scale X (``score_samples``) uses one seeded Bernoulli draw of it (the same for the same
        X); the encoder (``encode``, ``transform``, ``reconstruct``) reads the grey values, their
        expectation. Without binarize, a Bernoulli likelihood demands 0/1 data.
    beta : float, default=1.0
        Weight of the KL term (beta-VAE). Values other than 1 make the objective no longer a bound.
    kl_warmup : int, default=0
        Epochs over which the KL weight rises from 0 to ``beta`` (0: off).
    kl_schedule : {'linear', 'cyclical'}, default='linear'
        'linear' warms up once; 'cyclical' repeats a ramp of ``kl_warmup`` epochs (ramp over the
        first half of each cycle, then flat).
    free_bits : float or None, default=None
        Minimum KL in nats per latent dimension (averaged over the batch) below which the KL is
        not penalized (Kingma et al. 2016).
    objective : {'elbo', 'iwae'}, default='elbo'
        'iwae' trains on the importance-weighted bound L_k (Burda et al. 2015) with ``k`` samples;
        'elbo' averages the ELBO over ``k`` samples. Early stopping watches the same bound.
    k : int, default=1
        Samples of z per data point in each training step.
    gradient : str, default='reparameterization'
        The encoder's gradient estimator: 'reparameterization', 'dreg', 'score' or
        'score-baseline'. 'dreg' (doubly reparameterized, Tucker et al. 2019)
        applies to objective='iwae' and has lower variance at large k. 'score' is the
        score-function (REINFORCE) estimator, unbiased but of much higher variance;
        'score-baseline' subtracts a leave-one-out baseline over the k samples (k >= 2). With
        the score function the KL term's gradient stays exact (closed form).
    inference : {'amortized', 'svi'}, default='amortized'
        'svi' replaces the encoder by free per-point parameters (mean and log-scale for every
        training point): each batch takes ``svi_steps`` Adam steps (``svi_lr``) on its points'
        q with the decoder fixed, then a decoder step. New data (encode, score_samples,
        log_marginal) get ``svi_eval_steps`` steps from the prior. The encoder is not used.
    update : {'joint', 'alternating'}, default='joint'
        'joint' moves encoder and decoder together on each batch; 'alternating' takes an encoder
        step (the E-step: q moves, p fixed) and then a decoder step (the M-step) on each batch,
        each with a fresh forward pass: the EM-style alternation, at twice the cost per batch.
    epochs, batch_size, lr : training length, mini-batch size, Adam step size.
    max_grad_norm : float or None
        Clip the gradient's norm to this value.
    validation_fraction : float in [0, 1), default=0.1
        Held-out share for the validation ELBO; early stopping watches it (``patience`` epochs).
    checkpoint : path or None
        Write a checkpoint atomically after every epoch; ``fit(X, resume=True)`` continues from it.
    warm_start : bool, default=False
        If True and the model is fitted, ``fit`` starts from the fitted networks instead of new
        ones (with a fresh optimizer, ``epochs`` more epochs, a new history and the fitted
        model's seed, so the same validation split): for example to fine-tune a VAE with
        ``objective='iwae'``. Parameters that change the networks' shapes must stay as fitted; a
        fit that fails leaves the fitted model as it was. A checkpoint being resumed takes
        precedence.
    random_state, device, dtype, verbose
        Seeding, compute device, 'float32' or 'float64', progress bar (verbose >= 1).

    Attributes
    ----------
    module_ : torch.nn.Module with ``.encoder`` (q(z | x)) and ``.model`` (decoder, likelihood).
    history_ : dict of per-epoch lists: elbo, reconstruction, kl (training, per sample), val_elbo,
        train_seconds, seconds.
    lower_bounds_ : per-epoch validation ELBO (training ELBO when there is no validation split).
    lower_bound_ : the best validation ELBO (nats per sample); the returned model is that epoch's.
    n_iter_ : epochs run; best_epoch_; stopped_early_; input_shape_; n_features_in_.
    """

    _stochastic_scores = True
    _score_label = "mean ELBO on the data (nats/sample; a lower bound on log p(x))"

    def __init__(
        self,
        latent_dim=2,
        *,
        encoder="mlp",
        decoder="mlp",
        hidden_sizes=(200, 200),
        activation="softplus",
        likelihood="bernoulli",
        binarize=None,
        decoder_std=1.0,
        learned_std="per-feature",
        beta=1.0,
        kl_warmup=0,
        kl_schedule="linear",
        free_bits=None,
        objective="elbo",
        k=1,
        gradient="reparameterization",
        update="joint",
        inference="amortized",
        svi_steps=20,
        svi_eval_steps=300,
        svi_lr=0.05,
        epochs=100,
        batch_size=100,
        lr=1e-3,
        max_grad_norm=None,
        validation_fraction=0.1,
        patience=10,
        checkpoint=None,
        warm_start=False,
        random_state=None,
        device=None,
        dtype="float32",
        verbose=0,
    ):
        self.latent_dim = latent_dim
        self.encoder = encoder
        self.decoder = decoder
        self.hidden_sizes = hidden_sizes
        self.activation = activation
        self.likelihood = likelihood
        self.binarize = binarize
        self.decoder_std = decoder_std
        self.learned_std = learned_std
        self.beta = beta
        self.kl_warmup = kl_warmup
        self.kl_schedule = kl_schedule
        self.free_bits = free_bits
        self.objective = objective
        self.k = k
        self.gradient = gradient
        self.update = update
        self.inference = inference
        self.svi_steps = svi_steps
        self.svi_eval_steps = svi_eval_steps
        self.svi_lr = svi_lr
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.max_grad_norm = max_grad_norm
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.checkpoint = checkpoint
        self.warm_start = warm_start
        self.random_state = random_state
        self.device = device
        self.dtype = dtype
        self.verbose = verbose

    _constraints = {
        **_DeepLatentBase._constraints,
        "beta": v.Interval(0, None),
        "kl_warmup": v.Interval(0, None, integer=True),
        "kl_schedule": v.Options(("linear", "cyclical")),
        "free_bits": v.any_of(v.NONE, v.Interval(0, None), description="None or a number >= 0"),
        "objective": v.Options(("elbo", "iwae")),
        "k": v.Interval(1, None, integer=True),
        "gradient": v.Options(("reparameterization", "dreg", "score", "score-baseline")),
        "update": v.Options(("joint", "alternating")),
        "inference": v.Options(("amortized", "svi")),
        "svi_steps": v.Interval(1, None, integer=True),
        "svi_eval_steps": v.Interval(1, None, integer=True),
        "svi_lr": v.Interval(0, None, open_low=True),
    }

    def _validate_params(self) -> None:
        super()._validate_params()
        if self.gradient == "dreg" and self.objective != "iwae":
            raise ValueError(
                "VAE: gradient='dreg' (doubly reparameterized) is an estimator of the importance-"
                f"weighted bound's gradient; it needs objective='iwae' (got "
                f"objective={self.objective!r})."
            )
        self._validate_combination()
        if self.objective == "iwae" and (
            self.beta != 1.0 or self.kl_warmup or self.free_bits is not None
        ):
            raise ValueError(
                "VAE: objective='iwae' has no separate KL term, so beta, kl_warmup and free_bits "
                "do not apply; leave them at 1.0, 0 and None."
            )

    def _encoder_outputs(self) -> int:
        return 2 * self.latent_dim

    def _wrap_encoder(self, net):
        return GaussianEncoder(net, self.latent_dim)

    def _kl_weight(self, progress: float) -> float:
        if not self.kl_warmup:
            return self.beta
        if self.kl_schedule == "linear":
            return self.beta * min(1.0, progress / self.kl_warmup)
        phase = (progress % self.kl_warmup) / self.kl_warmup
        return self.beta * min(1.0, 2.0 * phase)

    def _add_local(self, module, n_points):
        if self.inference == "svi":
            module.local = LocalGaussian(
                n_points, self.latent_dim, dtype=self._dtype, device=self._device
            )

    def _batch_terms(self, module, xb, progress, generator, idx=None):
        if self.inference == "svi":
            # E-step: warm-started Adam steps on this batch's own q_n, decoder fixed; then the
            # decoder's step on the ELBO at those q_n (the M-step, taken by the training loop).
            module.local.refine(
                module.model,
                xb,
                idx,
                steps=self.svi_steps,
                lr=self.svi_lr,
                average=0.0,
                generator=generator,
                eval_samples=1,
            )
            mu, log_sigma = (t.detach() for t in module.local(idx))
            t = elbo_terms_at(
                module.model, xb, mu, log_sigma, n_samples=self.k, generator=generator
            )
            # The KL does not depend on the decoder: the loss is
            # −reconstruction.mean() + a constant.
            loss = (t.kl - t.reconstruction).mean()
            return {
                "loss": loss,
                "elbo": t.bound,
                "reconstruction": t.reconstruction.detach(),
                "kl": t.kl,
            }
        if self.objective == "iwae":
            t = iwae_terms(
                module.encoder, module.model, xb, self.k, generator, self.gradient == "dreg"
            )
            return {
                "loss": t.loss(),
                "elbo": t.bound,
                "reconstruction": t.reconstruction,
                "kl": t.kl,
            }
        if self.gradient in ("score", "score-baseline"):
            estimator = "score-baseline" if self.gradient == "score-baseline" else "score"
            t = elbo_surrogate(module.encoder, module.model, xb, estimator, generator, self.k)
            return {
                "loss": t.loss(),
                "elbo": t.bound,
                "reconstruction": t.reconstruction,
                "kl": t.kl,
            }
        t = elbo_terms(module.encoder, module.model, xb, generator, self.k)
        weight = self._kl_weight(progress)
        if self.free_bits is not None:
            kl_term = torch.clamp(
                gaussian_kl_per_dim(t.mu, t.log_sigma).mean(0), min=self.free_bits
            ).sum()
        else:
            kl_term = t.kl.mean()
        loss = weight * kl_term - t.reconstruction.mean()
        return {
            "loss": loss,
            "elbo": t.bound,
            "reconstruction": t.reconstruction.detach(),
            "kl": t.kl.detach(),
        }

    def _q(self, module, xb, generator):
        """(mu, log_sigma) of q(z | x) for a batch: the encoder's, or for inference='svi' a
        per-point fit (``svi_eval_steps`` Adam steps from the prior, decoder fixed)."""
        if self.inference == "svi":
            fit = fit_local(
                module.model,
                xb,
                steps=self.svi_eval_steps,
                lr=self.svi_lr,
                generator=generator,
                eval_samples=1,
            )
            return fit.mu, fit.log_sigma
        return module.encoder(xb)

    def _sample_scores(self, module, xb, generator, n_samples: int) -> torch.Tensor:
        mu, log_sigma = self._q(module, xb, generator)
        return elbo_terms_at(
            module.model, xb, mu, log_sigma, n_samples=n_samples, generator=generator
        ).bound

    def _validation_scores(self, module, xb, generator) -> torch.Tensor:
        """What early stopping watches: the training objective's bound
        (the ELBO, or L_k for IWAE)."""
        if self.objective == "iwae":
            return log_importance_weights_lse(module.encoder, module.model, xb, self.k, generator)
        return self._sample_scores(module, xb, generator, 1)

    def _validate_combination(self) -> None:
        if self.inference == "svi" and (
            self.objective != "elbo"
            or self.gradient != "reparameterization"
            or self.update != "joint"
        ):
            raise ValueError(
                "VAE: inference='svi' fits per-point q by its own E-steps; it needs "
                "objective='elbo', gradient='reparameterization' and update='joint' (the E/M "
                "alternation is built in)."
            )
        if self.gradient == "score-baseline" and self.k < 2:
            raise ValueError(
                f"VAE: gradient='score-baseline' uses a leave-one-out baseline over the k samples "
                f"of each point; it needs k >= 2 (got k={self.k}). Try k=2, or gradient='score'."
            )

    # ------------------------------------------------------------------ outputs
    @torch.no_grad()
    def encode(self, X, *, sample: bool = False, random_state=None) -> np.ndarray:
        """Posterior means of z (or one draw from q(z | x) with
        ``sample=True``), shape (n, latent_dim)."""
        X = self._input(X, for_likelihood=self.inference == "svi")
        g = self._generator(random_state, 5)
        out = []
        for xb in self._batches(X):
            mu, log_sigma = self._q(self.module_, xb, self._generator(None, 8))
            out.append(
                mu
                + torch.exp(log_sigma)
                * torch.randn(mu.shape, generator=g, device=mu.device, dtype=mu.dtype)
                if sample
                else mu
            )
        return self._out(torch.cat(out))

    @torch.no_grad()
    def encode_distribution(self, X) -> tuple[np.ndarray, np.ndarray]:
        """(mean, standard deviation) of q(z | x), each (n, latent_dim)."""
        X = self._input(X, for_likelihood=self.inference == "svi")
        g = self._generator(None, 8)
        mus, sds = zip(
            *(
                (mu, torch.exp(ls))
                for mu, ls in (self._q(self.module_, xb, g) for xb in self._batches(X))
            ),
            strict=True,
        )
        return self._out(torch.cat(mus)), self._out(torch.cat(sds))

    @torch.no_grad()
    def sample(self, n_samples: int = 1, *, mean: bool = False, random_state=None) -> np.ndarray:
        """Draw z ~ N(0, I) and x ~ p(x | z); ``mean=True`` returns the mean of p(x | z) instead."""
        check_is_fitted(self, "module_")
        if not isinstance(n_samples, numbers.Integral) or n_samples < 1:
            raise ValueError(f"n_samples must be an int >= 1; got {n_samples!r}.")
        g = self._generator(random_state, 6)
        model = self.module_.model
        z = torch.randn(
            (n_samples, self.latent_dim), generator=g, device=g.device, dtype=self.module_dtype_
        )
        params = model.decode(z)
        out = (
            model.likelihood.mean(params) if mean else model.likelihood.sample(params, generator=g)
        )
        return self._out(out, self.input_shape_)

    @torch.no_grad()
    def score_samples(self, X, n_samples: int = 1) -> np.ndarray:
        """Per-sample ELBO in nats: a Monte Carlo estimate (``n_samples`` draws of z) of a LOWER
        BOUND on log p(x), with the KL term exact. Seeded: the same X gives the same numbers.

        For an estimate of log p(x) itself use importance sampling (``lvmkit.log_marginal``).
        """
        X = self._input(X, for_likelihood=True)
        g = self._generator(None, 7)
        return self._out(
            torch.cat(
                [self._sample_scores(self.module_, xb, g, n_samples) for xb in self._batches(X)]
            )
        )

    def _generator(self, random_state, offset: int) -> torch.Generator:
        seed = (
            self.seed_ + offset
            if random_state is None
            else int(check_random_state(random_state).randint(2**31 - 1))
        )
        return torch.Generator(device=torch.device(self.device_)).manual_seed(seed)


@register
class Autoencoder(_DeepLatentBase):
    """A deterministic autoencoder with the VAE's networks: z = encoder(x), trained to maximize
    log p(x | decoder(z)) (for a Bernoulli likelihood, minus the binary cross-entropy; for a
    Gaussian, minus a scaled squared error). No prior and no KL term: ``score_samples`` is the
    reconstruction log-likelihood, not a bound on log p(x), and there is no ``sample``.

    Parameters are the VAE's (see :class:`VAE`) without the KL options.
    """

    def __init__(
        self,
        latent_dim=2,
        *,
        encoder="mlp",
        decoder="mlp",
        hidden_sizes=(200, 200),
        activation="softplus",
        likelihood="bernoulli",
        binarize=None,
        decoder_std=1.0,
        learned_std="per-feature",
        epochs=100,
        batch_size=100,
        lr=1e-3,
        max_grad_norm=None,
        validation_fraction=0.1,
        patience=10,
        checkpoint=None,
        warm_start=False,
        random_state=None,
        device=None,
        dtype="float32",
        verbose=0,
    ):
        self.latent_dim = latent_dim
        self.encoder = encoder
        self.decoder = decoder
        self.hidden_sizes = hidden_sizes
        self.activation = activation
        self.likelihood = likelihood
        self.binarize = binarize
        self.decoder_std = decoder_std
        self.learned_std = learned_std
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.max_grad_norm = max_grad_norm
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.checkpoint = checkpoint
        self.warm_start = warm_start
        self.random_state = random_state
        self.device = device
        self.dtype = dtype
        self.verbose = verbose

    _score_label = "mean reconstruction log-likelihood (nats/sample; not a bound on log p(x))"

    def _encoder_outputs(self) -> int:
        return self.latent_dim

    def _batch_terms(self, module, xb, progress, generator, idx=None):
        z = module.encoder(xb)
        rec = module.model.log_likelihood(xb.reshape(xb.shape[0], -1), z)
        zero = torch.zeros_like(rec)
        return {
            "loss": -rec.mean(),
            "elbo": rec.detach(),
            "reconstruction": rec.detach(),
            "kl": zero,
        }

    @staticmethod
    def _sample_scores(module, xb, generator, n_samples: int) -> torch.Tensor:
        return module.model.log_likelihood(xb.reshape(xb.shape[0], -1), module.encoder(xb))

    @torch.no_grad()
    def encode(self, X) -> np.ndarray:
        """The code z = encoder(x), shape (n, latent_dim)."""
        X = self._input(X)
        return self._out(torch.cat([self.module_.encoder(xb) for xb in self._batches(X)]))

    @torch.no_grad()
    def score_samples(self, X) -> np.ndarray:
        """log p(x | decoder(encoder(x))) per sample in nats: a
        reconstruction score, not a bound."""
        X = self._input(X, for_likelihood=True)
        return self._out(
            torch.cat([self._sample_scores(self.module_, xb, None, 1) for xb in self._batches(X)])
        )
