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


def is_public(address: IpAddress) -> bool:
    """Whether an address is on the public internet (IPv4-mapped IPv6 judged as its IPv4)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
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
