"""Bulk loading: millions of new acyclic objects (parsed resources, column entries) make
Python's cycle collector rescan the growing heap again and again, which turns a linear load
superlinear. Nothing the loaders build makes a reference cycle, so collection pauses while
they run."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def cycle_collection_paused() -> Iterator[None]:
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()
