"""Who may do what: API keys, per-session tokens (JWT HS256) and roles.

Two independent switches, both off by default (``synckairos dev``):

* ``SYNCKAIROS_API_KEYS``: server-side callers (a game backend) hold an API key.
  An API key may do everything.
* ``SYNCKAIROS_TOKEN_SECRET``: clients (browsers, game clients) hold a token
  for one session, minted with an API key (``POST /v1/sessions/{id}/tokens``)
  or by the backend itself with the same secret. A token carries the session id
  (``sid``), a role and an expiry (``exp``):

  ============  =======================================================
  role          may
  ============  =======================================================
  controller    everything on its session (create it, start, pause, ...)
  participant   read, subscribe, and switch *only while it is the active
                participant* (``pid`` claim): a double click or a
                replayed request cannot advance two turns; the
                rotation order picks the next participant
                (``Switch.rotation_only``, docs/security.md)
  spectator     read and subscribe
  ============  =======================================================

What needs credentials:

* control (create, start, pause, resume, complete, cancel, delete): when
  either switch is on;
* switch and read: when the token secret is set;
* ``/ws``: a token for the session (``?token=``) when the token secret is set;
* minting tokens: an API key.

Missing, malformed or expired credentials answer 401 ``UNAUTHORIZED``; valid
ones that do not allow the action, 403 ``FORBIDDEN``.

Token lifetime and incarnation:

* ``exp`` more than ``max_ttl_s`` (``SYNCKAIROS_TOKEN_MAX_TTL_S``) after ``iat``,
  or after now (plus ``CLOCK_LEEWAY_S``), is refused: 401.
* A minted token carries ``ep``, the epoch of the session's incarnation when it
  was minted; the HTTP layer and ``Node`` refuse it (401, ``STALE_TOKEN``) on
  another incarnation (the id deleted and created again). A token without
  ``ep`` (signed by a backend, or minted before the session existed) is bound
  to the session id only, as before.
* ``sid`` and ``pid`` must be UUIDs; they are lowercased (canonical ids).
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import time
from collections.abc import Iterable

import jwt
import msgspec

from synckairos.exceptions import Forbidden, Unauthorized
from synckairos.wire import canonical_id

__all__ = [
    "CLOCK_LEEWAY_S",
    "DEFAULT_MAX_TTL_S",
    "STALE_TOKEN",
    "Action",
    "AuthPolicy",
    "Principal",
    "Role",
]

#: Default of ``SYNCKAIROS_TOKEN_MAX_TTL_S``: the longest a token may live (1 day).
DEFAULT_MAX_TTL_S = 86_400

#: Seconds a backend's clock may run ahead of ours when it signs ``exp``.
CLOCK_LEEWAY_S = 60

#: Message of the 401 for a token of another incarnation of its session.
STALE_TOKEN = (
    "this token is for an earlier incarnation of the session "
    "(it was deleted and created again): get a new token"
)


class Role(enum.StrEnum):
    """Roles a session token can carry."""

    CONTROLLER = "controller"
    PARTICIPANT = "participant"
    SPECTATOR = "spectator"


class Action(enum.Enum):
    """What a request wants to do (see the module's table)."""

    CREATE = "create"
    CONTROL = "control"
    SWITCH = "switch"
    READ = "read"
    MINT = "mint"


class Principal(msgspec.Struct, frozen=True):
    """The authenticated caller of one request."""

    kind: str
    """``"anonymous"``, ``"api_key"`` or ``"token"``."""
    subject: str = ""
    """A stable, non-secret id of the caller (per-client rate limits); "" when anonymous."""
    role: Role | None = None
    session_id: str | None = None
    participant_id: str | None = None
    epoch: str | None = None
    """A token's ``ep`` claim: the session incarnation it was minted for (None: any)."""
    expires_at_s: int | None = None
    """A token's ``exp`` (Unix seconds); None for API keys and anonymous callers."""


ANONYMOUS = Principal("anonymous")


class AuthPolicy:
    """Authenticates requests and decides what they may do."""

    def __init__(
        self,
        api_keys: Iterable[str] = (),
        secret: str | None = None,
        max_ttl_s: int = DEFAULT_MAX_TTL_S,
    ) -> None:
        self._keys = [key.encode() for key in api_keys if key]
        self.secret = secret or None
        self.max_ttl_s = max_ttl_s
        """Longest lifetime of a token (``exp`` - ``iat``, or ``exp`` - now), in seconds."""

    @classmethod
    def from_settings(
        cls, api_keys: str | None, secret: str | None, max_ttl_s: int = DEFAULT_MAX_TTL_S
    ) -> AuthPolicy:
        """Build from ``SYNCKAIROS_API_KEYS`` (comma-separated), ``SYNCKAIROS_TOKEN_SECRET``
        and ``SYNCKAIROS_TOKEN_MAX_TTL_S``."""
        return cls([k.strip() for k in (api_keys or "").split(",")], secret, max_ttl_s)

    @property
    def enabled(self) -> bool:
        """True when any credentials are required anywhere."""
        return bool(self._keys) or self.secret is not None

    def _is_api_key(self, candidate: bytes) -> bool:
        found = False
        for key in self._keys:  # constant time per key, and no early exit
            found |= hmac.compare_digest(candidate, key)
        return found

    def authenticate(self, authorization: str | None) -> Principal:
        """The caller of an ``Authorization`` header value (None: anonymous).

        Raises:
            Unauthorized: not ``Bearer <credential>``, or an unknown key or
                invalid/expired token.
        """
        if authorization is None or not self.enabled:
            return ANONYMOUS  # with auth off, credentials sent anyway are ignored
        scheme, _, credential = authorization.strip().partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential:
            raise Unauthorized("Authorization must be 'Bearer <API key or token>'")
        if self._is_api_key(credential.encode()):
            digest = hashlib.sha256(credential.encode()).hexdigest()[:16]
            return Principal("api_key", subject=f"key:{digest}")
        return self.verify_token(credential)

    def verify_token(
        self, token: str, session_id: str | None = None, *, now_s: float | None = None
    ) -> Principal:
        """The principal of a session token; with ``session_id``, it must be for that session.

        ``sid`` and ``pid`` are returned lowercased (canonical ids); ``exp`` must
        lie within ``max_ttl_s`` of ``iat`` (when present) and of ``now_s``
        (default: the system clock) plus ``CLOCK_LEEWAY_S``.

        Raises:
            Unauthorized: no token secret configured, or the token is invalid,
                expired, lives longer than ``max_ttl_s``, or its ``sid``/``pid``
                is not a UUID.
            Forbidden: the token is for another session.
        """
        if self.secret is None:
            raise Unauthorized("unknown API key (session tokens are not enabled)")
        now = time.time() if now_s is None else now_s
        try:
            claims = jwt.decode(
                token,
                self.secret,
                algorithms=["HS256"],
                options={"require": ["exp", "sid", "role"]},
            )
            role = Role(claims["role"])
        except (jwt.PyJWTError, ValueError, KeyError) as exc:
            raise Unauthorized(f"invalid token: {exc}") from None
        exp, iat = claims["exp"], claims.get("iat")
        if not isinstance(exp, int | float) or (
            exp - now > self.max_ttl_s + CLOCK_LEEWAY_S
            or (isinstance(iat, int | float) and exp - iat > self.max_ttl_s)
        ):
            raise Unauthorized(
                f"invalid token: it lives longer than the maximum of {self.max_ttl_s} s"
            )
        sid = claims["sid"]
        sid = canonical_id(sid) if isinstance(sid, str) else None
        if sid is None:
            raise Unauthorized("invalid token: sid must be a UUID")
        participant = claims.get("pid")
        if participant is not None:
            participant = canonical_id(participant) if isinstance(participant, str) else None
            if participant is None:
                raise Unauthorized("invalid token: pid must be a UUID")
        if role is Role.PARTICIPANT and participant is None:
            raise Unauthorized("invalid token: a participant token needs a pid claim")
        epoch = claims.get("ep")
        if epoch is not None and not isinstance(epoch, str):
            raise Unauthorized("invalid token: ep must be a string")
        principal = Principal(
            "token",
            subject=f"{role.value}:{participant or ''}:{sid}",
            role=role,
            session_id=sid,
            participant_id=participant,
            epoch=epoch or None,
            expires_at_s=int(exp),
        )
        if session_id is not None and principal.session_id != session_id:
            raise Forbidden("this token is for another session")
        return principal

    def authorize(self, principal: Principal, action: Action, session_id: str | None) -> None:
        """Allow ``action`` on ``session_id`` for ``principal``, or raise.

        A participant's switch is further limited by the caller: it must carry
        ``current_participant_id`` equal to the token's ``pid``.

        Raises:
            Unauthorized: credentials are needed and there are none.
            Forbidden: the credentials do not allow this action on this session.
        """
        if principal.kind == "api_key":
            return
        if principal.kind == "anonymous":
            if action is Action.MINT:
                raise Unauthorized("minting tokens needs an API key")
            needed = (
                self.enabled
                if action in (Action.CREATE, Action.CONTROL)
                else self.secret is not None
            )
            if needed:
                raise Unauthorized("this endpoint needs 'Authorization: Bearer <API key or token>'")
            return
        if principal.session_id != session_id:
            raise Forbidden("this token is for another session")
        allowed = {
            Role.CONTROLLER: {Action.CREATE, Action.CONTROL, Action.SWITCH, Action.READ},
            Role.PARTICIPANT: {Action.SWITCH, Action.READ},
            Role.SPECTATOR: {Action.READ},
        }
        if principal.role is None or action not in allowed[principal.role]:
            role = principal.role.value if principal.role else "unknown"
            raise Forbidden(f"a {role} token may not {action.value} this session")

    def mint(
        self,
        session_id: str,
        role: Role,
        participant_id: str | None,
        ttl_s: int,
        now_s: int,
        epoch: str | None = None,
    ) -> str:
        """A signed token for ``session_id`` valid ``ttl_s`` seconds from ``now_s``.

        ``epoch`` (claim ``ep``) binds it to that incarnation of the session.
        The caller checks ``ttl_s`` against ``max_ttl_s``.

        Raises:
            Forbidden: no token secret is configured.
        """
        if self.secret is None:
            raise Forbidden("session tokens are not enabled (set SYNCKAIROS_TOKEN_SECRET)")
        claims: dict[str, object] = {
            "sid": session_id,
            "role": role.value,
            "iat": now_s,
            "exp": now_s + ttl_s,
        }
        if participant_id is not None:
            claims["pid"] = participant_id
        if epoch:
            claims["ep"] = epoch
        return jwt.encode(claims, self.secret, algorithm="HS256")
