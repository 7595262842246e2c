"""lvmkit on ``torch.distributed``: the same fit on many processes, by adding statistics.

Every EM loop sums additive statistics over its data (:class:`lvmkit.models.stats.Stats`). Across
processes the sum is one more step: each rank sums its own rows, and one float64 ``all_reduce``
adds the ranks' sums. Every rank then holds the same statistics, runs the same M-step and ends with
the same parameters; no rank is special except that rank 0 writes files and prints.

Nothing here starts processes or knows about machines: the launcher does (``torchrun``, SLURM's
``srun`` with torchrun, Ray Train's or Spark's TorchDistributor workers). :func:`current` gives
the communicator an estimator uses:

- a process group already initialized (``torch.distributed.init_process_group``) of two or more
  ranks: a :class:`Group` over it;
- none, but the launcher's environment (``WORLD_SIZE`` > 1, ``RANK``, ``MASTER_ADDR``): lvmkit
  initializes the default group itself (gloo on CPU, NCCL when fitting on a GPU) with the
  timeout below, and uses it;
- otherwise (or inside ``with single_process():``) :data:`LOCAL`, the world of one, whose
  collectives do nothing.

**Faults.** Every collective waits at most :func:`get_timeout` seconds (``LVMKIT_DIST_TIMEOUT``
in the environment, or :func:`set_timeout`; 1800 by default, like torch's own). A rank that raises
in a fit first records its error in the process group's store; a rank that dies (SIGKILL, out of
memory) closes its connections, which its peers see at once. Either way every other rank raises
:class:`DistributedError` naming the rank that failed, instead of hanging: after a failed
collective, a rank reads the recorded errors and holds a short roll call in the store, and names
the ranks that neither recorded an error nor answered. After such an error the process group is
broken; destroy it (``torch.distributed.destroy_process_group()``) before fitting again.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime
import json
import os
import re
import time

import numpy as np
import torch

__all__ = [
    "DistributedError",
    "Group",
    "LOCAL",
    "Local",
    "current",
    "draw",
    "get_timeout",
    "launched",
    "rank_prefix",
    "set_timeout",
    "share_of_rows",
    "shutdown",
    "single_process",
    "split",
]

ENV_TIMEOUT = "LVMKIT_DIST_TIMEOUT"
DEFAULT_TIMEOUT = 1800.0
# How long a rank that saw a collective fail waits for the others to answer the roll call.
ROLL_CALL_SECONDS = 5.0
_KEY = "lvmkit"
# Words of gloo's and NCCL's errors when a peer is gone or late (see Group.explain).
_COMMUNICATION = (
    "Connection closed",
    "Connection reset",
    "timed out",
    "Timed out",
    "NCCL",
    "gloo",
    "Broken pipe",
)

_timeout: float | None = None
_owned = False  # whether lvmkit initialized the default process group (then shutdown() ends it)
_single = contextvars.ContextVar("lvmkit_single_process", default=False)
_rows = contextvars.ContextVar("lvmkit_share_of_rows", default=None)


class DistributedError(RuntimeError):
    """Another rank of the job failed (raised, died or stopped answering); ``rank`` names it."""

    def __init__(self, message: str, rank: int | None = None):
        super().__init__(message)
        self.rank = rank


def set_timeout(seconds: float | None) -> None:
    """Seconds a collective may wait for the other ranks before the fit fails naming the ranks
    that did not arrive (``None``: back to ``LVMKIT_DIST_TIMEOUT`` or 1800 s). It must exceed the
    longest time one rank can spend between two collectives: one pass over its shard."""
    global _timeout
    if seconds is not None and (
        isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds > 0
    ):
        raise ValueError(f"the timeout must be a number of seconds > 0; got {seconds!r}.")
    _timeout = None if seconds is None else float(seconds)


def get_timeout() -> float:
    """The collective timeout in seconds: :func:`set_timeout`, else ``LVMKIT_DIST_TIMEOUT``, else
    1800."""
    if _timeout is not None:
        return _timeout
    text = os.environ.get(ENV_TIMEOUT, "")
    if not text:
        return DEFAULT_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ValueError(f"{ENV_TIMEOUT}={text!r}: give a number of seconds > 0.")
    return value


@contextlib.contextmanager
def single_process():
    """Within this block, fits ignore any process group: each rank fits its own model on its
    own data (for example a different model per rank)."""
    token = _single.set(True)
    try:
        yield
    finally:
        _single.reset(token)


@contextlib.contextmanager
def share_of_rows(total: int, lo: int, hi: int):
    """Within the block, this rank computes rows ``[lo, hi)`` of a batch of ``total`` rows that the
    ranks share: per-row random draws made through :func:`draw` are drawn for all ``total`` rows
    and cut to this rank's. Every rank's generator then advances as one process's would on the
    whole batch, and every row gets the noise it would get there: a data-parallel run is the
    one-process run, whatever the number of ranks."""
    token = _rows.set((int(total), int(lo), int(hi)))
    try:
        yield
    finally:
        _rows.reset(token)


def draw(sampler, shape, row_axis: int, **kwargs):
    """``sampler(shape, **kwargs)`` (e.g. ``torch.randn``), or within :func:`share_of_rows` the
    rows ``[lo, hi)`` (along ``row_axis``) of the same draw for all the batch's rows."""
    rows = _rows.get()
    shape = tuple(shape)
    if rows is None or shape[row_axis] != rows[2] - rows[1]:
        return sampler(shape, **kwargs)
    total, lo, hi = rows
    full = shape[:row_axis] + (total,) + shape[row_axis + 1 :]
    return sampler(full, **kwargs).narrow(row_axis, lo, hi - lo)


def split(total: int, rank: int, world: int) -> tuple[int, int]:
    """Rank ``rank``'s rows ``[lo, hi)`` of ``total`` rows split in ``world`` contiguous parts."""
    return rank * total // world, (rank + 1) * total // world


# ====================================================================== one process
class Local:
    """The world of one process: every collective is the identity."""

    rank = 0
    world = 1
    active = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def reduce(self, stats):
        """The sum over ranks of additive statistics (:class:`lvmkit.models.stats.Stats`)."""
        return stats

    def sum(self, values):
        """Element-wise sum over ranks of a list of floats (float64)."""
        return [float(v) for v in values]

    def max(self, value: int) -> int:
        return int(value)

    def gather(self, obj) -> list:
        """Every rank's JSON-able ``obj``, in rank order."""
        return [obj]

    def gather_rows(self, rows: np.ndarray) -> list[np.ndarray]:
        """Every rank's (n_r, D) float64 array, in rank order (n_r may differ, be 0)."""
        return [np.asarray(rows, dtype=np.float64)]

    def broadcast(self, tensor: torch.Tensor, src: int = 0) -> torch.Tensor:
        """Rank ``src``'s tensor on every rank (same shape and dtype everywhere)."""
        return tensor

    def argmin(self, value: float, row: torch.Tensor | None):
        """The lowest ``value`` over ranks and its ``row`` (ties: the lowest rank)."""
        return value, row

    def failed(self, exc: BaseException) -> None:
        """Record that this rank is failing with ``exc`` (for the other ranks' messages)."""

    def explain(self, exc: BaseException, what: str) -> BaseException:
        """The error to raise for ``exc``, raised by a collective this module did not start
        (DistributedDataParallel's): a :class:`DistributedError` naming the rank at fault when
        ``exc`` is a communication failure, else ``exc`` itself."""
        return exc

    def describe(self) -> str:
        return "1 process"


LOCAL = Local()


# ====================================================================== a process group
class Group(Local):
    """The ranks of a torch.distributed process group (the default group unless ``group``)."""

    active = True
    _made = 0  # Groups made in this process: every rank makes them in the same order

    def __init__(self, group=None):
        import torch.distributed as dist

        Group._made += 1
        # Store keys of this fit only: a key left by an earlier fit's failure must not be read
        # as this one's (every rank makes its n-th Group for the same fit).
        self._key = f"{_KEY}/{Group._made}"
        self._dist = dist
        self.group = group
        self.rank = dist.get_rank(group)
        self.world = dist.get_world_size(group)
        self.backend = str(dist.get_backend(group))
        if self.backend == "nccl":
            self.device = torch.device("cuda", torch.cuda.current_device())
        else:
            self.device = torch.device("cpu")

    def describe(self) -> str:
        return f"{self.world} processes ({self.backend})"

    # ------------------------------------------------------------------ waiting, faults
    def _wait(self, work, what: str) -> None:
        try:
            work.wait(datetime.timedelta(seconds=get_timeout()))
        except Exception as exc:
            raise self._fault(exc, what) from None

    def _start(self, collective, what: str, *args, **kwargs):
        try:
            return collective(*args, group=self.group, async_op=True, **kwargs)
        except Exception as exc:
            raise self._fault(exc, what) from None

    def _store(self):
        return self._dist.distributed_c10d._get_default_store()

    def failed(self, exc: BaseException) -> None:
        if isinstance(exc, DistributedError) or getattr(exc, "lvmkit_agreed", False):
            return  # the others know already
        text = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
        with contextlib.suppress(Exception):
            self._store().set(f"{self._key}/failed/{self.rank}", text[:2000])

    def explain(self, exc: BaseException, what: str) -> BaseException:
        text = str(exc)
        if isinstance(exc, DistributedError) or not any(m in text for m in _COMMUNICATION):
            return exc
        return self._fault(exc, what)

    def _fault(self, exc: BaseException, what: str) -> DistributedError:
        """Why a collective failed: the rank that recorded an error, else the ranks that do not
        answer a roll call; a :class:`DistributedError` naming them."""
        cause = _short(exc)
        others = [r for r in range(self.world) if r != self.rank]
        try:
            store = self._store()
            for r in others:
                key = f"{self._key}/failed/{r}"
                if store.check([key]):
                    message = store.get(key).decode(errors="replace")
                    return DistributedError(
                        f"rank {r} failed with {message}. Rank {self.rank} stops too (it was in "
                        f"{what}).",
                        rank=r,
                    )
            store.set(f"{self._key}/alive/{self.rank}", "1")
            deadline = time.monotonic() + min(ROLL_CALL_SECONDS, get_timeout())
            missing = others
            while missing and time.monotonic() < deadline:
                time.sleep(0.1)
                missing = [r for r in missing if not store.check([f"{self._key}/alive/{r}"])]
        except Exception:  # the store itself is gone: its host (rank 0 or the launcher) died
            missing = [0] if self.rank != 0 else others
            return DistributedError(
                f"rank {self.rank} lost contact with rank {missing[0]} and with the process "
                f"group's store during {what} ({cause}): that rank died (killed, out of memory or "
                "crashed); see its log.",
                rank=missing[0],
            )
        if not missing:
            return DistributedError(
                f"{what} failed on rank {self.rank} while every rank still answers ({cause}). "
                "Check the network between the machines and the launcher's log."
            )
        names = ", ".join(map(str, missing))
        plural = "s" if len(missing) > 1 else ""
        return DistributedError(
            f"rank{plural} {names} stopped answering during {what} ({cause}): killed, out of "
            f"memory, crashed or stuck for over the {get_timeout():g} s timeout (set it with "
            f"{ENV_TIMEOUT} or lvmkit.distributed.set_timeout); see the log of rank{plural} "
            f"{names}. Rank {self.rank} stops too.",
            rank=missing[0],
        )

    # ------------------------------------------------------------------ collectives
    def _all_reduce(self, tensor: torch.Tensor, what: str, op=None) -> torch.Tensor:
        home = tensor.device
        t = tensor.to(self.device, copy=True)
        op = op if op is not None else self._dist.ReduceOp.SUM
        self._wait(self._start(self._dist.all_reduce, what, t, op=op), what)
        return t.to(home)

    def reduce(self, stats):
        flat = self._all_reduce(stats.flat(), "the all_reduce of the EM statistics")
        return stats.like(flat)

    def sum(self, values):
        t = torch.tensor([float(v) for v in values], dtype=torch.float64)
        return self._all_reduce(t, "a sum over ranks").tolist()

    def max(self, value: int) -> int:
        t = torch.tensor([int(value)], dtype=torch.int64)
        return int(self._all_reduce(t, "a maximum over ranks", self._dist.ReduceOp.MAX)[0])

    def _all_gather(self, tensor: torch.Tensor, what: str) -> list[torch.Tensor]:
        t = tensor.to(self.device)
        parts = [torch.empty_like(t) for _ in range(self.world)]
        self._wait(self._start(self._dist.all_gather, what, parts, t), what)
        return [p.cpu() for p in parts]

    def _gather_bytes(self, data: bytes, what: str) -> list[bytes]:
        size = torch.tensor([len(data)], dtype=torch.int64)
        sizes = [int(s[0]) for s in self._all_gather(size, what)]
        buf = torch.zeros(max(sizes), dtype=torch.uint8)
        if data:
            buf[: len(data)] = torch.frombuffer(bytearray(data), dtype=torch.uint8)
        return [
            bytes(p[:n].numpy()) for p, n in zip(self._all_gather(buf, what), sizes, strict=True)
        ]

    def gather(self, obj) -> list:
        parts = self._gather_bytes(json.dumps(obj).encode(), "a gather of settings")
        return [json.loads(p.decode()) for p in parts]

    def gather_rows(self, rows: np.ndarray) -> list[np.ndarray]:
        rows = np.ascontiguousarray(rows, dtype=np.float64)
        width = rows.shape[1] if rows.ndim == 2 else 0
        parts = self._gather_bytes(rows.tobytes(), "a gather of rows")
        return [np.frombuffer(p, dtype=np.float64).reshape(-1, width).copy() for p in parts]

    def broadcast(self, tensor: torch.Tensor, src: int = 0) -> torch.Tensor:
        home = tensor.device
        t = tensor.to(self.device, copy=True).contiguous()
        what = f"a broadcast from rank {src}"
        self._wait(self._start(self._dist.broadcast, what, t, src=src), what)
        return t.to(home)

    def argmin(self, value: float, row: torch.Tensor | None):
        width = max(self.gather(0 if row is None else int(row.numel())))
        mine = torch.zeros(1 + width, dtype=torch.float64)
        mine[0] = np.inf if row is None else value
        if row is not None:
            mine[1:] = row.reshape(-1).to(torch.float64).cpu()
        parts = self._all_gather(mine, "a search for the worst-explained row")
        best = min(range(self.world), key=lambda r: (float(parts[r][0]), r))
        if float(parts[best][0]) == np.inf:  # no rank has a row
            return value, row
        home = row.device if row is not None else torch.device("cpu")
        return float(parts[best][0]), parts[best][1:].to(home)


def _short(exc: BaseException) -> str:
    """A collective's error in one short line (gloo's source location and advice dropped)."""
    text = re.sub(r"\[[^\]]*\.(cc|cpp|h):\d+\]\s*", "", " ".join(str(exc).split()))
    return text.split(". This is typically")[0][:300]


def current(device=None) -> Local:
    """The communicator a fit on ``device`` uses now (see the module's description)."""
    if _single.get():
        return LOCAL
    import torch.distributed as dist

    if not dist.is_available():
        return LOCAL
    if dist.is_initialized():
        return Group() if dist.get_world_size() > 1 else LOCAL
    env = os.environ
    try:
        world = int(env.get("WORLD_SIZE", "1"))
    except ValueError:
        world = 1
    if world > 1 and "RANK" in env and "MASTER_ADDR" in env and "MASTER_PORT" in env:
        cuda = device is not None and torch.device(device).type == "cuda"
        backend = "nccl" if cuda and dist.is_nccl_available() else "gloo"
        if backend == "nccl" and "LOCAL_RANK" in env:
            torch.cuda.set_device(int(env["LOCAL_RANK"]))
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=get_timeout()))
        global _owned
        _owned = True
        return Group()
    return LOCAL


def launched() -> bool:
    """Whether this process runs under a launcher of several ranks (``torchrun``'s environment)
    or in an initialized process group of several ranks."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size() > 1
    try:
        return int(os.environ.get("WORLD_SIZE", "1")) > 1
    except ValueError:
        return False


def rank_prefix() -> str:
    """``"rank 3: "`` on a rank other than 0 of an initialized group, else ``""`` (for messages)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        rank = dist.get_rank() if dist.get_world_size() > 1 else 0
    else:
        rank = (
            int(os.environ.get("RANK", "0"))
            if launched() and os.environ.get("RANK", "0").isdigit()
            else 0
        )
    return f"rank {rank}: " if rank else ""


def shutdown() -> None:
    """Destroy the default process group if lvmkit initialized it (see :func:`current`)."""
    global _owned
    import torch.distributed as dist

    if _owned and dist.is_initialized():
        dist.destroy_process_group()
    _owned = False
