"""controller.kopfpatches: kopf's start-up gate wakes its waiters once, not once per toggle.

On kopf's real ToggleSet (the class the fix changes), with real asyncio tasks.
The fix's effect on a whole operator is measured in bench/RESULTS.md; here the
semantics it must keep and the wakeups it must save.
"""

from __future__ import annotations

import asyncio

import pytest
from kopf._cogs.aiokits import aiotoggles

from controller import kopfpatches


@pytest.fixture(autouse=True)
def _fixed() -> None:
    assert kopfpatches.apply(), "the installed kopf's ToggleSet changed shape: re-check controller/kopfpatches.py"


def test_applying_twice_changes_nothing() -> None:
    method = aiotoggles.ToggleSet.make_toggle
    assert kopfpatches.apply()
    assert aiotoggles.ToggleSet.make_toggle is method


def _counting(toggles: aiotoggles.ToggleSet) -> list[int]:
    """Count evaluations of the set's state: one per waiter wakeup, plus the fix's own checks."""
    calls = [0]
    real = toggles.is_on

    def is_on() -> bool:
        calls[0] += 1
        return real()

    toggles.is_on = is_on  # type: ignore[method-assign]
    return calls


def test_waiters_of_the_gate_wake_when_it_opens_and_not_at_every_toggle() -> None:
    waiters = toggle_count = 200

    async def scenario() -> tuple[int, list[bool]]:
        gate = aiotoggles.ToggleSet(all)
        toggles = [await gate.make_toggle(name=f"object {i}") for i in range(toggle_count)]
        calls = _counting(gate)
        opened: list[bool] = []

        async def worker() -> None:
            await gate.wait_for(True)
            opened.append(gate.is_on())

        tasks = [asyncio.create_task(worker()) for _ in range(waiters)]
        await asyncio.sleep(0)
        for toggle in toggles[:-1]:
            await gate.drop_toggle(toggle)
            await asyncio.sleep(0)
        assert not opened, "a waiter went on while the gate was still closed"
        await gate.drop_toggle(toggles[-1])
        await asyncio.wait_for(asyncio.gather(*tasks), 5)
        return calls[0], opened

    calls, opened = asyncio.run(scenario())
    assert opened == [True] * waiters
    # Without the fix every drop wakes every waiter: about waiters * toggles = 40,000 evaluations.
    assert calls < 4 * (waiters + toggle_count), calls


def test_a_set_that_opens_and_closes_still_wakes_both_kinds_of_waiter() -> None:
    async def scenario() -> None:
        paused = aiotoggles.ToggleSet(any)  # kopf's operator_paused: on while any toggle is on
        for_on = asyncio.create_task(paused.wait_for(True))
        await asyncio.sleep(0)
        conflict = await paused.make_toggle(True, name="peer")
        await asyncio.wait_for(for_on, 5)
        for_off = asyncio.create_task(paused.wait_for(False))
        await asyncio.sleep(0)
        assert not for_off.done()
        await paused.drop_toggles([conflict])
        await asyncio.wait_for(for_off, 5)

    asyncio.run(scenario())


def test_a_toggle_turned_in_a_set_still_wakes_its_own_waiters_and_the_sets() -> None:
    async def scenario() -> None:
        paused = aiotoggles.ToggleSet(any)
        peer = await paused.make_toggle(False, name="peer")
        own = asyncio.create_task(peer.wait_for(True))
        whole = asyncio.create_task(paused.wait_for(True))
        await asyncio.sleep(0)
        await paused.make_toggle(False, name="another")  # no change of state: nobody may proceed
        await asyncio.sleep(0)
        assert not own.done() and not whole.done()
        await peer.turn_to(True)
        await asyncio.wait_for(asyncio.gather(own, whole), 5)

    asyncio.run(scenario())


def test_a_class_of_another_shape_is_left_as_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    class Elsewise:
        def __init__(self, fn: object) -> None:
            self.toggles: list[object] = []

    monkeypatch.setattr(aiotoggles, "ToggleSet", Elsewise)
    assert kopfpatches.apply() is False
    assert not hasattr(Elsewise, "make_toggle")
