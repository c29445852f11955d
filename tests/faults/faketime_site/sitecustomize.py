"""Loaded (as `sitecustomize`) only by the worker processes F8 runs under libfaketime.

libfaketime 0.9.10 (Debian 12) breaks `clock_nanosleep` on CLOCK_MONOTONIC when
FAKETIME_DONT_FAKE_MONOTONIC=1: it returns EINVAL, and Python 3.11's `time.sleep` uses it. (With
the monotonic clock faked too, sleeps hang instead.) `threading.Event.wait`, queues, `select` and
socket timeouts are unaffected, so `time.sleep` falls back to `select` with the same relative
timeout. Nothing else changes: the worker's wall clock is what libfaketime says.
"""

from __future__ import annotations

import select
import time

_sleep = time.sleep


def sleep(seconds: float) -> None:
    try:
        _sleep(seconds)
    except OSError:
        select.select([], [], [], max(0.0, seconds))


time.sleep = sleep
