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
