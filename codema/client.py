"""The Codema v1 client: the only code that speaks HTTP to the platform (design.md §2).

Each method is one platform operation with typed models in and out (`codema.schemas`); the
careful sending (limits, circuit, retries, error mapping) is `codema.transport`. Lists are read
completely or not at all. `deploy(..., intent=X)` makes at most one deployment per intent.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import ValidationError

from codema import endpoints as ep
from codema.errors import AlreadyTerminated, NotFound, PlatformError, PlatformUnavailable
from codema.limits import DOCUMENTED_RATES, InMemoryPlatformLimits, PlatformLimits, Rate
from codema.schemas import (
    Application,
    ApplicationCreate,
    AppVersion,
    AppVersionCreate,
    BulkStopRequest,
    DeploymentListItem,
    DeploymentStatus,
    DeployRequest,
    DeployResponse,
    IpLookup,
    IpsLookupRequest,
    Location,
    Pagination,
    Received,
    SessionCreate,
    SessionCreated,
    SessionInfo,
    SessionSummary,
    SessionUser,
    SessionUsersChange,
    StopFilter,
    StopOutcome,
    TelemetryRequest,
    TelemetryResult,
    TelemetryTicket,
    intent_tag,
)
from codema.transport import Effect, Endpoint, PlatformTransport, RetryPolicy
from fleet.logging import event
from fleet.models import parse_count

log = logging.getLogger(__name__)

M = TypeVar("M", bound=Received)

USER_AGENT = "codema-fleet/0.1"
PAGE_LIMIT = 100
MAX_PAGES = 1000  # a platform that always says has_next must not keep us reading forever
MAX_LIST_READS = 3  # re-reads when the list changed under us (count mismatch)
IPS_PER_LOOKUP = 20  # documented maximum of POST /v1/ips/lookup


def _q(segment: str) -> str:
    """A path segment: ids and user-chosen names are quoted so none can change the route."""
    return quote(segment, safe="")


def _api_root(base_url: str) -> str:
    """CODEMA_API_URL is the base without /v1; tolerate a configured /v1 suffix."""
    root = base_url.rstrip("/")
    return root[: -len("/v1")] if root.endswith("/v1") else root


class CodemaClient:
    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        limits: PlatformLimits | None = None,
        timeout_s: float = 5.0,
        max_attempts: int = 4,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.time,
        max_wait_s: float = 10.0,
        base_delay_s: float = 0.2,
        max_delay_s: float = 5.0,
        circuit_failures: int = 5,
        circuit_reset_s: float = 10.0,
        rates: Mapping[str, Rate] = DOCUMENTED_RATES,
        page_limit: int = PAGE_LIMIT,
    ) -> None:
        self._root = _api_root(base_url)
        self._page_limit = page_limit
        self._http = httpx.AsyncClient(
            base_url=self._root,
            headers={"Authorization": f"token {token}", "User-Agent": USER_AGENT},
            timeout=httpx.Timeout(timeout_s),
            transport=transport,
        )
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._policy = RetryPolicy(
            max_attempts=max_attempts, base_delay_s=base_delay_s, max_delay_s=max_delay_s
        )
        self._transport = PlatformTransport(
            self._http,
            limits=limits if limits is not None else InMemoryPlatformLimits(clock=clock),
            policy=self._policy,
            rates=rates,
            secrets=(token,),
            sleep=sleep,
            rng=self._rng,
            clock=clock,
            max_wait_s=max_wait_s,
            circuit_failures=circuit_failures,
            circuit_reset_s=circuit_reset_s,
        )

    def __repr__(self) -> str:
        url = httpx.URL(self._root)
        return f"CodemaClient(api={url.scheme}://{url.host}{':' + str(url.port) if url.port else ''})"

    @property
    def transport(self) -> PlatformTransport:
        return self._transport

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> CodemaClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    # --- plumbing ------------------------------------------------------------------------------------
    async def _json(
        self, endpoint: Endpoint, path: str, *, params: Mapping[str, str] | None = None, body: Any = None
    ) -> Any:
        response = await self._transport.send(endpoint, path, params=params, body=body)
        try:
            return response.json()
        except ValueError:
            raise self._invalid(endpoint, "answer is not JSON") from None

    def _invalid(self, endpoint: Endpoint, what: str) -> PlatformUnavailable:
        # A 2xx we cannot read: the platform did act on a write, so that is ambiguous.
        return PlatformUnavailable(
            f"{endpoint.name}: {what}", endpoint=endpoint.name, ambiguous=endpoint.effect is not Effect.READ
        )

    def _parse(self, model: type[M], endpoint: Endpoint, data: Any) -> M:
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            places = ", ".join(".".join(str(p) for p in e["loc"]) or "body" for e in exc.errors()[:3])
            raise self._invalid(endpoint, f"unexpected answer ({places})") from None

    def _field(self, endpoint: Endpoint, data: Any, key: str) -> list[Any]:
        value = data.get(key) if isinstance(data, dict) else None
        if not isinstance(value, list):
            raise self._invalid(endpoint, f"answer has no '{key}' list")
        return value

    async def _read_all(
        self, endpoint: Endpoint, path: str, key: str, model: type[M], id_of: Callable[[M], str]
    ) -> list[M]:
        """Every page, or an error: a list missing its later pages would look like deployments
        or sessions that ended. Re-read when the count shows the list moved while we paged."""
        for _ in range(MAX_LIST_READS):
            items, total = await self._read_pages(endpoint, path, key, model, id_of)
            if total is None or len(items) >= total:
                return list(items.values())
            event(log, "platform_list_moved", endpoint=endpoint.name, read=len(items), total=total)
        raise PlatformUnavailable(f"{endpoint.name}: list kept changing while read", endpoint=endpoint.name)

    async def _read_pages(
        self, endpoint: Endpoint, path: str, key: str, model: type[M], id_of: Callable[[M], str]
    ) -> tuple[dict[str, M], int | None]:
        items: dict[str, M] = {}
        total: int | None = None
        for page in range(1, MAX_PAGES + 1):
            data = await self._json(
                endpoint, path, params={"page": str(page), "limit": str(self._page_limit)}
            )
            for raw in self._field(endpoint, data, key):
                item = self._parse(model, endpoint, raw)
                items.setdefault(id_of(item), item)  # an item pushed onto the next page appears twice
            total = parse_count(data.get("total_count"))
            pagination = self._parse(Pagination, endpoint, data.get("pagination") or {})
            if not pagination.has_next:
                return items, total
        raise PlatformUnavailable(f"{endpoint.name}: more than {MAX_PAGES} pages", endpoint=endpoint.name)

    # --- apps and versions -----------------------------------------------------------------------------
    async def create_app(self, name: str, *, is_active: bool = True, image: str = "") -> Application:
        body = ApplicationCreate(name=name, is_active=is_active, image=image).to_wire()
        return self._parse(Application, ep.CREATE_APP, await self._json(ep.CREATE_APP, "/v1/app", body=body))

    async def get_app(self, name: str) -> Application:
        return self._parse(Application, ep.GET_APP, await self._json(ep.GET_APP, f"/v1/app/{_q(name)}"))

    async def list_apps(self) -> list[Application]:
        return await self._read_all(ep.LIST_APPS, "/v1/apps", "applications", Application, lambda a: a.name)

    async def create_app_version(self, app: str, payload: AppVersionCreate | dict[str, Any]) -> AppVersion:
        request = (
            payload if isinstance(payload, AppVersionCreate) else AppVersionCreate.model_validate(payload)
        )
        data = await self._json(ep.CREATE_APP_VERSION, f"/v1/app/{_q(app)}/version", body=request.to_wire())
        version = data.get("version", data) if isinstance(data, dict) else data
        return self._parse(AppVersion, ep.CREATE_APP_VERSION, version)

    async def get_app_version(self, app: str, version: str) -> AppVersion:
        data = await self._json(ep.GET_APP_VERSION, f"/v1/app/{_q(app)}/version/{_q(version)}")
        return self._parse(AppVersion, ep.GET_APP_VERSION, data)

    async def list_app_versions(self, app: str) -> list[AppVersion]:
        path = f"/v1/app/{_q(app)}/versions"
        return await self._read_all(ep.LIST_APP_VERSIONS, path, "versions", AppVersion, lambda v: v.name)

    # --- deployments -----------------------------------------------------------------------------------
    async def deploy(self, request: DeployRequest, *, intent: str | None = None) -> DeployResponse:
        """Create a deployment. With `intent`, the request carries the tag `intent:<intent>`, and
        after an ambiguous failure the platform's list is searched for that tag before any resend,
        so one intent makes at most one deployment. Without it an ambiguous failure is raised."""
        if intent is not None:
            request = request.with_tag(intent_tag(intent))
        body = request.to_wire()
        for attempt in range(1, self._policy.max_attempts + 1):
            try:
                return self._parse(
                    DeployResponse, ep.DEPLOY, await self._json(ep.DEPLOY, "/v1/deploy", body=body)
                )
            except PlatformUnavailable as err:
                if not err.ambiguous or intent is None:
                    raise
                found = await self._find_after_ambiguous(intent, err)
                if found is not None:
                    return self._recovered(found, request)
                if attempt == self._policy.max_attempts:
                    raise
                delay = self._policy.delay(attempt, self._rng)
                event(log, "platform_deploy_resend", intent=intent, attempt=attempt, delay_s=round(delay, 3))
                await self._sleep(delay)
        raise AssertionError("unreachable: the last attempt returns or raises")  # pragma: no cover

    async def _find_after_ambiguous(self, intent: str, err: PlatformUnavailable) -> DeploymentListItem | None:
        event(log, "platform_deploy_ambiguous", logging.WARNING, intent=intent, status=err.status)
        try:
            return await self.find_by_intent(intent)
        except PlatformError as lookup_err:
            raise PlatformUnavailable(
                f"deploy: outcome unknown, the intent lookup failed ({lookup_err})",
                endpoint=ep.DEPLOY.name,
                ambiguous=True,
            ) from lookup_err

    @staticmethod
    def _recovered(item: DeploymentListItem, request: DeployRequest) -> DeployResponse:
        return DeployResponse(
            request_id=item.request_id,
            request_dns=item.fqdn,
            request_app=request.app_name,
            request_version=request.version_name or "",
            tags=list(item.tags or []),
            recovered=True,
        )

    async def find_by_intent(self, intent: str) -> DeploymentListItem | None:
        """The live deployment tagged with this intent, from the complete list (None if none)."""
        tag = intent_tag(intent)
        matches = [d for d in await self.list_deployments() if tag in (d.tags or ())]
        if len(matches) > 1:
            event(log, "platform_intent_duplicates", logging.WARNING, intent=intent, count=len(matches))
        return matches[0] if matches else None

    async def status(self, request_id: str) -> DeploymentStatus:
        data = await self._json(ep.STATUS, f"/v1/status/{_q(request_id)}")
        return self._parse(DeploymentStatus, ep.STATUS, data)

    async def stop(self, request_id: str) -> StopOutcome:
        """STOPPING (200), ACCEPTED (202: not READY yet, stopped once it is), GONE (410)."""
        try:
            response = await self._transport.send(ep.STOP, f"/v1/stop/{_q(request_id)}")
        except AlreadyTerminated:
            return StopOutcome.GONE
        return StopOutcome.ACCEPTED if response.status_code == 202 else StopOutcome.STOPPING

    async def list_deployments(self) -> list[DeploymentListItem]:
        return await self._read_all(
            ep.LIST_DEPLOYMENTS, "/v1/deployments", "data", DeploymentListItem, lambda d: d.request_id
        )

    async def bulk_stop(self, request_ids: Sequence[str]) -> list[str]:
        """Stop these deployments; returns the request ids the platform will stop."""
        if not request_ids:
            return []  # an empty filter must never reach the platform
        body = BulkStopRequest(
            filters=[StopFilter(field="request_id", values=list(request_ids), filter_type="any")]
        ).to_wire()
        data = await self._json(ep.BULK_STOP, "/v1/deployments/bulk-stop", body=body)
        processable = self._field(ep.BULK_STOP, data, "processable")
        return [p["request_id"] for p in processable if isinstance(p, dict) and p.get("request_id")]

    # --- sessions --------------------------------------------------------------------------------------
    async def create_session(self, request: SessionCreate) -> SessionCreated:
        data = await self._json(ep.CREATE_SESSION, "/v1/session", body=request.to_wire())
        return self._parse(SessionCreated, ep.CREATE_SESSION, data)

    async def get_session(self, session_id: str) -> SessionInfo:
        data = await self._json(ep.GET_SESSION, f"/v1/session/{_q(session_id)}")
        return self._parse(SessionInfo, ep.GET_SESSION, data)

    async def delete_session(self, session_id: str) -> None:
        """Deleted, or already gone: 410, and 404 since a deleted session keeps no history."""
        try:
            await self._transport.send(ep.DELETE_SESSION, f"/v1/session/{_q(session_id)}")
        except (AlreadyTerminated, NotFound):
            return

    async def get_session_users(self, session_id: str) -> list[SessionUser]:
        data = await self._json(ep.SESSION_USERS, f"/v1/session/{_q(session_id)}/users")
        return self._users(ep.SESSION_USERS, data)

    async def add_session_users(self, session_id: str, ips: Sequence[str]) -> list[SessionUser]:
        body = SessionUsersChange(ip_list=list(ips)).to_wire()
        data = await self._json(ep.ADD_SESSION_USERS, f"/v1/session/{_q(session_id)}/users", body=body)
        return self._users(ep.ADD_SESSION_USERS, data)

    async def remove_session_users(self, session_id: str, ips: Sequence[str]) -> list[SessionUser]:
        body = SessionUsersChange(ip_list=list(ips)).to_wire()
        data = await self._json(ep.REMOVE_SESSION_USERS, f"/v1/session/{_q(session_id)}/users", body=body)
        return self._users(ep.REMOVE_SESSION_USERS, data)

    def _users(self, endpoint: Endpoint, data: Any) -> list[SessionUser]:
        return [self._parse(SessionUser, endpoint, u) for u in self._field(endpoint, data, "session_users")]

    async def list_sessions(self) -> list[SessionSummary]:
        return await self._read_all(
            ep.LIST_SESSIONS, "/v1/sessions", "data", SessionSummary, lambda s: s.session_id
        )

    # --- telemetry, locations, ip lookup -----------------------------------------------------------
    async def request_telemetry(
        self, deployments: Sequence[str], ips: Sequence[str], webhook_url: str | None = None
    ) -> TelemetryTicket:
        body = TelemetryRequest(
            deployments=list(deployments), ips=list(ips), webhook_url=webhook_url
        ).to_wire()
        data = await self._json(ep.TELEMETRY_REQUEST, "/v1/telemetry/active-deployments", body=body)
        return self._parse(TelemetryTicket, ep.TELEMETRY_REQUEST, data)

    async def telemetry_result(self, retrieval_key: str) -> TelemetryResult:
        data = await self._json(ep.TELEMETRY_RESULT, f"/v1/telemetry/active-deployments/{_q(retrieval_key)}")
        return self._parse(TelemetryResult, ep.TELEMETRY_RESULT, data)

    async def locations(
        self, *, app: str | None = None, version: str | None = None, tags: bool = True
    ) -> list[Location]:
        params = {k: v for k, v in (("app", app), ("version", version)) if v}
        if tags:
            params["tags"] = "true"
        data = await self._json(ep.LOCATIONS, "/v1/locations", params=params)
        return [
            self._parse(Location, ep.LOCATIONS, loc) for loc in self._field(ep.LOCATIONS, data, "locations")
        ]

    async def lookup_ip(self, ip: str) -> IpLookup:
        return self._parse(IpLookup, ep.IP_LOOKUP, await self._json(ep.IP_LOOKUP, f"/v1/ip/{_q(ip)}/lookup"))

    async def lookup_ips(self, ips: Sequence[str]) -> list[IpLookup]:
        """Bulk lookup in calls of at most 20 addresses (the documented maximum)."""
        unique = list(dict.fromkeys(ips))
        found: list[IpLookup] = []
        for start in range(0, len(unique), IPS_PER_LOOKUP):
            body = IpsLookupRequest(addresses=unique[start : start + IPS_PER_LOOKUP]).to_wire()
            data = await self._json(ep.IPS_LOOKUP, "/v1/ips/lookup", body=body)
            found.extend(
                self._parse(IpLookup, ep.IPS_LOOKUP, a) for a in self._field(ep.IPS_LOOKUP, data, "addresses")
            )
        return found
