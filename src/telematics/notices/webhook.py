"""Webhook delivery: one signed POST, to the address that was checked, bounded in every way.

The request carries `X-Notice-Id` (the delivery id: the receiver's idempotency key),
`X-Timestamp` (epoch seconds) and `X-Signature` (`payload.sign`). Redirects are never followed,
at most `max_response_bytes` of the answer are read (and only for the error message), and the
whole attempt, connection and TLS included, is bounded by `timeout_s`. HTTPS connections to a
named host are not kept for reuse (see `send`). httpx's errors are
translated into `DeliveryError` here, chained; nothing of httpx leaves this module.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time

import httpx

from telematics.notices.errors import DeliveryError
from telematics.notices.payload import sign
from telematics.notices.targets import check_url, resolve

USER_AGENT = "telematics-notices/1"
# Answers worth another attempt: the receiver is busy, overloaded or failing for now.
RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


class WebhookSender:
    """Sends notices to webhooks; one connection pool for every receiver."""

    def __init__(self, *, timeout_s: float, max_response_bytes: int, allow_private: bool) -> None:
        """Create the sender; `close` releases its connections."""
        self._timeout_s = timeout_s
        self._max_response_bytes = max_response_bytes
        self._allow_private = allow_private
        self._client = httpx.AsyncClient(
            follow_redirects=False,
            timeout=httpx.Timeout(timeout_s),
            trust_env=False,  # no proxy from the environment: the checked address is the peer
            limits=httpx.Limits(max_connections=32, max_keepalive_connections=8),
        )

    async def close(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()

    async def send(self, url: str, secret: str, delivery_id: int, raw: bytes) -> None:
        """POST `raw` to `url`, signed with `secret`.

        Raises:
            DeliveryError: Refused target, network failure, timeout, or an answer other than
                2xx (retryable for a network failure, a timeout, 408, 425, 429 and 5xx).
        """
        target = check_url(url, allow_private=self._allow_private)
        address = await resolve(
            target, allow_private=self._allow_private, timeout_s=self._timeout_s
        )
        timestamp = int(time.time())
        pinned = httpx.URL(url).copy_with(host=str(address))
        default_port = 443 if target.scheme == "https" else 80
        host_header = target.host if ":" not in target.host else f"[{target.host}]"
        if target.port != default_port:
            host_header = f"{host_header}:{target.port}"
        headers = {
            "Host": host_header,
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "X-Notice-Id": str(delivery_id),
            "X-Timestamp": str(timestamp),
            "X-Signature": sign(secret, timestamp, raw),
        }
        extensions = {}
        if target.scheme == "https" and not _is_literal(target.host):
            extensions["sni_hostname"] = target.host  # TLS checks the name, not the address
            # The pool keys connections by address, not by name: a kept TLS connection could
            # carry another host's request without that host's certificate ever being checked.
            headers["Connection"] = "close"
        try:
            async with asyncio.timeout(self._timeout_s):
                await self._post(pinned, headers, raw, extensions)
        except TimeoutError as exc:
            raise DeliveryError(f"no answer within {self._timeout_s:g} s", retryable=True) from exc
        except httpx.HTTPError as exc:
            raise DeliveryError(f"{type(exc).__name__}: {exc}", retryable=True) from exc

    async def _post(
        self, url: httpx.URL, headers: dict[str, str], raw: bytes, extensions: dict[str, str]
    ) -> None:
        request = self._client.build_request(
            "POST", url, headers=headers, content=raw, extensions=extensions
        )
        response = await self._client.send(request, stream=True)
        try:
            if 200 <= response.status_code < 300:
                return
            answer = await self._head_of(response)
        finally:
            await response.aclose()
        status = response.status_code
        if 300 <= status < 400:
            where = response.headers.get("location", "")[:200]
            raise DeliveryError(f"HTTP {status}: redirect to {where!r} not followed",
                                retryable=False)  # fmt: skip
        raise DeliveryError(f"HTTP {status}: {answer}", retryable=status in RETRYABLE_STATUS)

    async def _head_of(self, response: httpx.Response) -> str:
        """At most `max_response_bytes` of the answer, as text for the log."""
        taken = bytearray()
        async for chunk in response.aiter_raw():
            taken += chunk[: self._max_response_bytes - len(taken)]
            if len(taken) >= self._max_response_bytes:
                break
        return taken.decode("utf-8", "replace")[:200]


def _is_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
