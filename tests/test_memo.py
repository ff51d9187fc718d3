"""The shared memo: bounded, least-recently-used eviction, and one computation per key under concurrency."""

import threading
import time

from ood_core.memo import BoundedMemo


def test_bounded_with_least_recently_used_eviction():
    memo = BoundedMemo(2)
    calls = []

    def value(key):
        return lambda: calls.append(key) or key * 10

    assert memo.get(1, value(1)) == 10 and memo.get(2, value(2)) == 20
    assert memo.get(1, value(1)) == 10  # 1 is now the most recent
    memo.get(3, value(3))  # evicts 2
    assert len(memo) == 2
    memo.get(1, value(1))
    memo.get(2, value(2))
    assert calls == [1, 2, 3, 2]


def test_concurrent_sessions_compute_a_key_once():
    memo = BoundedMemo(4)
    calls = []

    def slow():
        calls.append(1)
        time.sleep(0.2)
        return object()

    results = []
    threads = [
        threading.Thread(target=lambda: results.append(memo.get("k", slow)))
        for _ in range(6)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert len({id(r) for r in results}) == 1


def test_a_slow_computation_does_not_hold_up_other_keys():
    memo = BoundedMemo(4)
    released, other = threading.Event(), []
    slow = threading.Thread(target=lambda: memo.get("fit", lambda: released.wait(30)))
    slow.start()
    time.sleep(0.05)  # the fit is being computed
    reader = threading.Thread(
        target=lambda: other.append(memo.get("scores", lambda: 1))
    )
    reader.start()
    reader.join(timeout=5)
    assert other == [1], "a lookup of another key waited for the fit"
    released.set()
    slow.join(timeout=5)
    assert memo.get("fit", lambda: "again") is True


def test_a_failed_computation_is_not_kept_and_a_waiting_thread_computes_again():
    memo = BoundedMemo(4)
    started, calls, results = threading.Event(), [], []

    def failing():
        calls.append("first")
        started.set()
        time.sleep(0.2)
        raise RuntimeError("out of memory")

    def first():
        try:
            memo.get("k", failing)
        except RuntimeError:
            results.append("raised")

    owner = threading.Thread(target=first)
    owner.start()
    started.wait(5)
    waiter = threading.Thread(
        target=lambda: results.append(
            memo.get("k", lambda: calls.append("second") or 7)
        )
    )
    waiter.start()
    owner.join(5)
    waiter.join(5)
    assert calls == ["first", "second"] and sorted(map(str, results)) == ["7", "raised"]
