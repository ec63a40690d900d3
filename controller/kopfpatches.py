"""A fix to kopf's start-up readiness gate, which costs O(N²) in the objects listed.

Applied once by ``regaccess run`` (``controller.__main__``) before kopf starts;
nothing else in the product imports it.

What kopf does (1.45): while an operator with index handlers starts, every
object of an indexed kind gets a toggle in one ``ToggleSet`` (the "operator is
indexed" gate), and every object's worker, once it has indexed its object,
drops its toggle and waits on the set until all toggles are gone. Each
``make_toggle`` and ``drop_toggle`` calls ``notify_all`` on the set's one
``asyncio.Condition``, so each of N toggles wakes each of up to N waiters,
each of which re-takes the lock only to find the gate still closed. The gate
stays closed while any object's worker is still indexing, so a burst of new
objects that arrives during start-up keeps it closed too (the watcher makes a
toggle for every new object while the gate is closed), and the same cost
repeats for every one of them.

Measured with the benchmark's bare kopf operator (``bench/RESULTS.md``, issue
18, stop 24): indexing 3,000 pre-existing Secrets took 36.2 s of CPU; 3,000
RegistryCredentials applied as the operator came up took 42.2 ms of CPU per
create and 154 s to be Ready. With this fix: 2.2 s, 7.0 ms and 42 s. At 10,000
Secrets a restart would spend minutes of CPU before reconciling anything.

The fix: ``make_toggle``/``drop_toggle``/``drop_toggles`` notify the set's
waiters only when the set's aggregate state (on/off) changes. That keeps
kopf's semantics exactly: a ``ToggleSet.wait_for`` waiter's predicate is the
aggregate state, so when it did not change no waiter can proceed; and a
``Toggle.wait_for`` waiter's predicate is its own toggle's state, which adding
or removing toggles does not change (``Toggle.turn_to`` still notifies all, as
before). Computing the aggregate is cheap here: the gate's toggles are all
"off" while they exist, so ``all()`` stops at the first one.

The fix replaces three methods of a private kopf class, so it checks that the
class still has the shape it was written against and otherwise leaves kopf as
it is (with a warning in the log); ``tests/unit/test_kopfpatches.py`` fails if
the installed kopf no longer takes it, so an upgrade cannot drop it silently.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

_APPLIED_MARK = "_regaccess_notifies_on_change"


async def _make_toggle(self: Any, __val: bool = False, *, name: str | None = None) -> Any:
    from kopf._cogs.aiokits import aiotoggles

    toggle = aiotoggles.Toggle(__val, name=name, condition=self._condition)
    async with self._condition:
        before = self.is_on()
        self._toggles.add(toggle)
        if self.is_on() != before:
            self._condition.notify_all()
    return toggle


async def _drop_toggles(self: Any, toggles: Iterable[Any]) -> None:
    async with self._condition:
        before = self.is_on()
        self._toggles.difference_update(toggles)
        if self.is_on() != before:
            self._condition.notify_all()


async def _drop_toggle(self: Any, toggle: Any) -> None:
    await _drop_toggles(self, (toggle,))


def _has_known_shape(toggle_set_class: type) -> bool:
    """Whether kopf's ToggleSet is still the class this fix was written against."""
    try:
        probe = toggle_set_class(all)
    except Exception:  # noqa: BLE001 (any change in the constructor means: do not touch it)
        return False
    methods = ("make_toggle", "drop_toggle", "drop_toggles", "is_on", "wait_for")
    return (all(callable(getattr(probe, m, None)) for m in methods)
            and isinstance(getattr(probe, "_toggles", None), set)
            and getattr(probe, "_condition", None) is not None)


def apply() -> bool:
    """Install the fix into kopf (idempotent); False if kopf's ToggleSet has changed shape."""
    try:
        from kopf._cogs.aiokits import aiotoggles
    except ImportError:
        return False
    toggle_set = aiotoggles.ToggleSet
    if getattr(toggle_set, _APPLIED_MARK, False):
        return True
    if not _has_known_shape(toggle_set):
        return False
    toggle_set.make_toggle = _make_toggle  # type: ignore[method-assign]
    toggle_set.drop_toggle = _drop_toggle  # type: ignore[method-assign]
    toggle_set.drop_toggles = _drop_toggles  # type: ignore[method-assign]
    setattr(toggle_set, _APPLIED_MARK, True)
    return True
