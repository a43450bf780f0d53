"""Fuzzing: whatever a call's inputs hold, a deterministic ensemble picks its members."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

import trio_dspy as td

from .hostile import fuzz_settings, hostile_values


def _decoded(raw: str) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):  # too many digits, too deep: the text itself
        return raw


# Values JSON cannot hold, or Python cannot write in decimal.
_odd = st.sampled_from([10**5000, -(10**5000), b"\xff", float("nan"), {1: "x"}, td.Example(a=1)])


@fuzz_settings(60)
@given(
    values=st.dictionaries(
        st.text(max_size=5), hostile_values.map(_decoded) | _odd | st.text(), max_size=3
    )
)
def test_any_inputs_pick_the_same_members_every_time(values: dict[str, Any]) -> None:
    inputs = dict(values)
    programs = [td.Predict("question -> answer") for _ in range(5)]
    ensembled = td.Ensemble(size=2, deterministic=True).compile(programs)
    chosen = ensembled.members(inputs)
    assert len(chosen) == 2 and chosen == sorted(set(chosen))
    assert ensembled.members(dict(reversed(list(inputs.items())))) == chosen
