"""Ending a command-line process without Python's module teardown.

Why: a process that imported TensorFlow spends ~1.2-1.5 s in the interpreter's final teardown
(TensorFlow's and Keras' module objects freed one by one, measured on a 2-core Xeon) after
everything is written: a user's run would seem to hang for that long after its last line.
``end_process`` does what a normal exit does that matters (waits for non-daemon threads,
runs the ``atexit`` handlers: multiprocessing joins its children, logging flushes; flushes
stdout and stderr) and then leaves with ``os._exit``. Only for processes we start
ourselves: never inside a host application's interpreter, never from a library call.
"""
from __future__ import annotations

import atexit
import os
import sys
import threading
from typing import NoReturn


def end_process(code: int) -> NoReturn:
    """Exit with ``code`` once threads, ``atexit`` handlers and the standard streams are done."""
    current = threading.current_thread()
    for thread in threading.enumerate():
        if thread is not current and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()           # noqa: SLF001  (what sys.exit would run; os._exit does not)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):   # closed or replaced streams
            pass
    os._exit(code)
