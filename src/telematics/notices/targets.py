"""Which webhook URLs the service calls: the guard against server-side request forgery.

Webhook URLs are supplied by customers, so the service must not become their way into its own
network. A URL must be http or https, name a host, carry no credentials, and, unless
`TELEMATICS_WEBHOOK_ALLOW_PRIVATE` is on, every address its host resolves to must be public:
no loopback, private, link-local (cloud metadata at 169.254.169.254), shared, multicast,
reserved or unspecified address, IPv4-mapped IPv6 included. The check runs when a subscription
is stored (what can be told without DNS) and again before every attempt (DNS may change), and
the request then goes to the address that was checked, not to a second lookup, so a DNS answer
that changes between check and connect (rebinding) cannot redirect it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

from telematics.notices.errors import DeliveryError, TargetRefusedError

MAX_URL_CHARS = 2048
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class Target:
    """A checked URL: its parts, and the address to connect to once resolved."""

    url: str
    scheme: str
    host: str
    port: int


_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries (mapped, NAT64, 6to4, Teredo)."""
    found = [a for a in (address.ipv4_mapped, address.sixtofour) if a is not None]
    if address.teredo is not None:
        found.extend(address.teredo)
    if address in _NAT64:
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF))
    return found


def is_public(address: IpAddress) -> bool:
    """Whether an address is on the public internet.

    An IPv6 address that carries an IPv4 one (mapped, NAT64, 6to4, Teredo) is public only if
    that one is too.
    """
    if isinstance(address, ipaddress.IPv6Address) and not all(
        is_public(inner) for inner in _embedded_ipv4(address)
    ):
        return False
    return address.is_global and not address.is_multicast


def _literal(host: str) -> IpAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _parts(url: str) -> SplitResult:
    if len(url) > MAX_URL_CHARS:
        raise TargetRefusedError(f"the URL is longer than {MAX_URL_CHARS} characters")
    if any(ch.isspace() or not ch.isprintable() for ch in url):
        raise TargetRefusedError("the URL holds spaces or control characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a port that is not a number in range
    except ValueError as exc:
        raise TargetRefusedError(f"not a URL: {exc}") from exc
    return parts


def check_url(url: str, *, allow_private: bool) -> Target:
    """The URL's target, if the service would call it (as far as can be told without DNS).

    Raises:
        TargetRefusedError: Not http(s), no host, credentials in it, or a private address.
    """
    parts = _parts(url)
    if parts.scheme not in ("http", "https"):
        raise TargetRefusedError("only http and https webhook URLs are called")
    if not parts.hostname:
        raise TargetRefusedError("the URL names no host")
    if parts.username is not None or parts.password is not None:
        raise TargetRefusedError("credentials in the URL are refused: use the signature")
    host = parts.hostname
    if not allow_private:
        literal = _literal(host)
        if literal is not None and not is_public(literal):
            raise TargetRefusedError(f"{host} is not a public address")
        if host == "localhost" or host.endswith((".localhost", ".local", ".internal")):
            raise TargetRefusedError(f"{host} is not a public host")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return Target(url=url, scheme=parts.scheme, host=host, port=port)


async def resolve(target: Target, *, allow_private: bool, timeout_s: float) -> IpAddress:
    """The address to connect to: the first the host resolves to, once all of them pass.

    Raises:
        TargetRefusedError: The host resolves to an address that is not public.
        DeliveryError: The name does not resolve now (retryable).
    """
    literal = _literal(target.host)
    if literal is not None:
        found = [literal]
    else:
        loop = asyncio.get_running_loop()
        try:
            infos = await asyncio.wait_for(
                loop.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM), timeout_s
            )
        except (OSError, TimeoutError) as exc:
            raise DeliveryError(f"{target.host} does not resolve: {exc}", retryable=True) from exc
        found = [ipaddress.ip_address(info[4][0]) for info in infos]
    if not found:
        raise DeliveryError(f"{target.host} resolves to no address", retryable=True)
    if not allow_private:
        for address in found:
            if not is_public(address):
                raise TargetRefusedError(f"{target.host} resolves to {address}, not public")
    return found[0]
