"""What a route handler reaches, as FastAPI dependencies.

The app factory builds one :class:`ApiState` per process and keeps it on ``app.state``;
handlers never read it directly but declare what they need with the ``Annotated`` aliases
below (``decisions: DecisionsDep``), so a test can swap any of them with
``app.dependency_overrides``. The key scopes are dependencies too: a route that needs the
``read`` scope declares ``dependencies=[ReadScope]`` (or takes ``principal: ReadKey`` when
it needs to know who called).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Query, Request
from sqlalchemy.orm import Session, sessionmaker

from creditops.api.metrics import ServiceMetrics
from creditops.api.offload import SlowLane
from creditops.api.problems import ApiProblemError
from creditops.api.security import Authenticator
from creditops.domain.access import Principal
from creditops.services.context import AppContext
from creditops.services.decisions import DecisionService
from creditops.services.serving import RouteFollower
from creditops.settings import Settings


@dataclass
class ApiState:
    """Everything the routes use, built once per process by the app factory."""

    settings: Settings
    ctx: AppContext
    sessions: sessionmaker[Session]
    auth: Authenticator
    decisions: DecisionService
    metrics: ServiceMetrics
    check_database: Callable[[], None]  # raises a CreditopsError when unreachable
    slow: SlowLane  # checks and test alerts: bounded, apart from the request thread pool
    follower: RouteFollower | None = None  # follows deployments and the production alias


# Paging offsets beyond this are refused (422) instead of reaching SQL, where 2**63 fails.
Offset = Annotated[int, Query(ge=0, le=1_000_000_000, description="Rows to skip.")]


def get_state(request: Request) -> ApiState:
    state: ApiState = request.app.state.api
    return state


def get_settings(request: Request) -> Settings:
    return get_state(request).settings


def get_context(request: Request) -> AppContext:
    return get_state(request).ctx


def get_sessions(request: Request) -> sessionmaker[Session]:
    return get_state(request).sessions


def get_decisions(request: Request) -> DecisionService:
    return get_state(request).decisions


def get_metrics(request: Request) -> ServiceMetrics:
    return get_state(request).metrics


def get_slow_lane(request: Request) -> SlowLane:
    return get_state(request).slow


StateDep = Annotated[ApiState, Depends(get_state)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
ContextDep = Annotated[AppContext, Depends(get_context)]
SessionsDep = Annotated[sessionmaker[Session], Depends(get_sessions)]
DecisionsDep = Annotated[DecisionService, Depends(get_decisions)]
MetricsDep = Annotated[ServiceMetrics, Depends(get_metrics)]
SlowLaneDep = Annotated[SlowLane, Depends(get_slow_lane)]


def scope(name: str) -> Callable[[Request], Awaitable[Principal]]:
    """A dependency that admits API keys with scope ``name`` (401 / 403 otherwise) and
    returns their :class:`Principal`."""

    async def principal_with_scope(request: Request) -> Principal:
        principal = await get_state(request).auth.principal(request)
        if not principal.allows(name):
            raise ApiProblemError(
                403, "forbidden", f"The API key lacks the '{name}' scope for this operation."
            )
        request.state.principal = principal
        return principal

    principal_with_scope.__name__ = f"{name}_scope"
    return principal_with_scope


# One function per scope, created once, so ``dependency_overrides`` can target them.
predict_scope = scope("predict")
explain_scope = scope("explain")
read_scope = scope("read")
feedback_scope = scope("feedback")
monitor_scope = scope("monitor")
admin_scope = scope("admin")

PredictKey = Annotated[Principal, Depends(predict_scope)]
ExplainKey = Annotated[Principal, Depends(explain_scope)]
ReadKey = Annotated[Principal, Depends(read_scope)]
FeedbackKey = Annotated[Principal, Depends(feedback_scope)]
MonitorKey = Annotated[Principal, Depends(monitor_scope)]
AdminKey = Annotated[Principal, Depends(admin_scope)]

ReadScope = Depends(read_scope)
MonitorScope = Depends(monitor_scope)
AdminScope = Depends(admin_scope)


async def metrics_access(request: Request) -> None:
    """``/metrics`` is open unless ``serve.metrics_public`` is off; then it needs ``monitor``."""
    if not get_state(request).settings.serve.metrics_public:
        await monitor_scope(request)
