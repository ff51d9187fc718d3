"""A small thread-safe, size-bounded memo: app sessions run in threads of one process and share these."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

Value = TypeVar("Value")


class _Pending:
    """A value one thread is computing; the others wait for it."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: object = None
        self.failed = False


class BoundedMemo(Generic[Value]):
    """``get(key, compute)``: the value for ``key``, computed once (one thread computes, others asking for the same
    key wait for it); the least recently used entry is dropped beyond ``size`` entries.

    The lock guards the table only, never a computation: while one session computes a key (a fit, a new slider
    value's scores), the other sessions' lookups of other keys go on."""

    def __init__(self, size: int):
        self.size = size
        self._values: OrderedDict[Hashable, Value] = OrderedDict()
        self._pending: dict[Hashable, _Pending] = {}
        self._lock = threading.RLock()

    def get(self, key: Hashable, compute: Callable[[], Value]) -> Value:
        while True:
            with self._lock:
                if key in self._values:
                    self._values.move_to_end(key)
                    return self._values[key]
                pending = self._pending.get(key)
                computing = pending is None
                if computing:
                    pending = self._pending[key] = _Pending()
            if computing:
                return self._compute(key, compute, pending)
            pending.done.wait()
            if not pending.failed:
                return pending.value  # type: ignore[return-value]
            # the computing thread failed: try again (the error, if it repeats, is this thread's own)

    def _compute(
        self, key: Hashable, compute: Callable[[], Value], pending: _Pending
    ) -> Value:
        try:
            value = compute()
        except BaseException:
            with self._lock:
                del self._pending[key]
            pending.failed = True
            pending.done.set()
            raise
        with self._lock:
            self._values[key] = value
            self._values.move_to_end(key)
            while len(self._values) > self.size:
                self._values.popitem(last=False)
            del self._pending[key]
        pending.value = value
        pending.done.set()
        return value

    def peek(self, key: Hashable) -> Value | None:
        """The value for ``key`` if present (never computes)."""
        with self._lock:
            return self._values.get(key)

    def put(self, key: Hashable, value: Value) -> None:
        with self._lock:
            self._values[key] = value
            self._values.move_to_end(key)
            while len(self._values) > self.size:
                self._values.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._values.clear()

    def __len__(self) -> int:
        return len(self._values)
