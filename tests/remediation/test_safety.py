"""Safety rails with literal times: the dedup window, the blast-radius allowance, retries and backoff."""

from __future__ import annotations

import pytest

from gpulens.remediation.safety import (
    BlastRadius,
    BlastRadiusLimit,
    Deduplicator,
    HookLimit,
    HookLimitSettings,
    with_retries,
)


def test_dedup_remembers_fingerprint_and_status_for_the_window() -> None:
    dedup = Deduplicator(window=600)
    assert dedup.first_time("fp1", "firing", 0.0)
    assert not dedup.first_time("fp1", "firing", 599.0)  # inside the window
    assert dedup.first_time("fp1", "resolved", 599.0)  # a resolution is news
    assert dedup.first_time("fp2", "firing", 599.0)  # another alert
    assert dedup.first_time("fp1", "firing", 600.0)  # the window has passed


@pytest.mark.parametrize(
    ("max_nodes", "fraction", "fleet", "allowance"),
    [
        (2, 0.1, 0, 2),  # fleet unknown: node count only
        (5, 0.1, 20, 2),  # 10% of 20 nodes = 2 < 5
        (2, 0.5, 100, 2),  # 50% of 100 = 50 > 2
        (3, 0.01, 10, 1),
    ],  # 1% of 10 rounds to 0: never below one node
)
def test_blast_radius_allowance_is_the_tighter_of_nodes_and_fraction(
    max_nodes: int, fraction: float, fleet: int, allowance: int
) -> None:
    assert BlastRadiusLimit(max_nodes, fraction, fleet).allowance == allowance


def test_blast_radius_counts_distinct_nodes_per_window() -> None:
    blast = BlastRadius(BlastRadiusLimit(max_nodes=2, window=3600))
    assert blast.admit("a", 0.0)
    assert blast.admit("b", 10.0)
    assert blast.admit("a", 20.0)  # the same node again widens nothing
    assert not blast.admit("c", 30.0)  # a third node within the hour
    assert blast.admit("c", 3600.0)  # "a" has aged out
    assert not blast.admit("d", 3605.0)  # "b" (t=10) and "c" fill the window


def test_retries_back_off_doubling_then_give_up() -> None:
    waits: list[float] = []
    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise TimeoutError("not yet")
        return "ok"

    assert with_retries(flaky, retries=3, backoff=0.5, retry_on=(TimeoutError,), sleep=waits.append) == "ok"
    assert waits == [0.5, 1.0]

    waits.clear()
    with pytest.raises(TimeoutError):
        with_retries(
            lambda: (_ for _ in ()).throw(TimeoutError("never")),
            retries=2,
            backoff=1.0,
            retry_on=(TimeoutError,),
            sleep=waits.append,
        )
    assert waits == [1.0, 2.0]


def test_errors_outside_retry_on_are_not_retried() -> None:
    waits: list[float] = []
    with pytest.raises(KeyError):
        with_retries(lambda: {}["x"], retries=5, backoff=1.0, retry_on=(TimeoutError,), sleep=waits.append)
    assert waits == []


def test_hook_limit_counts_per_job_and_in_all_within_the_window() -> None:
    # Ledger: 1 per job, 3 in all, per 3600 s. t=0 j1 yes, j1 no (job), j2 yes, j3 yes, j4 no (total);
    # t=3600: the runs of t=0 have aged out -> j4 yes.
    limit = HookLimit(HookLimitSettings(max_per_job=1, max_total=3))
    assert [limit.admit(job, 0.0) for job in ("j1", "j1", "j2", "j3", "j4")] == [
        True,
        False,
        True,
        True,
        False,
    ]
    assert limit.admit("j4", 3600.0)


def test_dedup_on_any_of_several_keys() -> None:
    dedup = Deduplicator(window=60)
    assert dedup.first_time_of([("identity", "a"), ("fingerprint", "f1")], "firing", 0.0)
    assert not dedup.first_time_of([("identity", "a"), ("fingerprint", "f2")], "firing", 1.0)  # same identity
    assert not dedup.first_time_of(
        [("identity", "b"), ("fingerprint", "f1")], "firing", 1.0
    )  # same fingerprint
    assert dedup.first_time_of([("identity", "b"), ("fingerprint", "f3")], "firing", 1.0)
