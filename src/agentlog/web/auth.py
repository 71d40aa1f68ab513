"""Who is asking, and may they: the gateway's identities and the checks every route applies.

A browser is a user through a signed, HttpOnly session cookie, issued with a new random user id on
its first request (AGENTLOG_ANONYMOUS_SESSIONS=0 turns that off); an API client sends
`Authorization: Bearer <key>` (`agentlog keys create`). A key can also be exchanged for a cookie at
POST /api/session, so that an admin can use the page's admin views. The user id never comes from a
request body. A conversation belongs to the user of its first UserQueryReceived; anyone else gets
the same 404 as for a conversation that does not exist.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agentlog.config import Settings
from agentlog.events.envelope import Envelope
from agentlog.web.keys import KeyStore, gateway_dir

if TYPE_CHECKING:
    from agentlog.web.app import Gateway

COOKIE = "agentlog_session"
COOKIE_MAX_AGE_S = 365 * 24 * 3600
CHALLENGE = {"WWW-Authenticate": "Bearer"}
SESSION_STATE = "agentlog.session"  # key of the verified cookie payload in the ASGI scope's state
ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,128}$"
ConversationId = Annotated[str, PathParam(pattern=ID_PATTERN, description="the conversation's id (its Kafka key)")]
ADMIN_NEEDED = "this view needs an admin API key (`agentlog keys create --user U --admin`, then POST /api/session)"


@dataclass(frozen=True)
class Identity:
    user_id: str
    admin: bool = False
    key_id: str | None = None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(payload: str, secret: bytes) -> str:
    """The cookie value of a session payload (`u:<user id>` or `k:<key id>`)."""
    mac = hmac.new(secret, payload.encode(), hashlib.sha256).digest()
    return f"{_b64(payload.encode())}.{_b64(mac)}"


def verify(value: str, secret: bytes) -> str | None:
    """The payload of a cookie value this gateway signed, else None."""
    encoded, _, mac = value.partition(".")
    try:
        payload = _unb64(encoded).decode()
        given = _unb64(mac)
    except (ValueError, UnicodeDecodeError):
        return None
    expected = hmac.new(secret, payload.encode(), hashlib.sha256).digest()
    return payload if hmac.compare_digest(given, expected) else None


def session_secret(settings: Settings, env: Mapping[str, str] | None = None) -> bytes:
    """AGENTLOG_SESSION_SECRET, else var/gateway/session-secret, made (mode 0600) on first use and
    shared by every gateway process on this var/."""
    configured = (os.environ if env is None else env).get("AGENTLOG_SESSION_SECRET", "")
    if configured:
        return configured.encode()
    path = gateway_dir(settings) / "session-secret"
    if not path.exists():
        _create_secret(path)
    return path.read_bytes().strip()


def _create_secret(path: Path) -> None:
    """Written aside and linked into place, so that a concurrent reader never sees a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    draft = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(secrets.token_urlsafe(48))
    try:
        os.link(draft, path)
    except FileExistsError:
        pass  # another gateway made it first: use theirs
    finally:
        draft.unlink()


@dataclass(frozen=True)
class Auth:
    """What the session middleware and the route dependencies share (app.state.auth)."""

    secret: bytes
    keys: KeyStore
    anonymous: bool = True
    secure_cookie: bool = False

    @classmethod
    def from_env(cls, settings: Settings, env: Mapping[str, str] | None = None) -> Auth:
        """AGENTLOG_SESSION_SECRET, AGENTLOG_ANONYMOUS_SESSIONS (default 1), AGENTLOG_COOKIE_SECURE (default 0)."""
        env = os.environ if env is None else env
        return cls(session_secret(settings, env), KeyStore.of(settings),
                   anonymous=env.get("AGENTLOG_ANONYMOUS_SESSIONS", "1") != "0",
                   secure_cookie=env.get("AGENTLOG_COOKIE_SECURE", "0") == "1")

    def set_cookie(self, payload: str) -> str:
        """A Set-Cookie header value: HttpOnly (no script reads it), SameSite=Lax (no cross-site POST)."""
        secure = "; Secure" if self.secure_cookie else ""
        return f"{COOKIE}={sign(payload, self.secret)}; Path=/; Max-Age={COOKIE_MAX_AGE_S}; HttpOnly; SameSite=Lax{secure}"

    def identity(self, authorization: str | None, session: str | None) -> Identity:
        """The caller, from a bearer key or else the session payload; 401 when neither holds. Blocking."""
        if authorization is not None:
            scheme, _, key = authorization.partition(" ")
            found = self.keys.verify(key.strip()) if scheme.lower() == "bearer" else None
            if found is None:
                raise HTTPException(401, "invalid or revoked API key (expected `Authorization: Bearer alk_...`)",
                                    headers=CHALLENGE)
            return Identity(found.user_id, found.admin, found.id)
        kind, _, value = (session or "").partition(":")
        if kind == "u" and value:
            return Identity(value)
        if kind == "k":
            signed_in = self.keys.get(value)
            if signed_in is not None:
                return Identity(signed_in.user_id, signed_in.admin, signed_in.id)
            raise HTTPException(401, "the API key of this session was revoked; sign in again", headers=CHALLENGE)
        raise HTTPException(401, "no session: send `Authorization: Bearer <API key>` or sign in at POST /api/session",
                            headers=CHALLENGE)


class SessionMiddleware:
    """Reads the session cookie into the scope; issues a new user's cookie to a request with neither
    a valid cookie nor a bearer key (when anonymous sessions are on)."""

    def __init__(self, app: ASGIApp, auth: Auth) -> None:
        self.app = app
        self.auth = auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        cookie = cookie_parser(headers.get("cookie", "")).get(COOKIE)
        payload = None if cookie is None else verify(cookie, self.auth.secret)
        if payload is not None and self.auth.anonymous and await self._revoked(payload):
            payload = None  # a revoked key's session: a new user, rather than 401 on every request
        issued = None
        if payload is None and "authorization" not in headers and self.auth.anonymous:
            payload = issued = f"u:user-{secrets.token_hex(8)}"
        scope.setdefault("state", {})[SESSION_STATE] = payload
        if issued is None:
            await self.app(scope, receive, send)
            return
        set_cookie = self.auth.set_cookie(issued)

        async def with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).append("set-cookie", set_cookie)
            await send(message)

        await self.app(scope, receive, with_cookie)

    async def _revoked(self, payload: str) -> bool:
        """Whether the session is a signed-in key's that is no longer live (a SQLite read, off the loop)."""
        return payload.startswith("k:") and await asyncio.to_thread(self.auth.keys.get, payload[2:]) is None


def auth_of(request: Request) -> Auth:
    auth: Auth = request.app.state.auth
    return auth


def current_user(request: Request) -> Identity:
    """The caller (a sync dependency: FastAPI runs it in a thread, as a key lookup reads SQLite)."""
    return auth_of(request).identity(request.headers.get("authorization"),
                                     request.scope.get("state", {}).get(SESSION_STATE))


User = Annotated[Identity, Depends(current_user)]


def optional_user(request: Request) -> Identity | None:
    """The caller if there is one: a probe without a session or key is no error where identity is optional."""
    try:
        return current_user(request)
    except HTTPException:
        return None


MaybeUser = Annotated[Identity | None, Depends(optional_user)]


def require_admin(identity: User) -> Identity:
    if not identity.admin:
        raise HTTPException(403, ADMIN_NEEDED)
    return identity


Admin = Annotated[Identity, Depends(require_admin)]


def owner_from_events(events: Iterable[Envelope]) -> str | None:
    """The owner of a conversation: the user of its first UserQueryReceived."""
    return next((e.user_id for e in events if e.type == "UserQueryReceived"), None)


def may_use(owner: str | None, identity: Identity, *, new_allowed: bool) -> bool:
    """Whether the caller may use a conversation owned by `owner` (None: nobody asked in it yet)."""
    return new_allowed if owner is None else owner == identity.user_id


@dataclass(frozen=True)
class Access:
    """The owner of a conversation, and its events when finding the owner had to read them."""

    identity: Identity
    events: list[Envelope] | None = None


async def conversation_owner(gateway: Gateway, conversation_id: str) -> tuple[str | None, list[Envelope] | None]:
    """The owner from the gateway's index; once the reader has caught up with the log, an id the
    index does not know has none. Only before that is the conversation's partition read (returned
    too, so that the route need not read it again): an unknown id must not cost a partition scan."""
    owner = gateway.index.owner_of(conversation_id)
    if owner is not None or gateway.live.caught_up.is_set():
        return owner, None
    events = await asyncio.to_thread(gateway.store.events_of, conversation_id)
    return owner_from_events(events), events


def not_found(conversation_id: str) -> HTTPException:
    return HTTPException(404, f"conversation {conversation_id!r} has no events in the log")


async def check_access(request: Request, conversation_id: str, identity: Identity, *, new_allowed: bool) -> Access:
    """The caller's access, or the 404 of an unknown conversation (another user's id is not revealed)."""
    owner, events = await conversation_owner(request.app.state.gateway, conversation_id)
    if not may_use(owner, identity, new_allowed=new_allowed):
        raise not_found(conversation_id)
    return Access(identity, events)


async def require_owner(request: Request, conversation_id: ConversationId, identity: User) -> Access:
    """The caller, who owns this existing conversation (404 otherwise, as for an unknown one)."""
    return await check_access(request, conversation_id, identity, new_allowed=False)


async def require_owner_or_new(request: Request, conversation_id: ConversationId, identity: User) -> Identity:
    """The caller, who owns this conversation or may start it (the page opens a new one's stream first)."""
    return (await check_access(request, conversation_id, identity, new_allowed=True)).identity


Owner = Annotated[Access, Depends(require_owner)]
OwnerOrNew = Annotated[Identity, Depends(require_owner_or_new)]


def rate_limited(request: Request, identity: User) -> Identity:
    """The caller, within their rate of commands (429 with Retry-After otherwise). An anonymous user
    is new with every dropped cookie, so their commands are also charged to the client's address."""
    request.app.state.limiter.admit(identity.user_id)
    if identity.key_id is None and request.client is not None:
        request.app.state.address_limiter.admit(request.client.host)
    return identity


Commanding = Annotated[Identity, Depends(rate_limited)]


def same_user(claimed: str | None, identity: Identity) -> None:
    """A user id still sent by an older client may only name the caller."""
    if claimed is not None and claimed != identity.user_id:
        raise HTTPException(403, "the user id comes from your session or API key; you cannot act as another user")


session_router = APIRouter(prefix="/api/session", tags=["session"])


@session_router.get("")
def whoami(identity: User) -> dict[str, Any]:
    """Who the gateway takes the caller for."""
    return {"userId": identity.user_id, "admin": identity.admin}


@session_router.post("")
def sign_in(request: Request, identity: User) -> JSONResponse:
    """Exchange the bearer key of this request for a session cookie (the page cannot send headers)."""
    if identity.key_id is None:
        raise HTTPException(400, "sign in with `Authorization: Bearer <API key>`")
    response = JSONResponse({"userId": identity.user_id, "admin": identity.admin})
    response.headers.append("set-cookie", auth_of(request).set_cookie(f"k:{identity.key_id}"))
    return response
