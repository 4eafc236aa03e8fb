"""The verifier's fast paths (trimmed window, sparse differences) keep its promises on any
damage, single or combined: a verdict whenever the entries differ, and a first problem at the
first position where the export stops matching the log."""

from __future__ import annotations

import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st

from motcua_audit.domain.verifier import _by_index, _explain, locate_damage


def h(i: int) -> bytes:
    return hashlib.sha256(i.to_bytes(4, "big")).digest()


def full(recorded, actual):
    """The untrimmed algorithm over the whole sequences."""
    if recorded == actual:
        return []
    return sorted(_explain(recorded, actual, lambda k: k, True), key=_by_index)


DAMAGE = st.tuples(
    st.sampled_from(["alter", "remove", "insert", "swap", "duplicate", "move"]),
    st.integers(0, 10_000),
    st.integers(0, 10_000),
)


@settings(max_examples=400, deadline=None)
@given(st.integers(0, 60), st.lists(DAMAGE, min_size=1, max_size=3), st.booleans())
def test_fast_paths_agree_with_the_full_diff(n, damages, with_duplicates):
    recorded = [h(i % 7 if with_duplicates and i % 5 == 0 else i) for i in range(n)]
    actual = list(recorded)
    for kind, a, b in damages:
        if kind == "insert" or not actual:
            actual.insert(a % (len(actual) + 1), h(100_000 + a))
            continue
        i, j = a % len(actual), b % len(actual)
        if kind == "alter":
            actual[i] = h(200_000 + a)
        elif kind == "remove":
            del actual[i]
        elif kind == "swap":
            actual[i], actual[j] = actual[j], actual[i]
        elif kind == "duplicate":
            actual.insert(j, actual[i])
        else:  # move one entry elsewhere
            actual.insert(j, actual.pop(i))
    fast = locate_damage(recorded, actual)
    if recorded == actual:
        assert fast == [] and full(recorded, actual) == []
        return
    first_difference = next(
        (k for k, (r, a) in enumerate(zip(recorded, actual, strict=False)) if r != a),
        min(len(recorded), len(actual)),
    )
    assert fast, "damage must never go unreported"
    assert fast[0].index == first_difference
    indices = [p.index for p in fast if p.index is not None]
    assert indices == sorted(indices)
    # The unoptimised diff agrees that nothing before that position is wrong (for combined
    # damage the two may explain the rest differently; both are valid explanations).
    assert all(p.index >= first_difference for p in full(recorded, actual))
