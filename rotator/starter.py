"""`rotator init`: a commented starter plan that passes `rotator check` as written.

Every value the operator must set is a placeholder holding PLACEHOLDER; `rotator
check` names each one left (rotator.plan.Plan.hints), so the file is valid from the
start and the check says what is still to do.
"""

from __future__ import annotations

import enum


class Primary(enum.StrEnum):
    """The backends `rotator init` can write a primary for."""

    ENVFILE = "envfile"
    VAULT = "vault"
    AWS = "aws"
    KUBERNETES = "kubernetes"


ALTERNATING_PRIMARIES = (Primary.ENVFILE, Primary.VAULT, Primary.AWS)  # can hold a standby

_HEAD = """\
# rotator plan for one secret, written by `rotator init`. Every value holding {ph} is a
# placeholder: `rotator check {path}` passes as it is and names each one left.
# Reference of every setting: docs/reference/plan.md, or `rotator help plan`.
# Editors validate this file as it is typed with a `#:schema PATH` line on top
# (`rotator schema > plan.schema.json`).
#
#   rotator check {path}                 # valid? (no network)
#   rotator rotate {path} --dry-run      # arms: every target reachable and writable
#   rotator rotate {path}                # the rotation{more}
"""

_ALT_MORE = """
#   rotator rekey {path}                 # once: seeds the standby (resets the second app)
#   rotator status {path}                # both apps, their keys, what the next rotation does"""

_TABLE_SINGLE = """
[secret]
name = "{name}"                          # the journal's and the lock's name for this secret
max_age_days = 90                        # `rotator serve` warns when the key is older
"""

_TABLE_ALTERNATING = """
[secret]
name = "{name}"                          # the journal's and the lock's name for this secret
strategy = "alternating"                 # two apps: a reset never touches a key in use
apps = ["{ph}-app-in-use", "{ph}-second-app"]   # as the dashboard names them; the first holds today's key
max_age_days = 90
"""

_PROBE = """
[probe]
preset = "adjutor"                       # GET /v2/decisioning/models with the key: a wrong paste writes nothing
check_old_key = true                     # after the rotation, prove the old key is refused
# paths = ["/v2/verification/bvn"]       # every other API service your consumers call
"""

_PRIMARIES = {
    Primary.ENVFILE: """
# The primary: the source of truth, written first. Here a dotenv file on this machine.
[[backends]]
name = "store"
type = "envfile"
primary = true
path = "/srv/{ph}/.env"                  # the file that holds the key (written atomically, mode 0600)
variable = "ADJUTOR_API_KEY"             # the variable that holds it; every other line is kept
""",
    Primary.VAULT: """
# The primary: the source of truth, written first. Here HashiCorp Vault, KV v2.
[[backends]]
name = "vault"
type = "vault"
primary = true
url = "https://vault.{ph}.example:8200"
mount = "secret"
path = "{ph}/adjutor"                    # the key lives in one field of secret/data/<path>
field = "api_key"
token = {{ env = "VAULT_TOKEN" }}          # never inline: {{ env = ... }} or {{ file = ... }}
""",
    Primary.AWS: """
# The primary: the source of truth, written first. Here AWS Secrets Manager (credentials
# from the usual AWS chain: environment, profile, instance role; never from the plan).
[[backends]]
name = "aws"
type = "aws"
primary = true
secret_id = "{ph}/adjutor"               # name or ARN
region = "eu-west-1"
json_key = "api_key"                     # the SecretString is a JSON object; the key is this field
""",
    Primary.KUBERNETES: """
# The primary: the source of truth, written first. Here a Kubernetes Secret (needs
# `pip install 'rotator[kubernetes]'`; the cluster is found as kubectl finds it).
[[backends]]
name = "secret"
type = "kubernetes"
primary = true
namespace = "{ph_lower}"                 # the Secret's namespace
secret = "adjutor-api"
key = "ADJUTOR_API_KEY"                  # the Secret's data key; every other key is kept
""",
}

_CONSUMERS = """
# Consumers: the services that use the key, told to reload once what they read is written.
# Uncomment and adapt one per service (docs/consumers.md has every type):
#
# [[consumers]]
# name = "payments-api"
# type = "webhook"                       # a signed POST; confirm_url confirms the new fingerprint
# url = "https://payments.internal/rotator/reload"
# hmac_key = {{ env = "PAYMENTS_RELOAD_HMAC_KEY" }}
#
# [[consumers]]
# name = "worker"
# type = "signal"                        # SIGHUP to a local process
# pidfile = "/run/worker.pid"
"""


def starter_plan(path: str, name: str, primary: Primary, alternating: bool) -> str:
    """The plan's text; `path` is only shown in its comments."""
    from rotator.plan import PLACEHOLDER  # pydantic: not for `rotator --help`

    if alternating and primary not in ALTERNATING_PRIMARIES:
        raise ValueError(
            f"a {primary} primary cannot hold a standby key: --alternating needs "
            + ", ".join(p.value for p in ALTERNATING_PRIMARIES)
        )
    fields = {"ph": PLACEHOLDER, "ph_lower": PLACEHOLDER.lower(), "path": path, "name": name}
    more = _ALT_MORE.format(**fields) if alternating else ""
    parts = [
        _HEAD.format(more=more, **fields),
        (_TABLE_ALTERNATING if alternating else _TABLE_SINGLE).format(**fields),
        _PROBE,
        _PRIMARIES[primary].format(**fields),
        _CONSUMERS.format(**fields),
    ]
    return _align("".join(parts))


def _align(text: str) -> str:
    """Line the end-of-line comments of settings up in one column, whatever was filled in."""
    out = []
    for line in text.splitlines():
        value, sep, comment = line.partition("  # ")
        if sep and not line.startswith("#") and "=" in value:
            line = f"{value.rstrip():<40} # {comment}"
        out.append(line)
    return "\n".join(out) + "\n"
