"""``controller.logging.Redactor`` scrubs exactly what one regular expression of all known values would.

The redactor indexes values by their first characters instead of compiling an
alternation of every value (which made each new resource cost a recompile of
all the others: O(N^2) CPU at 1,000 resources, see bench/perf_bench.py). These
cases pin the semantics the expression had: leftmost match, longest value at a
position, non-overlapping, text without secrets returned unchanged.
"""

from __future__ import annotations

import random
import re

import pytest

from controller.logging import MASK, Redactor


def regex_scrub(values: list[str], text: str) -> str:
    kept = sorted({v for v in values if len(v) >= Redactor.MIN_LENGTH}, key=len, reverse=True)
    if not kept:
        return text
    return re.compile("|".join(re.escape(v) for v in kept)).sub(MASK, text)


@pytest.mark.parametrize(("values", "text", "expected"), [
    (["hunter2"], "password=hunter2;", f"password={MASK};"),
    (["abcd", "abcdef"], "xabcdefy", f"x{MASK}y"),                # longest at a position wins
    (["abcdef", "cdefgh"], "abcdefgh", f"{MASK}gh"),              # leftmost first, no overlap
    (["aaaa"], "aaaaaaaaa", f"{MASK}{MASK}a"),                    # non-overlapping, left to right
    (["secret"], "nothing to see", "nothing to see"),
    (["abc"], "abc abc", "abc abc"),                               # too short to remember
    (["tail"], "at the tail", f"at the {MASK}"),
    (["a\\b.c*"], "x a\\b.c* y", f"x {MASK} y"),                  # regex metacharacters are literal
], ids=["simple", "longest", "leftmost", "repeated", "absent", "short", "end", "metachars"])
def test_cases(values, text, expected):
    redactor = Redactor()
    redactor.remember(*values)
    assert redactor.scrub(text) == expected == regex_scrub(values, text)


def test_same_as_one_regular_expression_on_seeded_random_texts():
    rnd = random.Random(20240611)
    alphabet = 'abAB{}":, '
    for _ in range(2000):
        values = ["".join(rnd.choice(alphabet) for _ in range(rnd.randint(2, 9))) for _ in range(rnd.randint(1, 6))]
        text = "".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 80)))
        redactor = Redactor()
        for value in values:  # one at a time, as reconciles remember them
            redactor.remember(value)
        assert redactor.scrub(text) == regex_scrub(values, text), (values, text)


def test_many_values_each_found():
    redactor = Redactor()
    values = [f'{{"username":"robot","password":"pw-{i:05d}"}}' for i in range(2000)]
    redactor.remember(*values)
    for i in (0, 999, 1999):
        assert redactor.scrub(f"body={values[i]} end") == f"body={MASK} end"
    assert redactor.scrub("pw-00001 alone") == "pw-00001 alone"  # only whole remembered values


def test_rotations_replace_an_owners_values_so_the_redactor_stays_bounded():
    redactor = Redactor()
    owner = ("RegistryCredential", "team-a", "hub")
    for i in range(10_000):
        redactor.replace(owner, (f"password-{i:05d}", f'{{"password":"password-{i:05d}"}}'))
    assert len(redactor) == 2
    assert redactor.scrub("old password-00000, new password-09999") == f"old password-00000, new {MASK}"


def test_forget_drops_an_owners_values_but_keeps_a_value_another_owner_holds():
    redactor = Redactor()
    redactor.replace("a", ("shared-secret", "only-a-secret"))
    redactor.remember("shared-secret", owner="b")
    redactor.forget("a")
    assert redactor.scrub("shared-secret only-a-secret") == f"{MASK} only-a-secret"
    redactor.forget("b")
    assert len(redactor) == 0 and redactor.scrub("shared-secret") == "shared-secret"


def test_remember_with_an_owner_adds_and_replace_with_nothing_forgets():
    redactor = Redactor()
    redactor.remember("first-value", owner="a")
    redactor.remember("second-value", owner="a")
    assert redactor.scrub("first-value second-value") == f"{MASK} {MASK}"
    redactor.replace("a", ())
    assert len(redactor) == 0


def test_values_without_an_owner_are_a_bounded_ring_of_the_latest():
    redactor = Redactor()
    for i in range(Redactor.UNOWNED_MAX + 500):
        redactor.remember(f"unowned-{i:06d}")
    assert len(redactor) == Redactor.UNOWNED_MAX
    assert redactor.scrub("unowned-000000") == "unowned-000000"   # the oldest went first
    assert redactor.scrub(f"unowned-{Redactor.UNOWNED_MAX + 499:06d}") == MASK
    # An owned copy of a value outlives its place in the ring.
    redactor.remember("unowned-000600", owner="r")
    for i in range(Redactor.UNOWNED_MAX):
        redactor.remember(f"later-{i:06d}")
    assert redactor.scrub("unowned-000600") == MASK
