"""Worker processes with in-order results: the order, the errors, and that a dead process never hangs the caller."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import time

import pytest

from telemetry_export.reader_processes import BlockFailed, ProcessDied, results_in_order

_prefix = ""


def _set_prefix(prefix: str) -> None:
    global _prefix
    _prefix = prefix


def _label(block: tuple[int, bytes]) -> tuple[str, int, int]:
    number, padding = block
    return f"{_prefix}{number}", len(padding), os.getpid()


def _fail_on_seven(number: int) -> int:
    if number == 7:
        raise ValueError("seven is refused")
    if number == 9:
        raise KeyError("not an expected error")
    return number


def _die_on_three(block: tuple[int, bytes]) -> int:
    number, _ = block
    if number == 3:
        os.kill(os.getpid(), signal.SIGKILL)  # as the kernel's out-of-memory killer would
    return number


def _large_result(number: int) -> bytes:
    return bytes(8 << 20)  # far more than a pipe holds: the process blocks writing it


def _no_children_left() -> bool:
    return not multiprocessing.active_children()


def test_results_come_in_the_blocks_order_from_several_processes_each_set_up_first():
    blocks = [(number, bytes(number * 1000)) for number in range(25)]
    results = list(results_in_order(blocks, _label, 3, setup=_set_prefix, setup_arguments=("block-",)))
    assert [(label, size) for label, size, _ in results] == [(f"block-{n}", n * 1000) for n in range(25)]
    pids = {pid for _, _, pid in results}
    assert len(pids) == 3 and os.getpid() not in pids
    assert _no_children_left()


def test_fewer_blocks_than_processes_and_no_blocks_at_all():
    assert [label for label, _, _ in results_in_order([(0, b""), (1, b"")], _label, 4)] == ["0", "1"]
    assert list(results_in_order([], _label, 2)) == []
    assert _no_children_left()


def test_an_expected_error_is_raised_in_its_blocks_turn_after_every_earlier_result():
    seen = []
    with pytest.raises(BlockFailed) as failure:
        for result in results_in_order(range(20), _fail_on_seven, 2, expected_errors=(ValueError,)):
            seen.append(result)
    assert seen == list(range(7))
    assert isinstance(failure.value.error, ValueError) and str(failure.value.error) == "seven is refused"
    assert _no_children_left()


def test_an_unexpected_error_fails_the_run_with_its_traceback():
    with pytest.raises(ProcessDied, match="^failed: KeyError: 'not an expected error'$"):
        list(results_in_order(range(8, 20), _fail_on_seven, 2, expected_errors=(ValueError,)))
    assert _no_children_left()


def test_a_process_killed_with_large_blocks_queued_fails_the_run_at_once():
    # The case a pool executor could hang on: a worker dies while large blocks wait for it.
    blocks = ((number, bytes(4 << 20)) for number in range(12))
    started = time.monotonic()
    seen = []
    with pytest.raises(
        ProcessDied, match=r"^died: its pipe ended \((EOFError|BrokenPipeError|ConnectionResetError)\)$"
    ):
        for result in results_in_order(blocks, _die_on_three, 2):
            seen.append(result)
    assert seen == [0, 1, 2]
    assert time.monotonic() - started < 20
    assert _no_children_left()


def test_a_caller_that_stops_early_ends_processes_stuck_writing_results():
    results = results_in_order(range(6), _large_result, 2)
    assert len(next(results)) == 8 << 20
    processes = multiprocessing.active_children()
    time.sleep(0.5)  # both processes now block on writing a result nobody reads
    started = time.monotonic()
    results.close()
    assert time.monotonic() - started < 3  # killed, not waited for
    assert [process.exitcode for process in processes] == [-signal.SIGKILL] * 2
    assert _no_children_left()


def _slow_pid(number: int) -> int:
    time.sleep(0.1)
    return os.getpid()


def test_ctrl_c_is_left_to_the_caller_a_process_goes_on():
    # A terminal's Ctrl-C reaches every process of the group; the caller decides what it means.
    pids = []
    for pid in results_in_order(range(12), _slow_pid, 2):
        if not pids:
            os.kill(pid, signal.SIGINT)
        pids.append(pid)
    assert len(pids) == 12 and pids.count(pids[0]) == 6
    assert _no_children_left()


def test_no_processes_is_refused_rather_than_no_results():
    with pytest.raises(ValueError, match="at least one process"):
        list(results_in_order(range(3), _fail_on_seven, 0))


def test_one_process_is_enough():
    assert [label for label, _, _ in results_in_order([(n, b"") for n in range(5)], _label, 1)] == list("01234")
    assert _no_children_left()


def test_processes_start_fresh_rather_than_as_copies_of_the_caller(monkeypatch):
    # Spawned, not forked: a fork would copy the caller's threads' locks (a database driver's, say) mid-use.
    monkeypatch.setattr(sys.modules[__name__], "_prefix", "set in the caller ")
    assert [label for label, _, _ in results_in_order([(0, b"")], _label, 1)] == ["0"]


def test_an_iteration_left_unfinished_does_not_hold_up_the_callers_exit():
    # A caller may drop an iteration without closing it; at exit its processes must not be waited for.
    script = (
        "from telemetry_export.reader_processes import results_in_order\n"
        "results = results_in_order(range(100), abs, 2)\n"
        "print(next(results))\n"
    )
    finished = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert finished.returncode == 0 and finished.stdout == "0\n", finished.stderr


def test_processes_of_a_finished_iteration_are_told_to_stop_and_exit_cleanly():
    results = results_in_order(range(4), abs, 2)
    first = next(results)
    processes = multiprocessing.active_children()
    assert len(processes) == 2
    assert [first, *results] == [0, 1, 2, 3]
    assert [process.exitcode for process in processes] == [0, 0]  # stopped by their pipe, not killed
