"""Shared helpers for the benchmark scripts in ``bench/``.

Everything here is implementation-agnostic so that ``bench/gmm.py``,
``bench/mixtures.py``, ``bench/vae.py``, ... report machines, timings and
tables the same way:

* :func:`machine_info` -- CPU model, cores, threads (torch and the BLAS
  libraries NumPy/SciPy load, via threadpoolctl), library versions, date,
  GPU name when CUDA is available.
* :func:`gemm_gflops` -- the machine's achieved matrix-multiply rate for a
  dtype (the "peak" that benchmark rows are compared against).
* :func:`timed` / :func:`best_of` -- wall-clock timing that synchronises CUDA
  around the timed region.
* :func:`time_interleaved` / :func:`marginal_seconds` -- the shared timing
  protocol: fits with ``n`` and with 1 iteration, interleaved across
  implementations, best of repeats, seconds per iteration
  ``(T(n) - T(1)) / (n - 1)``.
* :func:`default_dtype`, :func:`to_numpy64` -- small adapters for peers
  (torch's default dtype set temporarily; float64 NumPy copies of results).
* :func:`markdown_table`, :func:`write_section` -- render a table and put it
  into ``BENCHMARKS.md`` between ``<!-- NAME:start -->`` and
  ``<!-- NAME:end -->`` markers, leaving the rest of the file untouched.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import importlib
import os
import platform
import re
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS_MD = REPO_ROOT / "BENCHMARKS.md"


# --------------------------------------------------------------------------
# Machine description
# --------------------------------------------------------------------------
def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo (falls back to platform.processor())."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def cpu_cores() -> int:
    """Number of CPUs this process may run on (affinity-aware)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


def blas_threads() -> str:
    """Threads of each BLAS/OpenMP library loaded in this process, e.g.
    ``"openblas=2, openmp=2"``, as reported by threadpoolctl."""
    try:
        import numpy  # noqa: F401  (make sure NumPy's BLAS is loaded)
        import scipy.linalg  # noqa: F401
        from threadpoolctl import threadpool_info
    except ImportError:
        return "unknown (threadpoolctl not installed)"
    seen: dict[str, int] = {}
    for pool in threadpool_info():
        name = pool.get("internal_api") or pool.get("user_api") or "?"
        seen[name] = max(seen.get(name, 0), int(pool.get("num_threads", 0)))
    return ", ".join(f"{k}={v}" for k, v in sorted(seen.items())) or "none loaded"


def limit_threads(n: int):
    """torch, and every BLAS/OpenMP library loaded so far (threadpoolctl), to ``n`` threads for
    the rest of the run. Import what will compute before calling: threadpoolctl only reaches the
    libraries already loaded. Returns threadpoolctl's limiter (None without threadpoolctl)."""
    torch.set_num_threads(n)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover
        return None
    return threadpool_limits(n)


def library_versions(modules: Iterable[str]) -> dict[str, str]:
    """``{module: __version__}``; ``"not installed"`` for missing modules."""
    out = {}
    for name in modules:
        try:
            out[name] = str(getattr(importlib.import_module(name), "__version__", "?"))
        except Exception:  # ImportError, or a broken optional dependency
            out[name] = "not installed"
    return out


def machine_info(modules: Iterable[str] = ("torch", "numpy")) -> dict[str, Any]:
    """Everything a benchmark table should state about where it ran."""
    info: dict[str, Any] = {
        "date": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu_model(),
        "cores": cpu_cores(),
        "python": platform.python_version(),
        "torch_threads": torch.get_num_threads(),
        "blas_threads": blas_threads(),
        "versions": library_versions(modules),
        "gpu": None,
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def machine_lines(info: dict[str, Any]) -> list[str]:
    """Markdown bullet lines describing ``info`` (from :func:`machine_info`)."""
    versions = ", ".join(f"{k} {v}" for k, v in info["versions"].items())
    lines = [
        f"- Date: {info['date']}",
        f"- Machine: {info['cpu']}, {info['cores']} cores"
        + (f"; GPU: {info['gpu']}" if info["gpu"] else "; no GPU"),
        f"- Threads: torch {info['torch_threads']}; NumPy/SciPy BLAS {info['blas_threads']}",
        f"- Versions: Python {info['python']}, {versions}",
    ]
    return lines


# --------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------
def synchronize(device: str | torch.device = "cpu") -> None:
    """Wait for queued CUDA work (no-op on CPU)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def timed(
    fn: Callable[[], Any], device: str | torch.device = "cpu", settle: float = 0.0
) -> tuple[float, Any]:
    """Run ``fn()`` once; return ``(wall seconds, result)``.

    CUDA is synchronised before and after so that asynchronous kernels are
    counted.  ``settle`` seconds of sleep come first (untimed): after a
    library with its own thread pool (NumPy's OpenBLAS, torch's OpenMP) has
    run, its worker threads keep spin-waiting for a while and, on a machine
    with few cores, slow down the next library's first ~0.1 s of work.
    Benchmarks that interleave libraries should pass ``settle`` ~0.3."""
    if settle > 0:
        time.sleep(settle)
    synchronize(device)
    t0 = time.perf_counter()
    result = fn()
    synchronize(device)
    return time.perf_counter() - t0, result


def best_of(times: Sequence[float]) -> float:
    """The minimum: the least noise-contaminated estimate on a shared box."""
    return min(times)


def median(times: Sequence[float]) -> float:
    return statistics.median(times)


def marginal_seconds(t_full: Sequence[float], t_one: Sequence[float], n_iter: int) -> float:
    """Marginal seconds per iteration ``(T(n) - T(1)) / (n - 1)`` from the best
    (minimum) of each list of fit times; falls back to ``T(n) / n`` when
    ``n == 1`` or noise makes the difference non-positive."""
    t_n, t_1 = best_of(t_full), best_of(t_one)
    if n_iter > 1 and t_n > t_1:
        return (t_n - t_1) / (n_iter - 1)
    return t_n / n_iter


def time_interleaved(
    fits: Sequence[Callable[[int], Any]],
    n_iter: int,
    repeats: int,
    *,
    labels: Sequence[str],
    devices: Sequence[str | torch.device] | None = None,
    settle: float = 0.0,
    log: Callable[[str], Any] | None = None,
    min_seconds: float = 0.0,
    max_pairs: int = 10,
) -> tuple[list[list[float]], list[list[float]], list[Any]]:
    """The interleaved timing protocol of the ``bench/`` scripts.

    ``fits[i](n)`` fits implementation ``i`` with ``n`` iterations and returns
    the model.  Per repeat, every implementation in turn is timed with 1 and
    then ``n_iter`` iterations (each after ``settle`` s of untimed sleep, see
    :func:`timed`), so that machine noise hits all of them alike.  With
    ``min_seconds > 0`` an implementation whose (T(1), T(n_iter)) pair took
    less than that repeats the pair within the same repeat until its pairs
    have taken ``min_seconds`` (at most ``max_pairs`` pairs): an
    implementation hundreds of times faster than its peer then gets as many
    chances at an undisturbed measurement in the peer's time, instead of one
    (T(1) disturbed by a neighbouring process biases the marginal cost).
    Returns ``(t_one, t_full, models)``: per implementation every T(1) and
    T(n_iter) measured, and the model of its last ``n_iter`` fit."""
    devices = list(devices) if devices is not None else ["cpu"] * len(fits)
    t_one: list[list[float]] = [[] for _ in fits]
    t_full: list[list[float]] = [[] for _ in fits]
    models: list[Any] = [None] * len(fits)
    for rep in range(repeats):
        for i, (fit, label, device) in enumerate(zip(fits, labels, devices, strict=True)):
            pairs: list[tuple[float, float]] = []
            while True:
                t1, _ = timed(lambda fit=fit: fit(1), device, settle)
                tn, models[i] = timed(lambda fit=fit: fit(n_iter), device, settle)
                pairs.append((t1, tn))
                spent = sum(a + b for a, b in pairs)
                if spent >= min_seconds or len(pairs) >= max_pairs:
                    break
            t_one[i] += [a for a, _ in pairs]
            t_full[i] += [b for _, b in pairs]
            if log is not None:
                t1, tn = min(a for a, _ in pairs), min(b for _, b in pairs)
                log(
                    f"  [{label}] repeat {rep + 1}/{repeats}:"
                    f" T(1)={t1:.3f}s T({n_iter})={tn:.3f}s"
                    + (f" (best of {len(pairs)} pairs)" if len(pairs) > 1 else "")
                )
    return t_one, t_full, models


# --------------------------------------------------------------------------
# Small adapters for peer libraries
# --------------------------------------------------------------------------
@contextlib.contextmanager
def default_dtype(dtype: torch.dtype):
    """Set torch's default dtype inside the ``with`` block (restored after).

    Libraries such as pomegranate 1.x create internal buffers (sufficient
    statistics) with ``torch.zeros(...)`` in the default dtype, whatever the
    dtype of the data they are given."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def to_numpy64(a: Any) -> np.ndarray:
    """A float64 NumPy array of a tensor (any device) or array-like."""
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    return np.asarray(a, dtype=np.float64)


# --------------------------------------------------------------------------
# Matrix-multiply rate
# --------------------------------------------------------------------------
def gemm_gflops(
    dtype: torch.dtype,
    n: int = 2048,
    repeats: int = 5,
    device: str | torch.device = "cpu",
) -> float:
    """Best-of-``repeats`` GFLOP/s of an ``n x n @ n x n`` torch matmul
    (``2 n^3`` flops), after one warm-up call."""
    gen = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(n, n, generator=gen, dtype=dtype).to(device)
    b = torch.randn(n, n, generator=gen, dtype=dtype).to(device)
    out = torch.empty(n, n, dtype=dtype, device=device)
    torch.matmul(a, b, out=out)  # warm-up
    times = [timed(lambda: torch.matmul(a, b, out=out), device)[0] for _ in range(repeats)]
    return 2.0 * n**3 / best_of(times) / 1e9


# --------------------------------------------------------------------------
# Markdown
# --------------------------------------------------------------------------
def markdown_table(
    headers: Sequence[str], rows: Iterable[Sequence[Any]], align: Sequence[str] | None = None
) -> str:
    """A GitHub-flavoured markdown table. ``align`` holds ``"l"``/``"r"`` per
    column (default: left for the first column, right for the rest)."""
    rows = [[str(c) for c in r] for r in rows]
    if align is None:
        align = ["l"] + ["r"] * (len(headers) - 1)
    sep = [":---" if a == "l" else "---:" for a in align]
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(sep) + " |"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def resolve_output(args, quick: bool) -> None:
    """Where a benchmark writes its table: nowhere with --no-write (or --quick without --output),
    else --output, else BENCHMARKS.md."""
    if args.no_write or (quick and args.output is None):
        args.output = None
    elif args.output is None:
        args.output = BENCHMARKS_MD


def write_section(body: str, name: str, path: str | Path = BENCHMARKS_MD) -> Path:
    """Put ``body`` between the ``name`` markers of the markdown file ``path``.

    An existing section is replaced; otherwise the section is appended. The
    rest of the file is left byte-for-byte untouched. A missing file is
    created with a ``# Benchmarks`` heading."""
    path = Path(path)
    start, end = markers(name)
    section = f"{start}\n{body.strip()}\n{end}"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _m: section, text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text)
    return path


def fmt_sci(x: float | None, digits: int = 1) -> str:
    """Scientific notation (``1.5e-07``); em dash for None/NaN."""
    if x is None or x != x:
        return "—"
    return f"{x:.{digits}e}"


def fmt_sig(x: float | None, digits: int = 3) -> str:
    """Format with ``digits`` significant digits; em dash for None/NaN."""
    if x is None or x != x:
        return "—"
    return f"{x:.{digits}g}"
