"""A native crash fails one test, not the test run: code that can abort the process runs in a child process
(harness.isolate), and the crash comes back as an exception (or a failed test) that names the signal."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.isolate import ChildCrashed, ChildFailed, call_in_child, signal_name

REPO = Path(__file__).resolve().parents[1]


def test_a_child_returns_the_value_its_function_computed():
    assert call_in_child("tests.crashers:double", 21) == 42


def test_an_exception_in_the_child_is_raised_again_in_the_parent_with_its_type():
    with pytest.raises(ValueError, match="no such thing"):
        call_in_child("tests.crashers:refuse", "no such thing")


def test_a_child_that_aborts_raises_child_crashed_naming_sigabrt():
    with pytest.raises(ChildCrashed) as info:
        call_in_child("tests.crashers:abort", capture_output=True)
    assert (info.value.signum, info.value.signal_name) == (6, "SIGABRT")
    assert str(info.value) == "tests.crashers:abort crashed the child process with signal SIGABRT (6)"


def test_a_child_that_exits_without_a_result_raises_child_failed_with_its_code():
    with pytest.raises(ChildFailed, match="exited with code 3 and no result"):
        call_in_child("tests.crashers:exit_quietly", 3)


def test_signal_names_come_from_the_platform():
    assert signal_name(11) == "SIGSEGV"
    assert signal_name(1000) == "signal 1000"


def test_a_crashing_child_fails_its_test_with_the_signal_and_the_run_goes_on(pytester, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(REPO))  # the inner session imports tests.isolation and tests.crashers
    pytester.makepyfile(
        test_inner="""
        from tests.isolation import in_child

        def test_crashes():
            in_child("tests.crashers:abort")

        def test_after_the_crash():
            assert in_child("tests.crashers:double", 2) == 4
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        ["*child process crashed: tests.crashers:abort crashed the child process with signal SIGABRT (6)*"]
    )
