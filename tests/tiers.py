"""The test tiers, given to every test at collection, and the guard that keeps `unit` honest.

``unit``     in-process only: no subprocess, no server (no socket bound), no browser;
``process``  starts a subprocess or a real server (loopback only);
``browser``  drives Chromium through Playwright (and starts servers too);
``lint``     runs the code's own checks (ruff, mypy, hadolint).

A test gets its tier, first match wins, from: a tier marker written on the test itself;
the per-test table `TESTS`; what its code calls (Playwright: ``browser``); the fixtures it
uses (a server or a subprocess: ``process``); `UNIT_TESTS` (the in-process tests of a
module that mixes tiers); the per-module table `MODULES`.  Anything else is ``process``:
the safe default, so a new test is never put in the fast loop by accident, and never
fails the guard there.

The guard: while a ``unit`` test runs (its fixtures, of any scope, included), starting a
process (subprocess, multiprocessing, fork, posix_spawn) or binding a socket fails it,
with the line to fix.
``ROTATOR_TEST_RECORD=FILE`` instead records, for every test, what it started (one JSON
line per test that started anything): how the tables below were made.
"""

from __future__ import annotations

import json
import multiprocessing.util
import os
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

TIERS = ("unit", "process", "browser", "lint")

# Fixtures that start a server or a subprocess (conftest.py, fixtures_backends.py, and the
# per-module ones whose name says so).  A test using one is `process` wherever it lives.
PROCESS_FIXTURES = frozenset(
    {
        "standin",
        "rotator_cmd",
        "child_env",
        "vault",
        "moto_server",
        "aws_env",
        "secretsmanager",
        "xserver",
        "kube",
        "pg",
        "db_url",
        "gap",  # test_consumer_hold: a module's stand-in
        "tls_files",  # test_transport: openssl, once per module
    }
)

# Names a test's own code uses to drive a browser (tests/test_service_page.py's helpers).
BROWSER_NAMES = frozenset({"_need_browser", "_async_playwright", "sync_playwright", "async_playwright", "_browser"})

# Modules whose every test is one tier (tests/<name>.py, or third_party_plugin/<name>.py).
MODULES: dict[str, str] = {
    "test_alternating_steps": "unit",  # its tests on the Adjutor stand-in are `process` (the `standin` fixture)
    "test_attempts": "unit",
    "test_backend_rules": "unit",
    "test_benchmark_window": "unit",  # its smoke run is marked `process`
    "test_exports": "unit",
    "test_journal_writer": "unit",
    "test_plans": "unit",
    "test_quality": "lint",
    "test_secret": "unit",
    "test_service_edges": "unit",
    "test_service_events": "unit",
    "test_targets": "unit",
}

# The in-process tests of modules that mix tiers (the rest of such a module is `process`).
UNIT_TESTS: dict[str, frozenset[str]] = {
    "test_aws": frozenset(
        {
            "test_plan_loads",
            "test_plan_validation",
            "test_request_token_is_stable_and_fits",
        }
    ),
    "test_bad_input": frozenset(
        {
            "test_an_old_key_no_header_can_carry_does_not_crash_the_revocation_check",
            "test_arbitrary_bytes_as_a_plan",
            "test_forged_webhooks_are_refused_never_crash_the_consumer",
            "test_mutated_plans_fail_with_one_line_per_problem",
            "test_pasted_keys_are_cleaned_or_rejected_in_one_line",
            "test_problems_are_all_reported_and_unknown_keys_never_pass",
            "test_the_base_plan_is_valid",
        }
    ),
    "test_break": frozenset(
        {
            "test_arm_checks_are_kept_per_target_even_for_a_plan_built_by_hand",
            "test_dots_in_strings_comments_and_values_are_not_key_parts",
            "test_scrub_covers_every_form_the_leak_suite_searches_for",
        }
    ),
    "test_clipboard": frozenset(
        {
            "test_detect_picks_xclip_on_x11_and_xsel_when_only_xsel",
            "test_nothing_available_names_what_to_install",
        }
    ),
    "test_consumer_hold": frozenset(
        {
            "test_a_source_that_cannot_be_read_says_which_and_shows_no_value",
            "test_the_env_reader_agrees_with_rotator_s_writer_and_python_dotenv",
            "test_the_fingerprint_prefix_agrees_with_rotator_secret",
        }
    ),
    "test_consumers": frozenset(
        {
            "test_bad_pidfile_fails_preflight",
            "test_command_preflight_finds_the_program",
            "test_command_settings_are_checked",
            "test_display_url_drops_credentials_and_query",
            "test_signal_settings_are_checked",
            "test_webhook_settings_are_checked",
        }
    ),
    "test_demo_consumer": frozenset(
        {
            "test_read_env_value_understands_common_dotenv_forms",
        }
    ),
    "test_deploy_kubernetes": frozenset(
        {
            "test_every_manifest_is_a_valid_object",
            "test_the_configmap_plan_is_valid",
            "test_the_deployment_runs_serve_locked_down",
            "test_the_round_trip_catches_a_misspelt_field",
        }
    ),
    "test_envfile": frozenset(
        {
            "test_absent_file_fails_preflight_unless_create",
            "test_adjutor_key_is_written_bare",
            "test_backup_only_when_configured",
            "test_crlf_file_keeps_its_line_endings",
            "test_encode_refuses_only_what_no_quoting_can_carry",
            "test_every_binding_of_the_variable_is_updated_and_the_last_wins",
            "test_file_without_final_newline_gets_the_variable_on_its_own_line",
            "test_missing_directory_fails_preflight",
            "test_multiline_value_mentioning_the_variable_is_not_touched",
            "test_no_temp_file_is_left_when_the_rename_fails",
            "test_not_a_regular_file_is_refused",
            "test_parser_reports_broken_lines",
            "test_preflight_reports_presence_and_loose_mode",
            "test_read_returns_the_stored_value",
            "test_settings_are_checked",
            "test_symlink_inside_the_directory_is_written_through",
            "test_symlink_outside_the_directory_is_refused",
            "test_unparseable_line_for_the_variable_fails_preflight_and_write",
            "test_unwritable_values_are_refused_without_echoing_them",
            "test_write_checks_the_version_read_at_arm",
            "test_write_then_read_gives_value_and_keeps_other_lines",
            "test_written_file_is_0600_and_keeps_owner",
        }
    ),
    "test_kubernetes": frozenset(
        {
            "test_rollout_status_follows_kubectl",
            "test_settings_are_checked_without_network",
        }
    ),
    "test_leaks": frozenset(
        {
            "test_in_process_exception_texts_logs_and_report",
            "test_the_scanner_finds_every_form",
        }
    ),
    "test_notify": frozenset(
        {
            "test_a_plan_without_notify_sends_nothing",
            "test_check_validates_notify_entries_without_network",
        }
    ),
    "test_outage": frozenset(
        {
            "test_a_version_1_journal_gains_the_outage_columns",
            "test_the_timeline_fits_the_width_and_reads_without_colour",
        }
    ),
    "test_pipeline_steps": frozenset(
        {
            "test_accept_journals_the_key_before_any_write",
            "test_arm_reads_every_target_journals_the_entry_and_locks_the_plan",
            "test_arm_refuses_a_plan_locked_by_another_rotation",
            "test_arm_with_a_broken_target_is_not_armed_and_journals_nothing",
            "test_attempts_retry_what_is_retryable_under_one_deadline",
            "test_drift_reports_what_differs_from_the_primary_and_writes_nothing",
            "test_fan_out_over_a_given_set_of_targets_leaves_the_rest_alone",
            "test_fan_out_signals_each_consumer_once_what_it_reads_from_is_written",
            "test_fan_out_skip_current_and_unchanged_consumers_are_not_signalled",
            "test_finish_reports_partial_and_closes_the_journal_entry",
            "test_probe_refuses_a_key_that_was_not_reset_unless_resync",
            "test_read_primary_takes_the_key_from_the_primary_and_checks_it",
            "test_signal_then_confirm_or_unconfirmed",
            "test_write_primary_conflict_writes_nothing_else_and_closes_the_entry",
            "test_write_primary_lands_with_check_and_set_and_read_back",
        }
    ),
    "test_plan": frozenset(
        {
            "test_alternating_check_errors_name_the_key",
            "test_alternating_needs_a_primary_that_can_hold_a_standby",
            "test_alternating_plan_loads",
            "test_bad_toml_and_wrong_types",
            "test_exactly_one_primary",
            "test_good_plan_loads_with_adjutor_preset",
            "test_key_never_in_probe_url",
            "test_missing_required_key_names_file_and_path",
            "test_probe_paths_are_paths_on_the_probe_host",
            "test_reads_from_must_name_a_backend",
            "test_secret_settings_are_never_inline",
            "test_single_is_the_default_and_gets_a_one_line_hint",
            "test_unknown_keys_are_errors",
            "test_unknown_type_lists_installed",
        }
    ),
    "test_public_surface": frozenset(
        {
            "test_scrub_data_redacts_every_string_keys_included",
        }
    ),
    "test_reset_watch": frozenset(
        {
            "test_watch_interval_in_the_plan",
        }
    ),
    "test_session": frozenset(
        {
            "test_a_key_handed_while_one_is_written_is_refused_as_busy",
            "test_close_aborts_an_armed_session_and_cancels_its_background_work",
            "test_keys_from_racing_sources_the_first_one_is_written",
            "test_no_key_in_time_closes_it",
            "test_not_armed_says_what_to_fix_and_releases_everything",
            "test_the_attempt_limit_closes_it_and_journals_the_last_refusal",
            "test_the_instruction_is_the_same_for_every_front_end",
        }
    ),
    "test_standby": frozenset(
        {
            "test_a_backend_without_slots_says_so",
            "test_envfile_in_a_read_only_directory_fails_the_standby_check",
            "test_envfile_standby_line_that_cannot_be_parsed_fails_the_check",
            "test_the_three_places_must_differ",
        }
    ),
    "test_third_party": frozenset(
        {
            "test_notifier_found_through_dist_info_entry_points",
            "test_plugin_found_through_dist_info_entry_points",
            "test_unknown_before_it_is_installed",
        }
    ),
    "test_vault": frozenset(
        {
            "test_plan_loads",
            "test_plan_validation",
        }
    ),
}

# Tests that no rule above describes: (module, test function) -> tier.  Parametrized tests by
# their function's name.
TESTS: dict[tuple[str, str], str] = {
    ("test_packaging", "test_dockerfile_passes_hadolint_without_a_single_finding"): "lint",
}


def tier_of(item: pytest.Item) -> str:
    """The tier `item` belongs to (see the module's docstring for the order)."""
    for name in TIERS:
        if item.get_closest_marker(name) is not None:
            return name
    module = item.module.__name__.rsplit(".", 1)[-1] if isinstance(item, pytest.Function) else ""
    function = getattr(item, "originalname", item.name)
    if (module, function) in TESTS:
        return TESTS[module, function]
    code = getattr(getattr(item, "function", None), "__code__", None)
    if code is not None and BROWSER_NAMES & set(code.co_names):
        return "browser"
    if PROCESS_FIXTURES & set(getattr(item, "fixturenames", ())):
        return "process"
    if function in UNIT_TESTS.get(module, ()):
        return "unit"
    return MODULES.get(module, "process")


def configure(config: pytest.Config) -> None:
    """Installs the guard (called from conftest.pytest_configure; the markers are in pyproject.toml)."""
    _Guard.install()


pytest_configure = configure  # as a plugin of its own: `pytest -p tests.tiers` (its test does that)


def in_process_only(config: pytest.Config) -> bool:
    """Is this run `-m unit` or `-m lint` alone: few, short tests, quicker without xdist's workers?"""
    return (config.option.markexpr or "").strip() in ("unit", "lint")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        name = tier_of(item)
        if item.get_closest_marker(name) is None:
            item.add_marker(getattr(pytest.mark, name))


# ---------------------------------------------------------------- the guard


class _Guard:
    """Wraps the calls that start a process or bind a socket; reports them to the running test."""

    installed = False
    current: str | None = None  # the running test's node id
    unit = False  # is it a unit test
    seen: list[str] = []
    lock = threading.Lock()
    record = os.environ.get("ROTATOR_TEST_RECORD")

    @classmethod
    def note(cls, what: str) -> None:
        if cls.current is None:
            return
        with cls.lock:
            cls.seen.append(what)

    @classmethod
    def wrap(cls, owner: Any, attr: str, what: Callable[..., str]) -> None:
        original = getattr(owner, attr)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            cls.note(what(*args, **kwargs))
            return original(*args, **kwargs)

        wrapper.__wrapped__ = original  # type: ignore[attr-defined]
        setattr(owner, attr, wrapper)

    @classmethod
    def install(cls) -> None:
        if cls.installed:
            return
        cls.installed = True

        def argv(a: Any) -> str:
            return " ".join(map(str, a[:2])) if isinstance(a, list | tuple) else str(a)[:60]

        cls.wrap(subprocess.Popen, "_execute_child", lambda self, args, *a, **k: f"subprocess: {argv(args)}")
        cls.wrap(socket.socket, "bind", lambda self, address, *a, **k: f"socket bound: {address!r}")
        cls.wrap(os, "fork", lambda *a, **k: "os.fork()")
        cls.wrap(os, "posix_spawn", lambda path, *a, **k: f"posix_spawn: {path}")
        cls.wrap(os, "posix_spawnp", lambda path, *a, **k: f"posix_spawnp: {path}")
        cls.wrap(multiprocessing.util, "spawnv_passfds", lambda path, args, *a, **k: f"multiprocessing: {argv(args)}")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    """Watch the test from its first fixture on (a module or session fixture it starts counts too)."""
    with _Guard.lock:
        _Guard.seen = []
    _Guard.current = item.nodeid
    _Guard.unit = item.get_closest_marker("unit") is not None
    return (yield)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """A `unit` test that started something fails here, after its body (a failure of its own first)."""
    result = yield
    if _Guard.unit and not _Guard.record and (seen := sorted(set(_Guard.seen))):
        pytest.fail(
            f"a `unit` test started {len(seen)} thing(s): {'; '.join(seen[:3])}. Mark it `process` "
            "(tests/tiers.py's tables, or @pytest.mark.process), or keep it in-process.",
            pytrace=False,
        )
    return result


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_runtest_teardown(item: pytest.Item) -> Iterator[None]:
    """Stop watching; with ROTATOR_TEST_RECORD, write down what the test started."""
    try:
        return (yield)
    finally:
        _Guard.current = None
        seen = sorted(set(_Guard.seen))
        if _Guard.record and seen:
            with open(_Guard.record, "a", encoding="utf-8") as out:
                out.write(json.dumps({"test": item.nodeid, "started": seen}) + "\n")
