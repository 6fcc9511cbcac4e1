"""The job status JSON, derived from a run's per-stage counters.

Shape (stored in etl_jobs.status, sent as-is over WebSockets):

    {"overall": "RUNNING",
     "steps": {"jira_projects_and_issue_types": {"order": 1, "extraction": "finished",
               "transform": "running", "embedding": "idle", "display_name": "Projects & Types"}}}

Stage states are computed, never incremented: a stage is finished when its upstream
stage is finished and none of its own items is pending. Recomputing from counters
makes the result the same whatever order or concurrency the messages were handled in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

IDLE, RUNNING, FINISHED, FAILED = "idle", "running", "finished", "failed"
STAGES = ("extraction", "transform", "embedding")
OVERALL_STATES = ("NOT_STARTED", "READY", "RUNNING", "FINISHED", "FAILED")


@dataclass(frozen=True)
class StepDef:
    name: str
    display_name: str


@dataclass(frozen=True)
class StageCount:
    created: int = 0
    done: int = 0
    failed: int = 0

    @property
    def pending(self) -> int:
        return self.created - self.done - self.failed


Counters = Mapping[tuple[str, str], StageCount]


def fresh_status(steps: Sequence[StepDef], overall: str = "RUNNING") -> dict[str, Any]:
    return {
        "overall": overall,
        "steps": {
            step.name: {
                "order": index,
                "extraction": IDLE,
                "transform": IDLE,
                "embedding": IDLE,
                "display_name": step.display_name,
            }
            for index, step in enumerate(steps, start=1)
        },
    }


def _stage_state(count: StageCount, upstream_finished: bool) -> str:
    if count.failed:
        return FAILED
    if count.pending > 0:
        return RUNNING
    if upstream_finished:
        return FINISHED
    return RUNNING if count.created else IDLE


def step_states(counters: Counters, step: str, started: bool) -> dict[str, str]:
    """The three stage states of one step."""
    if not started:
        return {stage: IDLE for stage in STAGES}
    states: dict[str, str] = {}
    upstream = True  # extraction has no upstream: its root item exists once the step starts
    for stage in STAGES:
        state = _stage_state(counters.get((step, stage), StageCount()), upstream)
        states[stage] = state
        upstream = state == FINISHED
    return states


@dataclass(frozen=True)
class Progress:
    status: dict[str, Any]
    next_step_ready: bool  # the newest started step is loaded: the next one may start
    complete: bool  # every step started and every stage finished
    failed_step: str | None


def evaluate(
    steps: Sequence[StepDef], counters: Counters, current_step: int, overall: str = "RUNNING"
) -> Progress:
    status = fresh_status(steps, overall)
    failed_step: str | None = None
    all_finished = current_step == len(steps)
    next_ready = False
    for index, step in enumerate(steps, start=1):
        states = step_states(counters, step.name, index <= current_step)
        status["steps"][step.name].update(states)
        if FAILED in states.values() and failed_step is None:
            failed_step = step.name
        if any(state != FINISHED for state in states.values()):
            all_finished = False
        if index == current_step:
            # The next step reads what this one loaded, so it waits for transform, not for
            # embeddings, which keep running alongside.
            next_ready = states["extraction"] == FINISHED and states["transform"] == FINISHED
    return Progress(status, next_ready and current_step < len(steps), all_finished, failed_step)


def with_overall(status: Mapping[str, Any], overall: str) -> dict[str, Any]:
    out = dict(status)
    out["overall"] = overall
    return out
