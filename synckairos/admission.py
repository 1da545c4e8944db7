"""Admission of requests and sockets: authentication, roles, then rate limits.

``Admission`` is built once per node from the settings and kept on the app
(``app.state.admission``); the HTTP and WebSocket layers call it before they
touch any state, so a refused request changes nothing.

Limits (``SYNCKAIROS_RATE_LIMIT_*``, off with ``SYNCKAIROS_RATE_LIMITS=off``):

=============  ====================  ====================================
bucket         default               counted per
=============  ====================  ====================================
``switch``     10/s                  session (every committed command on it;
                                     checked inside the commit script)
``create``     100/s burst 1000      client (creations and token mints)
``get``        100/s burst 1000      client
``time``       50/s burst 4000       IP
``ws_connect`` 20/s burst 600        IP
``ws_message`` 100/min               connection (in memory; close 1008)
=============  ====================  ====================================

The defaults let a crowd behind one NAT address (an exam hall, a LAN party:
500 sockets at once) and a backend creating 50 sessions a second through,
while one client flooding is held to the sustained rate; docs/security.md
gives the reasoning.

A *client* is the caller's API key or token when it sent one, else its IP
(the first untrusted hop of ``X-Forwarded-For`` when behind a trusted proxy,
as resolved by uvicorn from ``SYNCKAIROS_TRUSTED_PROXIES``).

Each HTTP route declares its ``Policy`` in the route table
(``synckairos.routes``); ``Admission.admit`` applies it before the handler runs.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from synckairos.auth import Action, AuthPolicy, Principal
from synckairos.config import Rate, Settings, parse_rate
from synckairos.exceptions import RateLimited
from synckairos.ratelimit import LocalLimiter, RateLimiter

__all__ = ["Admission", "Limits", "Policy"]


class Policy(msgspec.Struct, frozen=True):
    """How a route admits a request: authenticate, authorize an action, count a hit.

    A route without a policy is public: its credentials are not even read.
    """

    action: Action | None = None
    """What the caller must be allowed to do (None: authentication only)."""
    bucket: str | None = None
    """The rate-limit bucket counted (a field of ``Limits``; None: no limit here)."""
    per: Literal["client", "ip", "session"] = "client"
    """The identity the bucket counts per: the caller, its IP, or the path's session."""
    authorize_on: Literal["path", "body"] = "path"
    """Where the session id the action is authorized on comes from: the path
    (authorized before the handler runs) or the body (the handler decodes it and
    calls ``authorize``: a create names its session in the body)."""


class Limits(msgspec.Struct, frozen=True):
    """The configured rates, parsed."""

    switch: Rate
    create: Rate
    get: Rate
    time: Rate
    ws_connect: Rate
    ws_message: Rate

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        def rate(name: str) -> Rate:
            return parse_rate(f"SYNCKAIROS_{name.upper()}", getattr(settings, name))

        return cls(
            switch=rate("rate_limit_switch"),
            create=rate("rate_limit_create"),
            get=rate("rate_limit_get"),
            time=rate("rate_limit_time"),
            ws_connect=rate("rate_limit_ws_connect"),
            ws_message=rate("rate_limit_ws_messages"),
        )


class Admission:
    """Auth policy plus rate limiters of one node."""

    def __init__(
        self, auth: AuthPolicy, limits: Limits, limiter: RateLimiter | None = None
    ) -> None:
        self.auth = auth
        self.limits = limits
        self.limiter = limiter
        """None: rate limits are off."""

    async def admit(
        self, policy: Policy, authorization: str | None, ip: str, session_id: str | None
    ) -> Principal:
        """Authenticate, authorize ``policy.action`` on ``session_id``, then count one hit.

        Args:
            policy: the route's policy.
            authorization: the ``Authorization`` header (None: absent).
            ip: the caller's address (per-IP limits; per-client without credentials).
            session_id: the path's canonical session id (None: the path has none).

        Raises:
            Unauthorized, Forbidden, RateLimited: refused; nothing was done.
        """
        principal = self.auth.authenticate(authorization)
        if policy.action is not None and policy.authorize_on == "path":
            self.auth.authorize(principal, policy.action, session_id)
        if policy.bucket is not None:
            identity = (
                f"s:{session_id}"
                if policy.per == "session"
                else f"ip:{ip}"
                if policy.per == "ip"
                else Admission.client(principal, ip)
            )
            await self.limit(policy.bucket, identity)
        return principal

    async def limit(self, bucket: str, identity: str) -> dict[str, str]:
        """Count one hit; return the ``RateLimit-*`` headers (empty when limits are off).

        Raises:
            RateLimited: the limit is exhausted (nothing was counted).
        """
        if self.limiter is None:
            return {}
        rate: Rate = getattr(self.limits, bucket)
        verdict = await self.limiter.hit(bucket, identity, rate)
        if not verdict.allowed:
            raise RateLimited(
                f"rate limit of {rate.limit} per {rate.period_ms // 1000} s exceeded",
                {
                    "limit": bucket,
                    "retry_after_ms": verdict.retry_after_ms,
                },
                verdict.headers(),
            )
        return verdict.headers()

    @staticmethod
    def client(principal: Principal, ip: str) -> str:
        """The identity of per-client limits: the credential's subject, else the IP."""
        return principal.subject or f"ip:{ip}"

    def session_rate(self) -> Rate | None:
        """The per-session command limit, counted inside the commit (None: limits off)."""
        return self.limits.switch if self.limiter is not None else None

    def socket_limiter(self) -> LocalLimiter | None:
        """A fresh per-connection message limiter (None when limits are off)."""
        return LocalLimiter(self.limits.ws_message) if self.limiter is not None else None
