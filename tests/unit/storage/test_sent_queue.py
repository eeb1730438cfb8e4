"""The queue of results written behind (``record_sent``): when its writer thread is woken."""

from __future__ import annotations

import threading
import time

from engine.storage.db import _Sent, _SentQueue

LINGER_S = 0.02


def _item() -> _Sent:
    return _Sent([{"session": "S1", "step": 1}], {"notification_id": 1})


class _Waiter:
    """``wait_work`` on a thread of its own, as the writer thread calls it."""

    def __init__(self, queue: _SentQueue, timeout_s: float) -> None:
        self.result: bool | None = None
        self.took_s = 0.0
        self.thread = threading.Thread(target=self._run, args=(queue, timeout_s), daemon=True)

    def _run(self, queue: _SentQueue, timeout_s: float) -> None:
        started = time.monotonic()
        self.result = queue.wait_work(timeout_s)
        self.took_s = time.monotonic() - started

    def start(self) -> None:
        self.thread.start()

    def join(self) -> None:
        self.thread.join(30)
        assert not self.thread.is_alive()


def _counting_notifies(queue: _SentQueue) -> list[int]:
    calls = [0]
    notify_all = queue.cond.notify_all

    def counted() -> None:
        calls[0] += 1
        notify_all()

    queue.cond.notify_all = counted  # type: ignore[method-assign]
    return calls


def _until(condition, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.001)


def test_an_idle_writer_sleeps_until_the_first_result_wakes_it():
    queue = _SentQueue(LINGER_S)
    notifies = _counting_notifies(queue)
    waiter = _Waiter(queue, 20.0)
    waiter.start()
    _until(lambda: queue.sleeping)
    time.sleep(3 * LINGER_S)
    assert waiter.result is None  # nothing queued: still waiting, not looking every LINGER_S
    queue.put(_item())
    waiter.join()
    assert waiter.result is True
    assert notifies[0] == 1
    assert waiter.took_s < 10.0  # woken, not timed out


def test_while_results_keep_coming_a_put_wakes_nobody_and_the_writer_still_finds_it():
    queue = _SentQueue(LINGER_S)
    queue.put(_item())
    queue.take(alone=False)  # carried by a notification's transaction: the queue is empty again
    notifies = _counting_notifies(queue)
    waiter = _Waiter(queue, 20.0)
    waiter.start()
    time.sleep(2 * LINGER_S)
    assert not queue.sleeping  # it looks on its own
    queue.put(_item())
    waiter.join()
    assert waiter.result is True
    assert notifies[0] == 0
    assert waiter.took_s < 10.0  # found by its own look, not at the wait's 20 s timeout


def test_after_a_quiet_spell_the_writer_goes_back_to_sleep(monkeypatch):
    monkeypatch.setattr("engine.storage.db.SENT_WAKE_AFTER_IDLE_S", 0.1)
    queue = _SentQueue(LINGER_S)
    queue.put(_item())
    queue.take(alone=False)
    waiter = _Waiter(queue, 20.0)
    waiter.start()
    _until(lambda: queue.sleeping)  # about 0.1 s after the last result
    notifies = _counting_notifies(queue)
    queue.put(_item())
    waiter.join()
    assert waiter.result is True and notifies[0] == 1


def test_the_wait_ends_at_its_timeout_or_at_the_stop_signal():
    queue = _SentQueue(LINGER_S)
    waiter = _Waiter(queue, 0.05)
    waiter.start()
    waiter.join()
    assert waiter.result is False
    queue.put(_item())
    queue.take(alone=False)
    stopped = _Waiter(queue, 20.0)
    stopped.start()
    queue.stop.set()  # not notified: the writer, looking every LINGER_S, sees it
    stopped.join()
    assert stopped.result is True and stopped.took_s < 10.0
