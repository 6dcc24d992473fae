"""The vault backend against the Vault-protocol server, with real hvac over HTTP."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
from pathlib import Path
from typing import Any

import hvac
import pytest
from rotator_plugins.vault import VaultBackend

from rotator.plan import PlanError, load_plan
from rotator.plugin import Conflict, PluginContext, PluginError
from rotator.secret import Secret
from rotator.testing import DROP, ROOT, VaultServer, VaultToken

try:
    from tests.fixtures_backends import *  # noqa: F403
    from tests.fixtures_backends import ROOT_TOKEN, opened, run
except ImportError:
    from fixtures_backends import *  # type: ignore[no-redef]  # noqa: F403
    from fixtures_backends import ROOT_TOKEN, opened, run  # type: ignore[no-redef]

OLD = "sk_live_OLDoldOLDold111"
NEW = "sk_live_NEWnewNEWnew222"
NEWER = "sk_live_NEWERnewer333"
KEYS = (OLD, NEW, NEWER)


def settings(server: VaultServer | str, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": "vault",
        "type": "vault",
        "primary": True,
        "url": server if isinstance(server, str) else server.url,
        "path": "apps/billing",
        "token": {"env": "TEST_VAULT_TOKEN"},
    }
    out.update(extra)
    return out


@pytest.fixture(autouse=True)
def _token_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_VAULT_TOKEN", ROOT_TOKEN)


def assert_clean(message: str) -> None:
    """One line, and no key in it."""
    assert "\n" not in message
    for key in KEYS:
        assert key not in message


# -- the happy path ----------------------------------------------------------


def test_token_auth_preflight_read_write_keeps_other_fields(vault: VaultServer) -> None:
    vault.put("apps/billing", {"api_key": OLD, "db_password": "hunter2", "region": "eu"})

    async def go() -> None:
        async with opened(VaultBackend, **settings(vault)) as b:
            check = await b.preflight()
            assert check.ok is True, check.detail
            assert "v1" in check.detail
            stored = await b.read()
            assert stored.secret == Secret(OLD)
            assert stored.version == "1"
            written = await b.write(Secret(NEW), token="rot-1/vault", expected_version=stored.version)
            assert written.version == "2"
            assert written.detail == "v2 (previous v1 kept)"
            again = await b.read()
            assert again.secret is not None and again.secret.fingerprint == Secret(NEW).fingerprint
            assert again.version == "2"

    run(go())
    assert vault.get("apps/billing") == {"api_key": NEW, "db_password": "hunter2", "region": "eu"}
    # The previous version stays readable, through Vault's own API too.
    assert vault.get("apps/billing", version=1) == {"api_key": OLD, "db_password": "hunter2", "region": "eu"}
    client = hvac.Client(url=vault.url, token=ROOT_TOKEN)
    old = client.secrets.kv.v2.read_secret_version(path="apps/billing", version=1, raise_on_deleted_version=True)
    assert old["data"]["data"]["api_key"] == OLD
    assert vault.writes == 1


def test_first_write_creates_the_secret_with_cas_zero(vault: VaultServer) -> None:
    async def go() -> None:
        async with opened(VaultBackend, **settings(vault)) as b:
            check = await b.preflight()
            assert check.ok is True and "no secret yet" in check.detail
            stored = await b.read()
            assert stored.secret is None and stored.version == "0"
            written = await b.write(Secret(NEW), token="t", expected_version="0")
            assert written.version == "1" and "new secret" in written.detail

    run(go())
    assert vault.get("apps/billing") == {"api_key": NEW}


def test_write_after_arm_is_one_request(vault: VaultServer) -> None:
    vault.put("apps/billing", {"api_key": OLD})

    async def go() -> None:
        async with opened(VaultBackend, **settings(vault)) as b:
            assert (await b.preflight()).ok
            vault.reset_counters()
            await b.write(Secret(NEW), token="t", expected_version="1")
            assert vault.requests == 1

    run(go())


def test_custom_mount_field_and_namespace_header(vault: VaultServer) -> None:
    vault.mounts["team-kv"] = 2
    vault.put("x/y", {"adjutor": OLD}, mount="team-kv")

    async def go() -> None:
        extra = settings(vault, mount="/team-kv/", path="/x/y", field="adjutor", namespace="team-a")
        async with opened(VaultBackend, **extra) as b:
            assert (await b.preflight()).ok
            await b.write(Secret(NEW), token="t", expected_version="1")

    run(go())
    assert vault.get("x/y", mount="team-kv") == {"adjutor": NEW}
    assert {r.namespace for r in vault.records if r.path != "/v1/sys/health"} == {"team-a"}


# -- idempotency and check-and-set --------------------------------------------


def test_retried_write_after_lost_response_makes_no_second_version(vault: VaultServer) -> None:
    vault.put("apps/billing", {"api_key": OLD})

    async def go() -> None:
        async with opened(VaultBackend, **settings(vault)) as b:
            stored = await b.read()
            vault.fail_next(1, 502, contains="/data/", method="POST", after=True)
            with pytest.raises(PluginError) as err:
                await b.write(Secret(NEW), token="t", expected_version=stored.version)
            assert err.value.retryable
            assert_clean(str(err.value))
            written = await b.write(Secret(NEW), token="t", expected_version=stored.version)
            assert written.version == "2"
            assert "already current" in written.detail

    run(go())
    assert vault.versions("apps/billing") == [1, 2]
    assert vault.writes == 1


def test_dropped_connection_is_retryable(vault: VaultServer) -> None:
    vault.put("apps/billing", {"api_key": OLD})

    async def go() -> None:
        async with opened(VaultBackend, **settings(vault)) as b:
            await b.read()
            vault.fail_next(1, DROP, contains="/data/", method="POST")
            with pytest.raises(PluginError) as err:
                await b.write(Secret(NEW), token="t", expected_version="1")
            assert err.value.retryable
            assert_clean(str(err.value))
            assert (await b.write(Secret(NEW), token="t", expected_version="1")).version == "2"

    run(go())


def test_cas_conflict_when_secret_changed_after_arm(vault: VaultServer) -> None:
    vault.put("apps/billing", {"api_key": OLD})

    async def go() -> None:
        async with opened(VaultBackend, **settings(vault)) as b:
            stored = await b.read()  # arm
            vault.put("apps/billing", {"api_key": OLD, "note": "someone else"})  # between arm and write
            with pytest.raises(Conflict) as err:
                await b.write(Secret(NEW), token="t", expected_version=stored.version)
            assert str(err.value) == (
                "vault vault: secret/apps/billing changed since arm (version 2, expected 1); rerun, or --force"
            )
            assert not err.value.retryable

    run(go())
    assert vault.get("apps/billing") == {"api_key": OLD, "note": "someone else"}
    assert vault.writes == 0


def test_cas_conflict_detected_by_vault_in_a_race(vault: VaultServer) -> None:
    """The write goes out with cas=1 from arm's read; Vault refuses it with its 400."""
    vault.put("apps/billing", {"api_key": OLD})

    async def go() -> None:
        async with opened(VaultBackend, **settings(vault)) as b:
            await b.read()
            vault.put("apps/billing", {"api_key": "sk_live_someoneelse"})
            with pytest.raises(Conflict) as err:
                await b.write(Secret(NEW), token="t", expected_version="1")
            assert "(version 2, expected 1)" in str(err.value)
            assert [r.status for r in vault.records][-2:] == [400, 200]  # the refused cas, then a look

    run(go())


def test_forced_write_without_expected_version_keeps_current_fields(vault: VaultServer) -> None:
    vault.put("apps/billing", {"api_key": OLD})
    vault.put("apps/billing", {"api_key": OLD, "note": "kept"})

    async def go() -> None:
        async with opened(VaultBackend, **settings(vault)) as b:
            written = await b.write(Secret(NEW), token="t", expected_version=None)
            assert written.version == "3" and "previous v2 kept" in written.detail

    run(go())
    assert vault.get("apps/billing") == {"api_key": NEW, "note": "kept"}


def test_cas_required_mount(vault: VaultServer) -> None:
    vault.cas_required = True

    async def go() -> None:
        async with opened(VaultBackend, **settings(vault)) as b:
            await b.write(Secret(NEW), token="t", expected_version=None)
            await b.write(Secret(NEWER), token="t2", expected_version="1")

    run(go())
    assert vault.current_version("apps/billing") == 2


# -- failures: one line each, no key --------------------------------------------


def test_sealed(vault: VaultServer) -> None:
    vault.put("apps/billing", {"api_key": OLD})

    async def go() -> None:
        async with opened(VaultBackend, **settings(vault)) as b:
            vault.sealed = True
            check = await b.preflight()
            assert check.ok is False
            assert check.detail == "vault vault: sealed"
            with pytest.raises(PluginError) as err:
                await b.write(Secret(NEW), token="t", expected_version="1")
            assert str(err.value) == "vault vault: sealed"

    run(go())


def test_bad_token(vault: VaultServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_VAULT_TOKEN", "not-a-token")

    async def go() -> None:
        async with opened(VaultBackend, **settings(vault)) as b:
            check = await b.preflight()
            assert check.ok is False
            assert check.detail == ("vault vault: the token is not valid (permission denied on auth/token/lookup-self)")
            with pytest.raises(PluginError) as err:
                await b.write(Secret(NEW), token="t", expected_version=None)
            assert str(err.value) == (
                "vault vault: permission denied on secret/apps/billing (check the token's policy)"
            )
            assert not err.value.retryable

    run(go())


def test_missing_token_env_fails_at_open(vault: VaultServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TEST_VAULT_TOKEN")

    async def go() -> None:
        async with opened(VaultBackend, **settings(vault)):
            pass

    with pytest.raises(PluginError, match=r"^vault vault: token: environment variable TEST_VAULT_TOKEN is not set$"):
        run(go())


def test_missing_write_capability(vault: VaultServer, monkeypatch: pytest.MonkeyPatch) -> None:
    vault.put("apps/billing", {"api_key": OLD})
    vault.add_token("reader", {"secret/data/apps/*": ["read", "list"]})
    monkeypatch.setenv("TEST_VAULT_TOKEN", "reader")

    async def go() -> None:
        async with opened(VaultBackend, **settings(vault)) as b:
            check = await b.preflight()
            assert check.ok is False
            assert check.detail == (
                "vault vault: the token lacks the update capability on secret/data/apps/billing "
                "(has: list, read; check the token's policy)"
            )
            with pytest.raises(PluginError, match="permission denied on secret/apps/billing"):
                await b.write(Secret(NEW), token="t", expected_version="1")

    run(go())
    assert vault.get("apps/billing") == {"api_key": OLD}


def test_create_capability_needed_for_a_new_secret(vault: VaultServer, monkeypatch: pytest.MonkeyPatch) -> None:
    vault.add_token("updater", {"secret/data/apps/billing": ["read", "update"]})
    monkeypatch.setenv("TEST_VAULT_TOKEN", "updater")

    async def go() -> None:
        async with opened(VaultBackend, **settings(vault)) as b:
            check = await b.preflight()
            assert check.ok is False and "lacks the create capability" in check.detail

    run(go())


def test_no_read_capability(vault: VaultServer, monkeypatch: pytest.MonkeyPatch) -> None:
    vault.add_token("other", {"secret/data/other/*": ["read", "create", "update"]})
    monkeypatch.setenv("TEST_VAULT_TOKEN", "other")

    async def go() -> None:
        async with opened(VaultBackend, **settings(vault)) as b:
            check = await b.preflight()
            assert check.ok is False
            assert "lacks the read capability on secret/data/apps/billing (has: deny" in check.detail

    run(go())


def test_token_about_to_expire(vault: VaultServer, monkeypatch: pytest.MonkeyPatch) -> None:
    vault.add_token("short", VaultToken(ROOT, ttl=90))
    monkeypatch.setenv("TEST_VAULT_TOKEN", "short")

    async def go() -> None:
        async with opened(VaultBackend, **settings(vault)) as b:
            check = await b.preflight()
            assert check.ok is False
            assert check.detail.startswith("vault vault: the token expires in ")

    run(go())


def test_unreachable_vault_is_retryable() -> None:
    server = VaultServer().start()
    url = server.url
    server.stop()  # nothing listens on this port now

    async def go() -> None:
        async with opened(VaultBackend, **settings(url)) as b:
            check = await b.preflight()
            assert check.ok is False
            assert check.detail == f"vault vault: cannot reach {url} (sys/health)"
            with pytest.raises(PluginError) as err:
                await b.write(Secret(NEW), token="t", expected_version="1")
            assert err.value.retryable and url in str(err.value)

    run(go())


def test_server_error_is_retryable_and_clean(vault: VaultServer) -> None:
    vault.put("apps/billing", {"api_key": OLD})

    async def go() -> None:
        async with opened(VaultBackend, **settings(vault)) as b:
            await b.read()
            vault.fail_next(1, 500, contains="/data/", method="POST")
            with pytest.raises(PluginError) as err:
                await b.write(Secret(NEW), token="t", expected_version="1")
            assert err.value.retryable
            assert_clean(str(err.value))
            assert err.value.__suppress_context__

    run(go())


def test_no_error_message_holds_a_key(vault: VaultServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every failure a write can meet, with the key in hand: none of the messages show it."""
    vault.put("apps/billing", {"api_key": OLD, "other": NEWER})
    messages: list[str] = []

    async def attempt(b: Any, expected: str | None = "1") -> None:
        try:
            await b.write(Secret(NEW), token="t", expected_version=expected)
        except PluginError as exc:
            messages.append(str(exc))
            messages.append(repr(exc))

    async def go() -> None:
        async with opened(VaultBackend, **settings(vault)) as b:
            await b.read()
            for status in (400, 403, 404, 429, 500, 502, 503, DROP):
                vault.fail_next(1, status, contains="/data/", method="POST")
                await attempt(b)
            vault.put("apps/billing", {"api_key": OLD})
            await attempt(b)  # conflict
            vault.sealed = True
            await attempt(b)
            messages.append((await b.preflight()).detail)

    run(go())
    assert len(messages) == 2 * 10 + 1
    for m in messages:
        assert_clean(m)


# -- other auth methods ---------------------------------------------------------


def test_approle_login_and_write(vault: VaultServer, monkeypatch: pytest.MonkeyPatch) -> None:
    vault.add_approle("role-123", "secret-456", {"secret/data/apps/billing": ["read", "create", "update"]})
    monkeypatch.setenv("TEST_ROLE_ID", "role-123")
    monkeypatch.setenv("TEST_SECRET_ID", "secret-456")
    extra = settings(
        vault, auth="approle", token=None, role_id={"env": "TEST_ROLE_ID"}, secret_id={"env": "TEST_SECRET_ID"}
    )

    async def go() -> None:
        async with opened(VaultBackend, **extra) as b:
            check = await b.preflight()
            assert check.ok is True, check.detail
            assert (await b.write(Secret(NEW), token="t", expected_version="0")).version == "1"
            # The login token is revoked (or expired) while waiting: log in again, once.
            vault.revoke_token(b.client.token)  # type: ignore[attr-defined]
            assert (await b.write(Secret(NEWER), token="t2", expected_version="1")).version == "2"

    run(go())
    assert vault.get("apps/billing") == {"api_key": NEWER}


def test_approle_bad_secret_id(vault: VaultServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    vault.add_approle("role-123", "secret-456")
    (tmp_path / "secret_id").write_text("wrong\n")
    monkeypatch.setenv("TEST_ROLE_ID", "role-123")
    extra = settings(
        vault,
        auth="approle",
        token=None,
        role_id={"env": "TEST_ROLE_ID"},
        secret_id={"file": str(tmp_path / "secret_id")},
    )

    async def go() -> None:
        async with opened(VaultBackend, **extra):
            pass

    with pytest.raises(PluginError) as err:
        run(go())
    assert str(err.value) == (
        "vault vault: approle login at auth/approle/login refused (check the role_id or secret_id)"
    )


def test_kubernetes_login(vault: VaultServer, tmp_path: Path) -> None:
    vault.add_kubernetes_role("billing", "eyJhbGciOi.jwt.sig", mount="k8s-prod")
    jwt = tmp_path / "token"
    jwt.write_text("eyJhbGciOi.jwt.sig\n")
    extra = settings(
        vault,
        auth="kubernetes",
        token=None,
        kubernetes_role="billing",
        kubernetes_jwt_path=str(jwt),
        kubernetes_mount="k8s-prod",
    )

    async def go() -> None:
        async with opened(VaultBackend, **extra) as b:
            assert (await b.preflight()).ok
            await b.write(Secret(NEW), token="t", expected_version="0")
        jwt.write_text("someone-elses.jwt")
        with pytest.raises(PluginError, match="kubernetes login at auth/k8s-prod/login refused"):
            async with opened(VaultBackend, **extra):
                pass

    run(go())
    assert vault.get("apps/billing") == {"api_key": NEW}


# -- KV v1 ----------------------------------------------------------------------


def test_kv_v1(vault: VaultServer) -> None:
    vault.put("apps/billing", {"api_key": OLD, "keep": "me"}, mount="kv")

    async def go() -> None:
        async with opened(VaultBackend, **settings(vault, mount="kv", kv_version=1)) as b:
            check = await b.preflight()
            assert check.ok is True, check.detail
            stored = await b.read()
            assert stored.secret == Secret(OLD) and stored.version is None
            written = await b.write(Secret(NEW), token="t", expected_version=None)
            assert written.version is None
            again = await b.write(Secret(NEW), token="t", expected_version=None)
            assert "already current" in again.detail

    run(go())
    assert vault.get("apps/billing", mount="kv") == {"api_key": NEW, "keep": "me"}
    assert vault.writes == 1


def test_kv_version_mismatch_is_caught_at_preflight(vault: VaultServer) -> None:
    async def go() -> None:
        async with opened(VaultBackend, **settings(vault, mount="kv")) as b:
            check = await b.preflight()
            assert check.ok is False
            assert check.detail == "vault vault: kv/ is a KV v1 mount, but the plan says kv_version = 2"
        async with opened(VaultBackend, **settings(vault, kv_version=1)) as b:
            check = await b.preflight()
            assert check.detail == "vault vault: secret/ is a KV v2 mount, but the plan says kv_version = 1"

    run(go())
    assert vault.writes == 0


# -- plan validation --------------------------------------------------------------


def _plan(tmp_path: Path, backend: str) -> Path:
    p = tmp_path / "plan.toml"
    p.write_text(f'[secret]\nname = "x"\n\n[[backends]]\nname = "v"\ntype = "vault"\nprimary = true\n{backend}\n')
    return p


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ('url = "http://v:8200"\npath = "a"', 'auth = "token" needs token'),
        ('url = "http://v:8200"\npath = "a"\nauth = "approle"\nsecret_id = { env = "S" }', "needs role_id"),
        ('url = "http://v:8200"\npath = "a"\nauth = "approle"\nrole_id = { env = "R" }', "needs secret_id"),
        ('url = "http://v:8200"\npath = "a"\nauth = "kubernetes"', "needs kubernetes_role"),
        ('url = "http://v:8200"\npath = "a"\ntoken = "s.inline"', "secrets are never written inline"),
        ('url = "v:8200"\npath = "a"\ntoken = { env = "T" }', "backends[0].url: must start with http"),
        ('url = "http://v:8200"\npath = "a/../b"\ntoken = { env = "T" }', "backends[0].path: must be a path"),
        ('url = "http://v:8200"\npath = "a"\ntoken = { env = "T" }\nkv_version = 3', "backends[0].kv_version"),
        ('url = "http://v:8200"\npath = "a"\ntoken = { env = "T" }\ntokn = 1', "backends[0].tokn: unknown key"),
        ('url = "http://v:8200"\ntoken = { env = "T" }', "backends[0].path: required"),
    ],
)
def test_plan_validation(tmp_path: Path, body: str, problem: str) -> None:
    with pytest.raises(PlanError) as err:
        load_plan(_plan(tmp_path, body))
    assert any(problem in p for p in err.value.problems), err.value.problems


def test_plan_loads(tmp_path: Path) -> None:
    plan = load_plan(_plan(tmp_path, 'url = "https://v:8200/"\npath = "/a/b/"\ntoken = { env = "T" }'))
    b = plan.primary
    assert (b.url, b.mount, b.path, b.field, b.kv_version, b.auth) == (  # type: ignore[attr-defined]
        "https://v:8200",
        "secret",
        "a/b",
        "api_key",
        2,
        "token",
    )


# -- TLS ------------------------------------------------------------------------


def _certs(tmp_path: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)

    def key() -> ec.EllipticCurvePrivateKey:
        return ec.generate_private_key(ec.SECP256R1())

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    ca_key = key()
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("rotator test CA"))
        .issuer_name(name("rotator test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    def leaf(cn: str, usage: x509.ObjectIdentifier, san: bool) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        k = key()
        b = (
            x509.CertificateBuilder()
            .subject_name(name(cn))
            .issuer_name(ca.subject)
            .public_key(k.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        )
        if san:
            b = b.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
            )
        return b.sign(ca_key, hashes.SHA256()), k

    out: dict[str, Path] = {}

    def save(label: str, cert: x509.Certificate, k: ec.EllipticCurvePrivateKey | None = None) -> None:
        out[label] = tmp_path / f"{label}.pem"
        out[label].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        if k is not None:
            out[label + "_key"] = tmp_path / f"{label}.key"
            out[label + "_key"].write_bytes(
                k.private_bytes(
                    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
                )
            )

    save("ca", ca)
    save("server", *leaf("vault.test", ExtendedKeyUsageOID.SERVER_AUTH, True))
    save("client", *leaf("rotator", ExtendedKeyUsageOID.CLIENT_AUTH, False))
    return out


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_tls_ca_cert_client_cert_and_verify(tmp_path: Path) -> None:
    pytest.importorskip("cryptography")
    c = _certs(tmp_path)
    server = VaultServer(tokens={ROOT_TOKEN: ROOT}, certfile=c["server"], keyfile=c["server_key"], client_ca=c["ca"])
    with server:
        assert server.url.startswith("https://127.0.0.1:")

        async def go() -> None:
            good = settings(server, ca_cert=str(c["ca"]), client_cert=str(c["client"]), client_key=str(c["client_key"]))
            async with opened(VaultBackend, **good) as b:
                check = await b.preflight()
                assert check.ok is True, check.detail
                await b.write(Secret(NEW), token="t", expected_version="0")
            # Without the CA, the server's certificate is not trusted.
            untrusted = settings(server, client_cert=str(c["client"]), client_key=str(c["client_key"]))
            async with opened(VaultBackend, **untrusted) as b:
                check = await b.preflight()
                assert check.ok is False
                assert check.detail == (
                    f"vault vault: TLS handshake with {server.url} failed (check ca_cert, client_cert, verify)"
                )
            # verify = false skips the check (the client certificate is still needed).
            async with opened(VaultBackend, **untrusted, verify=False) as b:
                assert (await b.preflight()).ok is True
            # Without a client certificate the server refuses the handshake.
            async with opened(VaultBackend, **settings(server, ca_cert=str(c["ca"]))) as b:
                check = await b.preflight()
                assert check.ok is False and "vault vault: " in check.detail

        run(go())
        assert server.get("apps/billing") == {"api_key": NEW}


def test_missing_ca_file_fails_at_open(vault: VaultServer, tmp_path: Path) -> None:
    async def go() -> None:
        async with opened(VaultBackend, **settings(vault, ca_cert=str(tmp_path / "nope.pem"))):
            pass

    with pytest.raises(PluginError, match=r"ca_cert .*nope.pem is not a readable file"):
        run(go())


# -- the server itself -------------------------------------------------------------


def test_server_answers_200_concurrent_clients() -> None:
    with VaultServer(tokens={ROOT_TOKEN: ROOT}, latency=0.05) as server:

        async def go() -> None:
            ctx = PluginContext(max_threads=256)
            backends = [
                VaultBackend(
                    VaultBackend.Settings.model_validate(settings(server, name=f"v{i}", path=f"apps/{i}")), ctx
                )
                for i in range(200)
            ]
            try:
                await asyncio.gather(*(b.open() for b in backends))
                results = await asyncio.gather(
                    *(b.write(Secret(NEW), token="t", expected_version="0") for b in backends)
                )
                assert {w.version for w in results} == {"1"}
            finally:
                await asyncio.gather(*(b.close() for b in backends))
                await ctx.aclose()

        run(go())
        assert server.writes == 200
        assert max(int(r.path.rsplit("/", 1)[1]) for r in server.records if "/data/" in r.path) == 199
