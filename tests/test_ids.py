"""Execution ids: unique across threads and forked processes, URL-safe, sortable by time."""

from __future__ import annotations

import os
import re
import threading
import time

from durable_core.ids import new_execution_id


def test_ids_are_url_safe_and_sort_by_the_time_they_were_made() -> None:
    first = new_execution_id()
    time.sleep(0.002)
    later = [new_execution_id() for _ in range(1000)]
    assert all(re.fullmatch(r"te_[-0-9A-Z_a-z]{24}", i) for i in [first, *later])
    assert first < min(later)


def test_ids_made_at_once_on_many_threads_never_repeat() -> None:
    made: list[list[str]] = [[] for _ in range(4)]

    def make(out: list[str]) -> None:
        out.extend(new_execution_id() for _ in range(5000))  # each thread crosses many system reads

    threads = [threading.Thread(target=make, args=(out,)) for out in made]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [i for out in made for i in out]
    assert len(set(every)) == len(every) == 20_000


def test_a_forked_child_does_not_repeat_its_parents_next_ids() -> None:
    new_execution_id()  # random bytes are buffered in the parent now
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ids, to the parent
        os.write(write, " ".join(new_execution_id()[11:] for _ in range(100)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child = set(pipe.read().split())
    os.waitpid(pid, 0)
    parent = {new_execution_id()[11:] for _ in range(100)}
    assert len(child) == 100 and not child & parent
