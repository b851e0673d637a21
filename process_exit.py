"""Ending a command-line process without Python's module teardown.

Why: a process that imported TensorFlow spends ~1.2-1.5 s in the interpreter's final teardown
(TensorFlow's and Keras' module objects freed one by one, measured on a 2-core Xeon) after
everything is written: a user's run would seem to hang for that long after its last line.
``end_process`` does what a normal exit does that matters (stops idle thread pools and waits
for non-daemon threads, as ``threading._shutdown`` does at every exit; runs the ``atexit``
handlers: multiprocessing joins its children, logging flushes; flushes stdout and stderr)
and then leaves with ``os._exit``. Only for processes we start
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
    shutdown = getattr(threading, "_shutdown", None)     # what the interpreter's exit runs first: it stops
    if shutdown is not None and threading.current_thread() is threading.main_thread():   # idle thread pools
        shutdown()
    else:
        for thread in threading.enumerate():
            if thread is not threading.current_thread() and not thread.daemon:
                thread.join()
    atexit._run_exitfuncs()           # noqa: SLF001  (what sys.exit would run; os._exit does not)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):   # closed or replaced streams
            pass
    os._exit(code)
