"""The process context of the batch scorer's worker processes (:mod:`creditops.services.batch`).

A module light enough to import first: ``creditops score`` starts the fork server before it
imports the scoring code and asks the registry for the model, so the server's own imports
(LightGBM, scikit-learn, pandas, pyarrow: about 2 s of CPU) run on the other core meanwhile
instead of after. Forking the main process instead is not an option: a child forked after
the booster is built hangs at its first multi-threaded ``predict`` (LightGBM's OpenMP state).
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Sequence
from multiprocessing.context import BaseContext
from pathlib import Path

from creditops.registry.mlflow_store import scoped_env

BATCH_MODULE = "creditops.services.batch"
# Inputs at least this large (or directories) are worth starting the workers before the
# input is even opened; smaller ones may well be scored in one chunk, in process.
EARLY_START_BYTES = 1 << 20


def worker_context(modules: Sequence[str] = ()) -> BaseContext:
    """The fork server (started here if it is not running yet) that has imported the batch
    scorer and ``modules``, with one OpenMP thread per process; ``spawn`` where there is no
    fork server. The modules only matter to the call that starts the server."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    from multiprocessing import forkserver

    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([BATCH_MODULE, *modules])
    with scoped_env({"OMP_NUM_THREADS": "1"}):
        forkserver.ensure_running()
    return context


def start_early(input_path: Path, modules: Sequence[str], workers: int | None) -> None:
    """Start the fork server now when the input is large enough to be scored by workers."""
    if workers == 1:
        return
    try:
        large = input_path.is_dir() or input_path.stat().st_size >= EARLY_START_BYTES
    except OSError:
        return  # the scorer reports the missing input in its own words
    if large:
        worker_context(modules)
