"""The spec's seed policy (a list, or { min, max, looks }) and its [verdicts] table: validated in one line, defaults
a reviewer would choose, and the analysis's names mirrored."""

from __future__ import annotations

import pytest

from spaces.spec import ERROR_CONTROLS, VERDICT_RULES, SpecError, load_spec


def test_a_seed_list_keeps_its_meaning_every_point_runs_every_seed():
    spec = load_spec("digits", ["seeds=[0, 1, 2]"])
    assert spec.data["seeds"] == [0, 1, 2] and spec.data["seed_policy"] is None
    assert spec.data["verdicts"]["looks"] == []


def test_an_adaptive_policy_runs_min_seeds_first_and_looks_every_two_seeds_up_to_max():
    spec = load_spec("digits", ["seeds={min=2, max=8}"])
    assert spec.data["seeds"] == [0, 1]
    assert spec.data["seed_policy"] == {"min": 2, "max": 8, "looks": [4, 6, 8]}
    assert spec.data["verdicts"]["looks"] == [2, 4, 6, 8]  # the seed counts alpha is spent over


def test_the_default_preset_is_adaptive_with_a_welch_rule_and_bh():
    data = load_spec("digits").data
    assert data["seed_policy"] == {"min": 2, "max": 4, "looks": [4]}
    assert data["verdicts"] == {"rule": "welch", "alpha": 0.05, "equivalence_pp": 0.5, "error_control": "bh",
                                "looks": [2, 4]}  # fmt: skip


@pytest.mark.parametrize("override, message", [
    ("seeds={min=4, max=2}", "seeds.max = 2: must be >= seeds.min (4)"),
    ("seeds={min=1, max=4}", "seeds.min = 1: must be >= 2"),
    ("seeds={min=2, max=8, looks=[5, 4, 8]}", "seeds.looks = [5, 4, 8]: must increase"),
    ("seeds={min=2, max=8, looks=[4, 6]}", "seeds.looks = [4, 6]: must increase from above seeds.min (2) and end at"),
    ("seeds={mn=2}", "seeds.mn = 2: unknown key (did you mean 'min'?)"),
    ("seeds='all'", "seeds = 'all': must be a list of integers or a table"),
    ("verdicts.rule='t'", "verdicts.rule = 't': not allowed; allowed: 'welch', 'std', 'ci95'"),
    ("verdicts.alpha=1.5", "verdicts.alpha = 1.5: must lie in (0, 1)"),
    ("verdicts.error_control='fdr'", "verdicts.error_control = 'fdr': not allowed"),
])  # fmt: skip
def test_a_bad_seed_policy_or_verdict_key_fails_in_one_line_naming_it(override, message):
    with pytest.raises(SpecError) as err:
        load_spec("digits", [override])
    assert message in str(err.value) and "\n" not in str(err.value)


def test_the_spec_names_the_rules_and_error_controls_of_the_analysis():
    from analysis.est import ERROR_CONTROLS as ANALYSIS_CONTROLS
    from analysis.est import TIE_RULES

    assert VERDICT_RULES == TIE_RULES and ERROR_CONTROLS == ANALYSIS_CONTROLS
