"""Worker processes for the post-processing: NMS and label rendering.

Why processes: the rendering is a Python loop (it holds the GIL) and StarDist's NMS
parallelizes poorly; one single-threaded process per core does more work per second
than one process on every core. Why *spawn*: forking a process after TensorFlow and
OpenMP started their threads is unsafe. Workers set ``OMP_NUM_THREADS=1`` before
StarDist's C libraries load and never import TensorFlow, so each costs ~0.7 s and
~100 MB to start. Where processes cannot be started (inside the host application, or
an embedded interpreter without a usable ``python``) the run stays sequential and
says so in one line; it never fails because of this. Workers end themselves within
a second of their run's process dying, even by ``kill -9`` (``exit_with_parent``).
"""
from __future__ import annotations

import os
import sys
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Callable, Sequence

import numpy as np

from ..analysis.measure import Calibration
from .predict import SparsePrediction, instances

#: How long a fresh pool may take to answer before the run gives up on it.
START_TIMEOUT_S = 120.0   # a first run on a fresh install compiles the numba code in each worker
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
#: Workers run at lower priority so the CNN keeps every core it can use: its threads
#: advance in lock step, and a worker taking one core from them made the CNN ~2x
#: slower while wasting the other core; niced, workers fill the CNN's idle gaps and
#: run at full speed when it waits for them: 1.12 -> 1.19 planes/s here (2 cores,
#: niceness 0 -> 10). Not 19 (1 % faster still): against other busy programs a
#: worker at 10 still gets ~10 % of a core instead of ~1.5 %.
WORKER_NICENESS = 10


def cores() -> int:
    """Cores this process may run on (the affinity mask, not the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:                       # macOS, Windows
        return max(1, os.cpu_count() or 1)


def _single_threaded(parent_death_signal: bool = False) -> None:
    """Pool initializer: one thread per worker, set before StarDist's OpenMP code loads.

    Also a lower priority (``WORKER_NICENESS``). Ctrl+C is the main process' to handle
    (it stops the run and keeps the planes written); workers ignore it instead of each
    printing a traceback. And the worker ends itself when the run's process dies
    (``exit_with_parent``).
    """
    import signal

    for name in THREAD_VARIABLES:
        os.environ[name] = "1"
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(os, "nice"):                      # not on Windows
        os.nice(WORKER_NICENESS)
    exit_with_parent(parent_death_signal)


#: How often a worker's watcher wakes to compare its parent pid (its parent's
#: sentinel wakes it at once): one poll() and one getppid() per second.
PARENT_CHECK_S = 1.0


def exit_with_parent(parent_death_signal: bool = False) -> None:
    """End this worker (``os._exit``) within seconds of its parent's death, however it dies.

    Why: a killed run (``kill -9``, a crash, the OOM killer) never shuts its pool down,
    and the executor's own wake-up never comes, since every worker holds a copy of both
    ends of the job queue's pipe. Idle workers (~150 MB each) then waited forever, and
    with them the resource tracker, which ends when the last holder of its pipe does.
    A daemon thread waits on ``multiprocessing.parent_process().sentinel`` (readable
    the moment the parent dies, on every platform) and compares ``os.getppid()`` with
    the parent's pid once per ``PARENT_CHECK_S``. On Linux, ``parent_death_signal`` adds
    ``prctl(PR_SET_PDEATHSIG, SIGKILL)``: instant, but tied to the *thread* that started
    the worker, hence only asked for when that is the main thread.
    """
    import multiprocessing
    import threading

    parent = multiprocessing.parent_process()
    parent_pid = parent.pid if parent is not None and parent.pid else os.getppid()
    sentinel = None if parent is None else parent.sentinel
    if parent_death_signal:
        _set_parent_death_signal()
    if os.getppid() != parent_pid and sys.platform != "win32":
        os._exit(1)                              # the parent died before we got here
    threading.Thread(target=_watch_parent, args=(parent_pid, sentinel), daemon=True,
                     name="stardist-parent-watch").start()


def _watch_parent(parent_pid: int, sentinel, interval: float = PARENT_CHECK_S) -> None:
    import time
    from multiprocessing.connection import wait

    while True:
        if sentinel is None:
            time.sleep(interval)
        elif wait([sentinel], timeout=interval):
            os._exit(1)
        if sys.platform != "win32" and os.getppid() != parent_pid:
            os._exit(1)


def _set_parent_death_signal() -> None:
    """Linux only, best effort: SIGKILL this process when the thread that started it ends."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes
        import signal

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _ready() -> int:
    """A no-op job that imports what real jobs need, so start-up happens up front (none of
    stardist, TensorFlow or scikit-image: NMS, rendering and measuring are our own code)."""
    from ..analysis.measure import Calibration, measure_plane
    from .nms import non_maximum_suppression_sparse
    from .rendering import polygons_to_label
    # load the compiled code (compiled once per installation, ~15-30 s, then cached by numba)
    labels = polygons_to_label(np.ones((1, 8), np.float32), np.full((1, 2), 4, np.float32), (8, 8))
    non_maximum_suppression_sparse(np.ones((2, 8), np.float32), np.ones(2, np.float32), np.zeros((2, 2), np.float32))
    measure_plane(labels, [labels.astype(np.float32)], None, Calibration())
    return os.getpid()


def post_process(sparse: SparsePrediction, channels: Sequence[np.ndarray] | None = None,
                 calibration: Calibration | None = None, time_point: int = 0,
                 z: int = 0) -> tuple[np.ndarray, dict, dict | None]:
    """NMS and label rendering of one plane, then its measurements when ``channels`` are given.

    A job of the worker processes, and the same call in the run's own process when
    there is no pool: both compute the same numbers.
    """
    labels, details = instances(sparse)
    return labels, details, measured(labels, details, channels, calibration, time_point, z)


def measured(labels: np.ndarray, details: dict, channels: Sequence[np.ndarray] | None,
             calibration: Calibration | None, time_point: int = 0, z: int = 0) -> dict | None:
    """The plane's nuclei table (plane IDs), or None when not measuring."""
    if channels is None or calibration is None:
        return None
    from .measuring import measure_instances
    return measure_instances(labels, details, channels, calibration, time_point, z)


class WorkerBootstrapError(RuntimeError):
    """``run()`` was called while a worker process was starting (a script without a main guard)."""


def check_not_bootstrapping() -> None:
    """Stop a script without ``if __name__ == "__main__":`` from running again in each worker.

    A spawned worker imports the script that started it; an unguarded ``run()`` call
    there would segment the whole stack again. Raising here fails that worker's start
    instead, and the real run falls back to segmenting sequentially.
    """
    import multiprocessing

    if getattr(multiprocessing.current_process(), "_inheriting", False):
        raise WorkerBootstrapError(
            "run() was called while a worker process was starting: put the code that calls it "
            "under `if __name__ == \"__main__\":`")


def pool_refusal(wanted: int | None, n_planes: int, allowed_by_host: bool) -> str | None:
    """Why no pool may be used in this run ("" = nothing worth saying), or None if one may.

    ``wanted`` is the WORKERS setting: None = one per core on 2+ cores, started only when
    the run's own plane times say it pays (``pool_judge``), 0 = never, n = n workers
    whenever there are 2+ planes.
    """
    if wanted == 0 or n_planes < 2:
        return ""
    if wanted is None and cores() < 2:
        return ""
    if not allowed_by_host:
        return "Worker processes are not available inside this application: segmenting sequentially."
    if sys.platform == "win32" and not os.path.basename(sys.executable).lower().startswith("python"):
        return f"Worker processes need a python executable, not {sys.executable}: segmenting sequentially."
    return None


class PendingPool:
    """Worker processes starting in the background (while the model loads).

    ``wait``: started now, and the run waits for them before its first plane (WORKERS set
    to a number); otherwise (WORKERS None) nothing starts until ``begin()`` (when the run's
    plane times say the pool pays), and planes go sequentially until the workers answer
    (``poll``), so a run never waits for a pool that it cannot repay.
    """

    def __init__(self, n_workers: int, wait: bool = True) -> None:
        self.n_workers = n_workers
        self.wait = wait
        self.ready_after: float | None = None    # seconds the workers took to answer
        self._failed = False
        self._warm: list[Future] = []
        self.executor: ProcessPoolExecutor | None = None
        self._closing = None             # the thread that shuts the pool down
        if wait:
            self.begin()

    @property
    def begun(self) -> bool:
        return self.executor is not None

    def begin(self) -> None:
        """Start the worker processes (in the background: ``poll`` says when they answer)."""
        import multiprocessing
        import threading
        import time

        self.started = time.monotonic()
        # The workers start below, from this thread (one per ``_ready`` job): the
        # parent-death signal is tied to it, so it is only asked for from the main thread.
        main_thread = threading.current_thread() is threading.main_thread()
        self.executor = ProcessPoolExecutor(self.n_workers, mp_context=multiprocessing.get_context("spawn"),
                                            initializer=_single_threaded, initargs=(main_thread,))
        self._warm = [self.executor.submit(_ready) for _ in range(self.n_workers)]

    def ready(self, log: Callable[[str], None]) -> ProcessPoolExecutor | None:
        """The started pool, or None (said in one line) if it could not start."""
        if self._failed or not self.begun:
            return None
        try:
            for future in self._warm:
                future.result(timeout=START_TIMEOUT_S)
        except Exception as error:               # any failure to start means: sequential
            log(f"Worker processes could not start ({type(error).__name__}: {error}); segmenting "
                "sequentially. A script that calls run() must do so under `if __name__ == \"__main__\":`.")
            self._failed = True
            self.shutdown()
            return None
        if self.ready_after is None:
            import time
            self.ready_after = time.monotonic() - self.started
        return self.executor

    def poll(self, log: Callable[[str], None]) -> ProcessPoolExecutor | None:
        """The pool if every worker has answered, else None at once (a failure is said once)."""
        if self._failed or not self.begun or not all(future.done() for future in self._warm):
            return None
        return self.ready(log)

    def shutdown(self, wait: bool = False) -> None:
        """Stop the workers (pending jobs cancelled) without holding the run up; with ``wait``,
        return once they have exited. Why wait at a run's end: a pool still closing when the
        process exits can make CPython's exit-time wake-up of its manager thread fail with
        EBADF (an unlocked check-then-write in ``concurrent.futures.process._python_exit``,
        Python 3.11): a run that ended cleanly then exits with a traceback."""
        import threading

        if self.executor is not None:
            executor, self.executor = self.executor, None
            self._closing = threading.Thread(target=executor.shutdown, name="worker-pool-shutdown",
                                             kwargs={"wait": True, "cancel_futures": True}, daemon=True)
            self._closing.start()
        if wait and self._closing is not None:
            self._closing.join()


def start_pool(wanted: int | None, n_planes: int, allowed_by_host: bool,
               log: Callable[[str], None]) -> PendingPool | None:
    """The pool the WORKERS setting asks for (started now; with None, when it pays), or say
    why not; never raises."""
    refusal = pool_refusal(wanted, n_planes, allowed_by_host)
    if refusal is not None:
        if refusal:
            log(refusal)
        return None
    try:
        return PendingPool(cores() if wanted is None else wanted, wait=wanted is not None)
    except Exception as error:
        log(f"Worker processes could not start ({type(error).__name__}: {error}); segmenting sequentially.")
        return None
