"""Who is acting, from the request: what the journal records as the operator.

By default the operator is the name the page sent (typed by whoever is at it)
and the client's address: ``alice (web, 10.0.0.7)``, or ``web (10.0.0.7)``.
Behind an authenticating proxy (oauth2-proxy, an ingress with SSO), the proxy
names the signed-in user in a header; that header is believed only from the
proxies named by ``--trusted-proxy`` (``$ROTATOR_TRUSTED_PROXY``), since any
other client could send it too.  From a trusted proxy, ``X-Forwarded-For``'s
last hop gives the client's address as well.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from starlette.requests import Request

DEFAULT_HEADER = "X-Forwarded-User"
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Identity:
    """How the service tells who is acting: trusted proxies and their user header."""

    trusted: tuple[Network, ...] = ()
    header: str = DEFAULT_HEADER

    @classmethod
    def parse(cls, proxies: tuple[str, ...] | list[str], header: str = DEFAULT_HEADER) -> Identity:
        """From ``--trusted-proxy`` values (addresses or CIDRs, comma- or space-separated).
        Raises ValueError naming the value that is not one."""
        nets = []
        for value in proxies:
            for item in value.replace(",", " ").split():
                try:
                    nets.append(ipaddress.ip_network(item, strict=False))
                except ValueError:
                    raise ValueError(f"--trusted-proxy {item!r} is not an IP address or CIDR") from None
        return cls(tuple(nets), header.strip() or DEFAULT_HEADER)

    def trusts(self, host: str | None) -> bool:
        if not host or not self.trusted:
            return False
        try:
            addr = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(addr in net for net in self.trusted)


def _clean(value: object, limit: int = 80) -> str:
    text = " ".join(str(value).split()) if isinstance(value, str) else ""
    return "".join(c for c in text if c.isprintable())[:limit]


def identity_of(request: Request) -> dict[str, Any]:
    """Who the request comes from: the user (a trusted proxy's header), the client's address, how known."""
    ident: Identity = getattr(request.app.state, "identity", None) or Identity()
    peer = request.client.host if request.client else "?"
    if ident.trusts(peer):
        hops = [h.strip() for h in request.headers.get("x-forwarded-for", "").split(",") if h.strip()]
        client = _clean(hops[-1], 64) if hops else peer
        user = _clean(request.headers.get(ident.header, ""))
        if user:
            return {"user": user, "client": client, "source": ident.header, "via": peer}
        return {"user": None, "client": client, "source": None, "via": peer}
    return {"user": None, "client": peer, "source": None, "via": None}


def operator_of(request: Request, typed: object = None) -> str:
    """The operator the journal records for this request."""
    who = identity_of(request)
    if who["user"]:
        return f"{who['user']} (web, {who['source']}, {who['client']})"[:200]
    name = _clean(typed)
    return f"{name} (web, {who['client']})" if name else f"web ({who['client']})"
