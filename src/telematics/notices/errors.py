"""Why a delivery attempt failed, and whether another attempt can help."""

from __future__ import annotations

from telematics.base.errors import TelematicsError


class DeliveryError(TelematicsError):
    """An attempt failed.

    Attributes:
        retryable: Whether a later attempt may succeed (a receiver down, a timeout, a 5xx), as
            opposed to one that cannot (a refused target, a 4xx, an address the server refuses).
    """

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class TargetRefusedError(DeliveryError):
    """A webhook URL this service will not call (scheme, credentials, a private address)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False)
