"""The envfile backend with an injected latency per file operation.

A .env file on a local disk answers in microseconds; one on a network
filesystem, or behind a config-management agent, does not.  This subclass adds
`latency` seconds (blocking, in the worker thread, as a slow filesystem would)
before each read and each write, and is otherwise rotator's own envfile backend.
The benchmark registers it as backend type ``envfile-latent``.
"""

from __future__ import annotations

import time
from typing import ClassVar

from rotator_plugins.envfile import EnvFileBackend

from rotator.plugin import Stored, Written
from rotator.secret import Secret


class LatentEnvFile(EnvFileBackend):
    latency: ClassVar[float] = 0.0

    def _read(self) -> Stored:
        if self.latency > 0:
            time.sleep(self.latency)
        return super()._read()

    def _write(self, secret: Secret, expected_version: str | None = None) -> Written:
        if self.latency > 0:
            time.sleep(self.latency)
        return super()._write(secret, expected_version)


def register() -> None:
    """Make ``type = "envfile-latent"`` resolvable, as an installed plugin's entry point would."""
    from importlib.metadata import EntryPoint

    from rotator import registry

    registry.backend_points()["envfile-latent"] = EntryPoint(
        "envfile-latent", f"{__name__}:LatentEnvFile", registry.BACKEND_GROUP
    )
