"""CPU time of running processes and their descendants, read from /proc (Linux).

A process's total is its own user and system time plus the time of the children it has reaped
(`cutime`, `cstime`): a Postgres backend that ended when its client disconnected, or a worker
that was replaced, still counts, through its parent. Summed over a live process tree this counts
every process once: a live child's time is in its own line, a reaped one's in its parent's.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    return text[text.rindex(")") + 2 :].split()


def cpu_seconds(pid: int, with_reaped_children: bool = True) -> float:
    """User plus system seconds of `pid` (and of its reaped children); 0 when it is gone."""
    fields = _stat_fields(pid)
    if fields is None:
        return 0.0
    # After the name: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14)
    ticks = int(fields[11]) + int(fields[12])
    if with_reaped_children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / _TICKS


def children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return found
    for task in tasks:
        try:
            found.extend(int(child) for child in (task / "children").read_text().split())
        except OSError:
            continue
    return found


def descendants(pid: int) -> list[int]:
    result, pending = [], children(pid)
    while pending:
        child = pending.pop()
        result.append(child)
        pending.extend(children(child))
    return result


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def tree_cpu_seconds(pid: int) -> float:
    """`pid` and every live descendant, each with its reaped children."""
    return sum(cpu_seconds(p) for p in [pid, *descendants(pid)])


@dataclass(frozen=True)
class Meter:
    """One named group of processes whose CPU time is read the same way before and after a run."""

    name: str
    read: Callable[[], float]


def gateway_meters(gateway_pid: int) -> list[Meter]:
    """The gateway's main process (with multiprocessing's helper) and its worker processes, apart."""

    def workers() -> list[int]:
        return [p for p in children(gateway_pid) if "spawn_main" in cmdline(p)]

    def main() -> float:
        helpers = [p for p in children(gateway_pid) if p not in workers()]
        # The main process alone: its reaped children would be replaced workers.
        return cpu_seconds(gateway_pid, with_reaped_children=False) + sum(tree_cpu_seconds(p) for p in helpers)

    return [
        Meter("gateway main process", main),
        Meter("gateway workers", lambda: sum(tree_cpu_seconds(p) for p in workers())),
    ]


def postmaster_pid(backend_pid: int) -> int:
    """The postmaster of the backend serving a connection (`SELECT pg_backend_pid()`)."""
    fields = _stat_fields(backend_pid)
    if fields is None:
        raise RuntimeError(f"no process {backend_pid}: is Postgres on another machine?")
    return int(fields[1])


def read_all(meters: Iterable[Meter]) -> dict[str, float]:
    return {meter.name: meter.read() for meter in meters}


def per_event_lines(before: dict[str, float], after: dict[str, float], events: int) -> list[str]:
    """`name  N µs per event` for each meter, then the total."""
    lines, total = [], 0.0
    width = max(len(name) for name in before)
    for name in before:
        seconds = after[name] - before[name]
        total += seconds
        lines.append(f"  {name:<{width}}  {seconds * 1e6 / events:7.1f} µs per event  ({seconds:.2f} s)")
    lines.append(f"  {'total':<{width}}  {total * 1e6 / events:7.1f} µs per event  ({total:.2f} s)")
    return lines
