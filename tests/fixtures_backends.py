"""Fixtures that own real servers for the backend tests: moto (AWS) and the
Vault-protocol test double.  Import with ``from fixtures_backends import *``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Coroutine, Iterator
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import boto3
import pytest
import requests

from rotator.plugin import Backend, PluginContext
from rotator.testing import ROOT, VaultServer, moto_env

T = TypeVar("T")

ROOT_TOKEN = "root-token-for-tests"
AWS_REGION = moto_env.REGION

__all__ = [
    "AWS_REGION",
    "ROOT_TOKEN",
    "aws_env",
    "moto_server",
    "opened",
    "run",
    "secretsmanager",
    "vault",
]


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


@asynccontextmanager
async def opened(cls: type[Backend], **settings: Any) -> AsyncIterator[Backend]:
    """A backend made from `settings`, opened, with its own PluginContext; closed after."""
    settings.setdefault("timeout", 5.0)
    ctx = PluginContext(max_threads=8)
    backend = cls(cls.Settings.model_validate(settings), ctx)
    try:
        await backend.open()
        yield backend
    finally:
        await backend.close()
        await ctx.aclose()


@pytest.fixture
def vault() -> Iterator[VaultServer]:
    """A fresh Vault-protocol server: KV v2 at secret/, KV v1 at kv/, a root token."""
    with VaultServer(tokens={ROOT_TOKEN: ROOT}, mounts={"secret": 2, "kv": 1}) as server:
        yield server


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """moto's server mode on a loopback port, for the whole session; yields its URL."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def aws_env(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Dummy credentials in the environment, STS pointed at moto, moto's state reset."""
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(key, raising=False)
    for key, value in moto_env.ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", moto_server)
    requests.post(f"{moto_server}/moto-api/reset", timeout=5).raise_for_status()
    return moto_server


@pytest.fixture
def secretsmanager(aws_env: str) -> Any:
    """A plain boto3 client on moto, for setting up and inspecting secrets."""
    return boto3.client("secretsmanager", endpoint_url=aws_env, region_name=AWS_REGION)
