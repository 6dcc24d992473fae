"""The intermittent AttributeError at a kubernetes backend's arm (issue 30), reproduced
and shown fixed.

Its cause is in lightkube: a model class is set up on its first ``from_dict``
(``DataclassDictMixIn._setup``), which marks the class set up before it fills in the
field maps; a second thread starting ``from_dict`` in between finds them None.  At
arm the ``kubernetes`` backend and the ``kubernetes-rollout`` consumer load their
kubeconfigs in two worker threads at once, and a process's first load sets up
lightkube's Cluster, User and Context classes: about one arm in 17 failed so.

The race window is widened here (each type extraction of the setup sleeps), with
the classes made new again, so that the failure is certain, not one in 17; then
the same load through rotator (``_kube._config``, one load at a time) never fails.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from lightkube.config import models
from lightkube.config.kubeconfig import KubeConfig
from lightkube.core import dataclasses_dict
from rotator_plugins import _kube
from rotator_plugins._kube import KubeConnection, open_client

from rotator.plugin import PluginContext, PluginError
from rotator.testing.kube import KubeServer

SETUP = ("_late_init_from", "_late_init_to", "_json_to_prop", "_prop_to_json", "_valid_params")


@pytest.fixture
def first_use(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """lightkube's kubeconfig models as in a new process (not set up yet), with a slow setup."""
    for cls in (models.Cluster, models.User, models.Context, models.UserExec, models.NameValue):
        for attr in SETUP:
            monkeypatch.setattr(cls, attr, None)
    extract = dataclasses_dict.extract_types

    def slow(cls: Any, is_to: bool = True) -> Iterator[Any]:
        time.sleep(0.03)
        yield from extract(cls, is_to)

    monkeypatch.setattr(dataclasses_dict, "extract_types", slow)
    yield


def staggered(load: Callable[[], object], n: int = 6) -> list[str]:
    """`load` in n threads started 10 ms apart; the errors they raised."""
    errors: list[str] = []

    def go() -> None:
        try:
            load()
        except Exception as exc:  # noqa: BLE001 - the errors are what is counted
            errors.append(f"{type(exc).__name__}: {exc}")

    threads = []
    for _ in range(n):
        t = threading.Thread(target=go)
        t.start()
        threads.append(t)
        time.sleep(0.01)
    for t in threads:
        t.join()
    return errors


@pytest.fixture
def kubeconfig(tmp_path: Path) -> Iterator[Path]:
    with KubeServer(autostep=False) as kube:
        kube.add_identity("t")
        yield kube.kubeconfig(tmp_path / "kubeconfig", "t", namespace="billing")


def test_lightkube_first_loads_in_threads_race(first_use: None, kubeconfig: Path) -> None:
    """The cause: lightkube alone, loads started while the first one sets its classes up."""
    errors = staggered(lambda: KubeConfig.from_file(kubeconfig).get())
    assert errors, "no load failed: the race was not reproduced"
    assert all(e.startswith(("AttributeError", "TypeError")) for e in errors), errors


def test_rotator_loads_kubeconfigs_one_at_a_time(first_use: None, kubeconfig: Path) -> None:
    """The fix: the same loads through rotator never fail, and each finds the server."""
    conn = KubeConnection(kubeconfig=kubeconfig)
    found: list[str] = []
    errors = staggered(lambda: found.append(_kube._config(conn).cluster.server))
    assert errors == [] and len(set(found)) == 1 and len(found) == 6


def test_a_file_that_is_not_a_kubeconfig_is_one_line(tmp_path: Path) -> None:
    """lightkube raises AttributeError for an empty file too: one line naming the file."""
    import asyncio

    empty = tmp_path / "empty.kubeconfig"
    empty.write_text("")

    async def go() -> None:
        ctx = PluginContext(max_threads=2)
        try:
            await open_client(KubeConnection(kubeconfig=empty), 5, ctx.run_blocking)
        finally:
            await ctx.aclose()

    with pytest.raises(PluginError, match=r"cannot load kubeconfig .*empty\.kubeconfig: not a kubeconfig"):
        asyncio.run(go())
