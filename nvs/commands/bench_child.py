"""One benchmark case in a process of its own: its time and peak memory are its own, and a crash
or an out-of-memory kill ends the case with an error instead of the command or a wait forever.

The child is a fresh interpreter (``spawn``): a process forked from one that has already run torch
can hang in OpenMP's thread pool, as a forked benchmark did when called from such a process.
"""

from __future__ import annotations

import multiprocessing
from typing import Callable


def send_to_parent(conn, value) -> None:
    """A child's one result: sent, then held until the parent has it (tensors travel as shared
    memory, which must outlive the child's send)."""
    conn.send(value)
    conn.recv()
    conn.close()


def run_in_child(target: Callable, *args, what: str):
    """Run ``target(*args, conn)`` (a module-level function that ends with :func:`send_to_parent`;
    it calls ``nvs.inference.reuse_freed_memory`` where it should allocate as the ``nvs`` command
    does) in a fresh interpreter and return what it sent. A RuntimeError naming ``what`` where
    the child dies first (its traceback is printed above it; no traceback: killed, perhaps out of
    memory)."""
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=target, args=(*args, child))
    proc.start()
    child.close()  # the child holds the only other end now: if it dies, recv() ends instead of waiting
    try:
        try:
            result = parent.recv()
        except EOFError:
            proc.join()
            raise RuntimeError(f"{what} failed in its process (exit code {proc.exitcode}; its error is printed "
                               "above, or it was killed: out of memory?)") from None
        try:
            parent.send("received")
        except (BrokenPipeError, ConnectionResetError):  # it ended after sending: nothing left to release
            pass
        proc.join()
        return result
    finally:
        if proc.is_alive():  # the parent was interrupted (Ctrl-C): the case ends with it
            proc.kill()
            proc.join()
