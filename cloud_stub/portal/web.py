"""The portal's HTTP side: a JSON API (OpenAPI at ``/openapi.json``) and the dashboard.

Theory of operation: `create_app` builds a FastAPI application around a `PortalContext`
(the portal's SQLite, a reader of the backend's store, and the backend that signs and
publishes commands). FastAPI is chosen for its typed request and response models: they are
the single validation layer at the edge (a wrong type is a 422 naming the field) and the
OpenAPI document is generated from the same models the handlers return, so schemathesis
checks the real contract. It runs on uvicorn in the backend's own event loop.

Every ``/api`` request but login and accepting an invitation needs the session cookie
(HttpOnly, SameSite=Strict); every state-changing request also needs the session's CSRF
token in ``X-CSRF-Token`` (a synchronizer token a cross-site page cannot read) and, when
the browser sends one, an Origin of this host. Login issues a brand-new session whatever
cookie came with it (no fixation) and failed logins are rate-limited per e-mail and per
client address. Handlers ask the `Portal` for everything, which checks role and account;
a refusal is JSON ``{"error": {"code", "message"}}`` with a status from its code, and a
VIN of another account is a 404 like a VIN that does not exist. ``/api/events`` is a
server-sent event stream that pushes the vehicle list, or one vehicle, whenever the store,
the command results or the portal change.
"""

import asyncio
import contextlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Annotated, Any, Final, Protocol

from fastapi import Depends, FastAPI, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from cloud_stub.commands import SignedDownlink, check_command
from cloud_stub.errors import CloudError
from cloud_stub.portal.model import Portal, User, VehicleEntry
from cloud_stub.portal.passwords import hash_password, verify, verify_nobody
from cloud_stub.portal.rules import PRODUCTS, Command, Product, Refusal, Role, check_password
from cloud_stub.portal.security import BodyGuard, LoginLimiter
from cloud_stub.portal.view import StoreReader

__all__ = ["CommandSender", "PortalContext", "create_app"]

COOKIE: Final = "portal_session"
CSRF_HEADER: Final = "x-csrf-token"
EVENT_POLL_S: Final = 0.25
EVENT_KEEPALIVE_S: Final = 15.0

STATUS_BY_CODE: Final[dict[str, int]] = {
    "not_found": 404,
    "no_account": 404,
    "forbidden": 403,
    "role_escalation": 403,
    "csrf": 403,
    "bad_origin": 403,
    "administrator_cannot_leave": 409,
    "vin_in_other_account": 409,
    "vin_in_account": 409,
    "email_taken": 409,
    "location_exists": 409,
    "account_exists": 409,
    "already_assigned": 409,
    "not_assigned": 409,
    "no_product_left": 409,
    "service_not_assigned": 409,
    "vehicle_removed": 409,
    "already_administrator": 409,
    "invitation_pending": 409,
    "unauthenticated": 401,
    "bad_login": 401,
    "rate_limited": 429,
    "backend_unavailable": 503,
    "command_failed": 502,
}


class CommandSender(Protocol):
    """What sends signed downlinks: the running `Backend`."""

    async def send_command(
        self, vin: str, name: str, argument: str | None = None, *, timeout: float = 10.0
    ) -> SignedDownlink: ...

    async def activate(self, vin: str) -> SignedDownlink: ...

    async def deactivate(self, vin: str) -> SignedDownlink: ...


@dataclass(slots=True)
class PortalContext:
    portal: Portal
    reader: StoreReader
    sender: CommandSender | None = None
    limiter: LoginLimiter = field(default_factory=LoginLimiter)
    secure_cookies: bool = False
    stopping: asyncio.Event = field(default_factory=asyncio.Event)


# --- models -------------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail


class LoginIn(_Strict):
    email: str = Field(max_length=254)
    password: str = Field(max_length=256)


class InvitationIn(_Strict):
    token: str = Field(max_length=128)
    password: str = Field(max_length=256)


class UserOut(BaseModel):
    id: int
    email: str
    role: str
    account: str
    has_login: bool


class MeOut(BaseModel):
    user: UserOut
    csrf_token: str


class VehicleIn(_Strict):
    vin: str = Field(max_length=64)
    location: str | None = Field(default=None, max_length=80)


class VehicleOut(BaseModel):
    vin: str
    location: str | None
    services: list[str]
    drivers: list[str]
    removed: bool
    data_available: bool
    status: dict[str, Any] | None


class ServiceIn(_Strict):
    product: Product


class SwitchOut(BaseModel):
    vin: str
    switch: str
    command_id: str | None
    sent: bool


class ServiceOut(BaseModel):
    vehicle: VehicleOut
    switches: list[SwitchOut]


class DriverIn(_Strict):
    email: str = Field(max_length=254)


class CommandIn(_Strict):
    name: Command
    argument: str | None = Field(default=None, max_length=16)


class Outcome(BaseModel):
    outcome: str
    reason: str | None
    t_ms: int


class CommandOut(BaseModel):
    command_id: str
    counter: int
    name: str
    argument: str | None
    user: str
    sent_at: float
    outcomes: list[Outcome]
    result: dict[str, Any] | None


class ProductIn(_Strict):
    product: Product
    count: int = Field(ge=1, le=1_000_000)


class ProductOut(BaseModel):
    product: str
    bought: int
    assigned: int


class UserIn(_Strict):
    email: str = Field(max_length=254)
    role: Role


class InviteOut(BaseModel):
    user: UserOut
    invitation_token: str


class LocationIn(_Strict):
    name: str = Field(max_length=80)


class AccountOut(BaseModel):
    name: str
    locations: list[str]
    data_available: bool


class Done(BaseModel):
    ok: bool


VinPath = Annotated[str, Path(max_length=64)]
ERRORS: Final[dict[int | str, dict[str, Any]]] = {
    status: {"model": ErrorBody}
    for status in (400, 401, 403, 404, 405, 409, 413, 422, 429, 502, 503)
}


# --- the application ----------------------------------------------------------------------


def create_app(ctx: PortalContext) -> Any:
    """The ASGI application: FastAPI behind the body guard."""
    app = FastAPI(
        title="cloud-stub fleet portal",
        version="1",
        description="Accounts, vehicles, services and remote commands of the stub backend.",
        docs_url=None,
        redoc_url=None,
        responses=ERRORS,
    )
    portal = ctx.portal

    @app.exception_handler(Refusal)
    async def refused(request: Request, exc: Refusal) -> JSONResponse:
        response = _error(STATUS_BY_CODE.get(exc.code, 400), exc.code, exc.sentence)
        if isinstance(exc, _RateLimited):
            response.headers["Retry-After"] = str(max(1, round(exc.wait)))
        return response

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {400: "malformed", 404: "not_found", 405: "method_not_allowed"}
        return _error(exc.status_code, codes.get(exc.status_code, "http_error"), str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for error in exc.errors()[:5]:
            where = ".".join(str(p) for p in error.get("loc", ()))
            problems.append(f"{where}: {error.get('msg', 'invalid')}")
        return _error(422, "invalid", "; ".join(problems) or "invalid request")

    def session(request: Request) -> tuple[User, str]:
        token = request.cookies.get(COOKIE)
        found = portal.session(token) if token and len(token) <= 128 else None
        if found is None:
            raise Refusal("unauthenticated", "Log in first.")
        return found

    async def user(request: Request) -> User:
        return session(request)[0]

    async def changing(request: Request) -> User:
        """A state-changing request: the session, its CSRF token, and our own origin."""
        account_user, csrf = session(request)
        _check_origin(request)
        sent = request.headers.get(CSRF_HEADER, "")
        if not hmac.compare_digest(sent.encode(), csrf.encode()):
            raise Refusal("csrf", "The request lacks this session's CSRF token.")
        return account_user

    Viewer = Annotated[User, Depends(user)]
    Changer = Annotated[User, Depends(changing)]

    # --- sessions ---------------------------------------------------------------------------

    @app.post("/api/login", response_model=MeOut, tags=["session"])
    async def login(body: LoginIn, request: Request, response: Response) -> MeOut:
        _check_origin(request)
        client = request.client.host if request.client else "?"
        keys = (f"email:{body.email.lower()}", f"ip:{client}")
        wait = ctx.limiter.retry_after(*keys)
        if wait > 0:
            raise _RateLimited(wait)
        found = await _authenticate(portal, body.email, body.password)
        if found is None:
            ctx.limiter.failed(*keys)
            raise Refusal("bad_login", "Wrong e-mail or password.")
        ctx.limiter.succeeded(keys[0])
        old = request.cookies.get(COOKIE)
        if old and len(old) <= 128:
            portal.close_session(old)
        token, csrf = portal.open_session(found)
        response.set_cookie(
            COOKIE,
            token,
            httponly=True,
            samesite="strict",
            secure=ctx.secure_cookies,
            path="/",
        )
        return MeOut(user=_user_out(found), csrf_token=csrf)

    @app.post("/api/logout", response_model=Done, tags=["session"])
    async def logout(request: Request, response: Response, _: Changer) -> Done:
        token = request.cookies.get(COOKIE)
        if token:
            portal.close_session(token)
        response.delete_cookie(COOKIE, path="/")
        return Done(ok=True)

    @app.get("/api/me", response_model=MeOut, tags=["session"])
    async def me(request: Request) -> MeOut:
        found, csrf = session(request)
        return MeOut(user=_user_out(found), csrf_token=csrf)

    @app.post("/api/invitations/accept", response_model=UserOut, tags=["session"])
    async def accept(body: InvitationIn, request: Request) -> UserOut:
        _check_origin(request)
        hashed = await asyncio.to_thread(hash_password, check_password(body.password))
        return _user_out(portal.accept_hashed(body.token, hashed))

    # --- vehicles ---------------------------------------------------------------------------

    def vehicle_out(actor: User, entry: VehicleEntry) -> VehicleOut:
        available = portal.data_available(actor.account_id)
        shows = available and (entry.removed or "vehicle_status" in entry.services)
        status = None
        if shows:
            status = ctx.reader.state(entry.vin, entry.since_record, entry.until_record).as_json()
        return VehicleOut(
            vin=entry.vin,
            location=entry.location,
            services=list(entry.services),
            drivers=list(entry.drivers),
            removed=entry.removed,
            data_available=available,
            status=status,
        )

    def vehicles_of(actor: User) -> list[VehicleOut]:
        entries = portal.vehicles(actor, actor.account_id)
        entries += portal.removed_vehicles(actor, actor.account_id)
        return [vehicle_out(actor, e) for e in entries]

    @app.get("/api/vehicles", response_model=list[VehicleOut], tags=["vehicles"])
    async def list_vehicles(actor: Viewer) -> list[VehicleOut]:
        return vehicles_of(actor)

    @app.post("/api/vehicles", response_model=VehicleOut, status_code=201, tags=["vehicles"])
    async def add_vehicle(body: VehicleIn, actor: Changer) -> VehicleOut:
        entry = portal.add_vehicle(actor, actor.account_id, body.vin, location=body.location)
        return vehicle_out(actor, entry)

    @app.get("/api/vehicles/{vin}", response_model=VehicleOut, tags=["vehicles"])
    async def get_vehicle(vin: VinPath, actor: Viewer) -> VehicleOut:
        return vehicle_out(actor, portal.vehicle(actor, actor.account_id, vin))

    @app.delete("/api/vehicles/{vin}", response_model=list[SwitchOut], tags=["vehicles"])
    async def remove_vehicle(vin: VinPath, actor: Changer) -> list[SwitchOut]:
        return await switch(portal.remove_vehicle(actor, actor.account_id, vin))

    @app.post("/api/vehicles/{vin}/drivers", response_model=VehicleOut, tags=["vehicles"])
    async def add_driver(vin: VinPath, body: DriverIn, actor: Changer) -> VehicleOut:
        portal.assign_driver(actor, actor.account_id, vin, body.email)
        return vehicle_out(actor, portal.vehicle(actor, actor.account_id, vin))

    async def switch(switches: Sequence[tuple[str, str]]) -> list[SwitchOut]:
        out = []
        for vin, what in switches:
            signed = None
            if ctx.sender is not None:
                act = ctx.sender.activate if what == "activate" else ctx.sender.deactivate
                try:
                    signed = await act(vin)
                except CloudError:
                    signed = None
            out.append(
                SwitchOut(
                    vin=vin,
                    switch=what,
                    command_id=signed.downlink.command_id if signed else None,
                    sent=signed is not None,
                )
            )
        return out

    @app.post("/api/vehicles/{vin}/services", response_model=ServiceOut, tags=["services"])
    async def assign(vin: VinPath, body: ServiceIn, actor: Changer) -> ServiceOut:
        switches = await switch(portal.assign(actor, actor.account_id, vin, body.product))
        entry = portal.vehicle(actor, actor.account_id, vin)
        return ServiceOut(vehicle=vehicle_out(actor, entry), switches=switches)

    @app.delete(
        "/api/vehicles/{vin}/services/{product}", response_model=ServiceOut, tags=["services"]
    )
    async def unassign(
        vin: VinPath, product: Annotated[str, Path(max_length=32)], actor: Changer
    ) -> ServiceOut:
        switches = await switch(portal.unassign(actor, actor.account_id, vin, product))
        entry = portal.vehicle(actor, actor.account_id, vin)
        return ServiceOut(vehicle=vehicle_out(actor, entry), switches=switches)

    # --- commands ---------------------------------------------------------------------------

    def commands_of(actor: User, vin: str) -> list[CommandOut]:
        logged = portal.commands(actor.account_id, vin)
        ids = [str(c["command_id"]) for c in logged]
        statuses = ctx.reader.statuses(vin, ids)
        entry = portal.vehicle(actor, actor.account_id, vin)
        results: dict[str, dict[str, Any]] = {}
        if portal.data_available(actor.account_id):
            state = ctx.reader.state(vin, entry.since_record, entry.until_record)
            results = {str(r.get("command_id")): r for r in state.results}
        return [
            CommandOut(
                command_id=str(c["command_id"]),
                counter=int(c["counter"]),  # type: ignore[call-overload]
                name=str(c["name"]),
                argument=None if c["argument"] is None else str(c["argument"]),
                user=str(c["user"]),
                sent_at=float(c["sent_at"]),  # type: ignore[arg-type]
                outcomes=[Outcome(**s) for s in statuses.get(str(c["command_id"]), [])],
                result=results.get(str(c["command_id"])),
            )
            for c in logged
        ]

    @app.post(
        "/api/vehicles/{vin}/commands",
        response_model=CommandOut,
        status_code=202,
        tags=["commands"],
    )
    async def command(vin: VinPath, body: CommandIn, actor: Changer) -> CommandOut:
        portal.check_command(actor, actor.account_id, vin, body.name)
        try:
            check_command(body.name, body.argument)
        except CloudError as exc:
            raise Refusal("bad_argument", str(exc)) from None
        if ctx.sender is None:
            raise Refusal("backend_unavailable", "No backend is connected to send commands.")
        try:
            signed = await ctx.sender.send_command(vin, body.name, body.argument, timeout=5.0)
        except CloudError as exc:
            raise Refusal("command_failed", f"The command could not be sent: {exc}") from None
        downlink = signed.downlink
        portal.log_command(
            account_id=actor.account_id,
            vin=vin,
            user_email=actor.email,
            command_id=downlink.command_id,
            counter=downlink.counter,
            name=body.name,
            argument=body.argument,
        )
        return commands_of(actor, vin)[0]

    @app.get("/api/vehicles/{vin}/commands", response_model=list[CommandOut], tags=["commands"])
    async def list_commands(vin: VinPath, actor: Viewer) -> list[CommandOut]:
        portal.vehicle(actor, actor.account_id, vin)
        return commands_of(actor, vin)

    # --- account ----------------------------------------------------------------------------

    @app.get("/api/account", response_model=AccountOut, tags=["account"])
    async def account(actor: Viewer) -> AccountOut:
        return AccountOut(
            name=actor.account,
            locations=portal.locations(actor.account_id),
            data_available=portal.data_available(actor.account_id),
        )

    @app.delete("/api/account", response_model=list[SwitchOut], tags=["account"])
    async def delete_account(actor: Changer) -> list[SwitchOut]:
        return await switch(portal.delete_account(actor, actor.account_id))

    @app.post("/api/locations", response_model=AccountOut, status_code=201, tags=["account"])
    async def add_location(body: LocationIn, actor: Changer) -> AccountOut:
        portal.add_location(actor, actor.account_id, body.name)
        return await account(actor)

    @app.get("/api/products", response_model=list[ProductOut], tags=["services"])
    async def products(actor: Viewer) -> list[ProductOut]:
        have = portal.products(actor.account_id)
        return [
            ProductOut(product=p, bought=have.get(p, (0, 0))[0], assigned=have.get(p, (0, 0))[1])
            for p in PRODUCTS
        ]

    @app.post("/api/products", response_model=list[ProductOut], tags=["services"])
    async def buy(body: ProductIn, actor: Changer) -> list[ProductOut]:
        portal.buy(actor, actor.account_id, body.product, body.count)
        return await products(actor)

    @app.get("/api/users", response_model=list[UserOut], tags=["users"])
    async def users(actor: Viewer) -> list[UserOut]:
        return [_user_out(u) for u in portal.users(actor, actor.account_id)]

    @app.post("/api/users", response_model=InviteOut, status_code=201, tags=["users"])
    async def invite(body: UserIn, actor: Changer) -> InviteOut:
        invited, token = portal.invite(actor, actor.account_id, body.email, body.role)
        return InviteOut(user=_user_out(invited), invitation_token=token)

    @app.delete("/api/users/{user_id}", response_model=Done, tags=["users"])
    async def remove_user(user_id: Annotated[int, Path(ge=1, le=2**62)], actor: Changer) -> Done:
        portal.remove_user(actor, actor.account_id, user_id)
        return Done(ok=True)

    @app.post("/api/users/{user_id}/administrator", response_model=UserOut, tags=["users"])
    async def hand_over(user_id: Annotated[int, Path(ge=1, le=2**62)], actor: Changer) -> UserOut:
        return _user_out(portal.hand_over(actor, user_id))

    # --- live -------------------------------------------------------------------------------

    @app.get(
        "/api/events",
        response_class=StreamingResponse,
        tags=["live"],
        responses={200: {"content": {"text/event-stream": {}}}},
    )
    async def events(
        request: Request,
        actor: Viewer,
        vin: Annotated[str | None, Query(max_length=64)] = None,
    ) -> StreamingResponse:
        if vin is not None:
            portal.vehicle(actor, actor.account_id, vin)

        def snapshot() -> dict[str, Any]:
            fresh = portal.user(actor.id)
            if vin is None:
                return {"type": "vehicles", "vehicles": _dump(vehicles_of(fresh))}
            entry = portal.vehicle(fresh, fresh.account_id, vin)
            return {
                "type": "vehicle",
                "vehicle": vehicle_out(fresh, entry).model_dump(),
                "commands": _dump(commands_of(fresh, vin)),
            }

        return StreamingResponse(
            _stream(ctx, request, snapshot),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    # --- the dashboard ----------------------------------------------------------------------

    static = resources.files("cloud_stub.portal") / "static"
    index = (static / "index.html").read_text("utf-8")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(index, headers=_PAGE_HEADERS)

    app.mount("/static", StaticFiles(directory=str(static)), name="static")

    @app.middleware("http")
    async def headers(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        if request.url.path.startswith("/api/"):
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    return BodyGuard(app)


_PAGE_HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'self'; connect-src 'self'; img-src 'self' data:; style-src 'self';"
        " script-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


class _RateLimited(Refusal):
    def __init__(self, wait: float) -> None:
        super().__init__(
            "rate_limited", f"Too many failed logins; try again in {max(1, round(wait))} s."
        )
        self.wait = wait


async def _authenticate(portal: Portal, email: str, password: str) -> User | None:
    """The scrypt work runs in a worker thread, so the event loop keeps serving."""
    found = portal.credentials(email)
    if found is None:
        await asyncio.to_thread(verify_nobody, password)
        return None
    if not await asyncio.to_thread(verify, password, found[1]):
        return None
    return portal.user(found[0])


def _check_origin(request: Request) -> None:
    origin = request.headers.get("origin")
    if origin is None:
        return
    host = request.headers.get("host", "")
    if origin not in (f"http://{host}", f"https://{host}"):
        raise Refusal("bad_origin", "The request comes from another site.")


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def _user_out(user: User) -> UserOut:
    return UserOut(
        id=user.id, email=user.email, role=user.role, account=user.account, has_login=user.has_login
    )


def _dump(models: list[Any]) -> list[dict[str, Any]]:
    return [m.model_dump() for m in models]


async def _stream(
    ctx: PortalContext, request: Request, snapshot: Callable[[], dict[str, Any]]
) -> AsyncIterator[str]:
    """Server-sent events: a snapshot now, and another whenever something changed."""
    last: tuple[int, int, int] | None = None
    quiet_since = time.monotonic()
    while not ctx.stopping.is_set():
        marks = (ctx.reader.mark(), ctx.reader.statuses_mark(), ctx.portal.version())
        if marks != last:
            last = marks
            try:
                data = snapshot()
            except Refusal as exc:  # the vehicle was removed, the user deleted, ...
                yield _sse({"type": "gone", "code": exc.code, "message": exc.sentence})
                return
            yield _sse(data)
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since > EVENT_KEEPALIVE_S:
            yield ": keep-alive\n\n"
            quiet_since = time.monotonic()
        if await request.is_disconnected():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ctx.stopping.wait(), EVENT_POLL_S)


def _sse(data: dict[str, Any]) -> str:
    return f"data: {json.dumps(data, separators=(',', ':'), allow_nan=False)}\n\n"
