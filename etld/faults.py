"""Crash points: make the process die at a named place, for the chaos tests.

`ETLD_CRASH_AT=name:count` makes the `count`-th call of `crash_point(name)` end the
process at once with `os._exit(137)`, the exit status of a process killed by SIGKILL:
no cleanup, no ack, no commit of an open transaction. Several points can be given,
separated by commas (`page_stored:3,status_update:40`). Without the variable every
call is a dictionary lookup and nothing else.

The points:

- `page_stored`: a raw page and its transform item are committed, the transform
  message is not published yet (the outbox sweep must publish it).
- `load_committed`: a transform's load is committed, its item is not marked done and
  its message is not acked (the redelivery must be harmless).
- `status_update`: inside the transaction that marks an item done and rewrites the
  job's status, before it commits (the transaction must roll back cleanly).
- `before_ack`: a handler finished, its message is not acked yet.
"""

from __future__ import annotations

import os
import sys

ENV = "ETLD_CRASH_AT"
EXIT_CODE = 137


def _parse(spec: str) -> dict[str, int]:
    points: dict[str, int] = {}
    for part in spec.split(","):
        name, _, count = part.strip().partition(":")
        if name:
            points[name] = int(count) if count.strip() else 1
    return points


_targets: dict[str, int] = _parse(os.environ.get(ENV, ""))
_seen: dict[str, int] = {}


def crash_point(name: str) -> None:
    """Die here if `ETLD_CRASH_AT` names this point and this is the call it counts to."""
    target = _targets.get(name)
    if target is None:
        return
    seen = _seen.get(name, 0) + 1
    _seen[name] = seen
    if seen == target:
        sys.stderr.write(f"etld: crash point {name} reached (call {seen}), exiting\n")
        sys.stderr.flush()
        os._exit(EXIT_CODE)
