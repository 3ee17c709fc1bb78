"""Which model version answers a request, and how each API process follows deployments.

:class:`ModelRouter` is the one component that decides routing. Per model it holds a
:class:`ModelRoute`: the stable version and, while a deployment runs, the candidate with
its traffic share, or a shadow. Which of the two answers is a pure function of (deployment
id, application id) (:func:`creditops.domain.deployments.in_candidate_arm`), so every API
process agrees without coordination and a returning applicant keeps its version. Routes are
replaced by assigning a new immutable object, which is atomic for readers.

:class:`RouteFollower` is each API process's half of a deployment (the worker drives the
other, ``services/deployments.py``): every ``serve.reload_interval_s`` it reads the
deployments in progress and the ``production`` alias, loads and health-checks the versions
they name (keeping the previous ones warm for an instant rollback), swaps the routes, and
reports to the store what it loaded, whether the candidate is healthy, and the candidate's
attempts and errors. Only a validated version is served (:func:`servable`): an alias moved
by hand to a version that failed its gate is refused, logged and alerted.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from creditops.domain.deployments import (
    ARM_CANDIDATE,
    ARM_PRODUCTION,
    ARM_STABLE,
    in_candidate_arm,
)
from creditops.errors import CreditopsError, ModelNotFoundError
from creditops.modeling.bundle import ScoringModel
from creditops.registry.records import VersionInfo
from creditops.services.context import AppContext
from creditops.services.model_versions import load_model, servable
from creditops.store.deployment_repositories import DeploymentRepository, ServingProcessRepository
from creditops.store.tables import DeploymentRow

log = logging.getLogger("creditops.serving")


@dataclass(frozen=True)
class ServingSlot:
    """A loaded version in one role: ``route`` is the arm its decisions are logged with
    (production, stable or candidate) and ``deployment_id`` the deployment that routed
    them. ``fault`` is the test-only injected failure (``deploy.inject_faults``): "all"
    fails every scoring, "requests" all but the health check's."""

    name: str
    version: str
    model: ScoringModel
    info: VersionInfo
    route: str = ARM_PRODUCTION
    loaded_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    deployment_id: str | None = None
    fault: str = ""


@dataclass(frozen=True)
class ModelRoute:
    """Who answers for one model: ``stable``, and during a deployment ``candidate`` for a
    ``share`` of the applicants, or as a ``shadow`` that scores every request and answers
    none."""

    stable: ServingSlot
    candidate: ServingSlot | None = None
    share: float = 0.0
    shadow: bool = False

    @property
    def deployment_id(self) -> str | None:
        return self.candidate.deployment_id if self.candidate else None

    def pick(self, application_id: str | None) -> ServingSlot:
        candidate = self.candidate
        if candidate is None or self.shadow or application_id is None:
            return self.stable
        if in_candidate_arm(candidate.deployment_id or "", application_id, self.share):
            return candidate
        return self.stable


class ModelRouter:
    def __init__(self, slots: dict[str, ServingSlot] | None = None) -> None:
        self._routes: dict[str, ModelRoute] = {
            name: ModelRoute(slot) for name, slot in (slots or {}).items()
        }
        # candidate scoring per deployment: [attempts, errors], reported by the follower
        self.candidate_counts: dict[str, list[int]] = {}

    def names(self) -> list[str]:
        return sorted(self._routes)

    def slots(self) -> list[ServingSlot]:
        """The stable slot of each served model."""
        return [self._routes[n].stable for n in self.names()]

    def model_route(self, name: str) -> ModelRoute:
        try:
            return self._routes[name]
        except KeyError:
            raise ModelNotFoundError(name) from None

    def route(self, name: str, application_id: str | None = None) -> ServingSlot:
        return self.model_route(name).pick(application_id)

    def stable(self, name: str) -> ServingSlot:
        return self.model_route(name).stable

    def swap(self, slot: ServingSlot) -> None:
        """Serve ``slot`` alone for its model (no deployment)."""
        self.set_route(slot.name, ModelRoute(slot))

    def set_route(self, name: str, route: ModelRoute) -> None:
        routes = dict(self._routes)
        routes[name] = route
        self._routes = routes

    def count_candidate(self, deployment_id: str, *, failed: bool) -> None:
        counts = self.candidate_counts.setdefault(deployment_id, [0, 0])
        counts[0] += 1
        counts[1] += int(failed)


def prepare(ctx: AppContext, name: str, version: str) -> ServingSlot:
    """Load ``name`` at ``version`` (hash-verified) ready for serving."""
    loaded = load_model(ctx, name, version)
    loaded.model.prepare_for_serving()
    faults = set(ctx.settings.deploy.inject_faults)
    key = f"{name}:{loaded.info.version}"
    fault = "all" if key in faults else "requests" if f"{key}:requests" in faults else ""
    return ServingSlot(name, loaded.info.version, loaded.model, loaded.info, fault=fault)


def load_router(ctx: AppContext, names: Sequence[str]) -> ModelRouter:
    """Load the production version of each named model (every aliased model if empty). A
    production version that is not validated is refused (logged); the model is not served
    then, and a service left with no model fails to start."""
    if not names:
        names = [n for n in ctx.registry.model_names() if ctx.registry.find_alias(n, "production")]
    slots = {}
    for name in names:
        info = ctx.registry.get_version(name, "production")
        ok, why = servable(info)
        if not ok:
            log.error("refusing to serve %s v%s: %s", name, info.version, why)
            continue
        slots[name] = prepare(ctx, name, info.version)
    if names and not slots:
        raise CreditopsError(
            "no model can be served: every production version lacks a passed validation gate "
            "or a recorded override (see `creditops models list`)"
        )
    return ModelRouter(slots)


@dataclass
class _Wanted:
    """What the store says one model's route should be."""

    stable: str
    candidate: str | None = None
    deployment_id: str | None = None
    share: float = 0.0
    shadow: bool = False


class RouteFollower:
    """Keeps one process's :class:`ModelRouter` in line with the deployments and aliases
    (see the module docstring). :meth:`refresh` is called from a thread every reload
    interval; it returns what changed, as messages."""

    def __init__(
        self,
        ctx: AppContext,
        router: ModelRouter,
        sessions: sessionmaker[Session],
        *,
        health_check: Callable[[ServingSlot], None],
        on_refused: Callable[[str, str, str], None] | None = None,
    ) -> None:
        self.ctx = ctx
        self.router = router
        self.sessions = sessions
        self.process_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.started_at = datetime.now(UTC)
        self._warm: dict[tuple[str, str], tuple[ServingSlot, datetime]] = {}
        for slot in router.slots():
            self._warm[(slot.name, slot.version)] = (slot, self.started_at)
        self._health: dict[str, str | None] = {}  # deployment id -> health error or None
        self._refused: set[tuple[str, str]] = set()
        self.health_check = health_check  # raises when a loaded candidate cannot score
        self.on_refused = on_refused  # (model, version, why): an alert, by the app

    def refresh(self) -> list[str]:
        now = datetime.now(UTC)
        with self.sessions() as session:
            active = {d.model_name: d for d in DeploymentRepository(session).active()}
        changes = []
        for name in self.router.names():
            try:
                wanted = self._wanted(name, active.get(name))
                if wanted is not None:
                    changes.extend(self._apply(name, wanted))
            except CreditopsError as exc:
                log.warning("refreshing %s failed: %s", name, exc.message)
        self._evict(now)
        self._report(now)
        return changes

    # -- what should serve ---------------------------------------------------------------
    def _wanted(self, name: str, deployment: DeploymentRow | None) -> _Wanted | None:
        current = self.router.stable(name)
        if deployment is not None:
            stable = deployment.stable_version or current.version
            return _Wanted(
                stable=stable,
                candidate=deployment.candidate_version,
                deployment_id=deployment.deployment_id,
                share=deployment.traffic_share if deployment.state != "pending" else 0.0,
                shadow=deployment.strategy == "shadow",
            )
        info = self.ctx.registry.find_alias(name, "production")
        if info is None or info.version == current.version:
            return _Wanted(stable=current.version)
        ok, why = servable(info)
        if not ok:
            if (name, info.version) not in self._refused:
                self._refused.add((name, info.version))
                log.error(
                    "refusing to serve %s v%s, which the production alias names: %s; "
                    "still serving v%s",
                    name,
                    info.version,
                    why,
                    current.version,
                )
                if self.on_refused is not None:
                    self.on_refused(name, info.version, why)
            return _Wanted(stable=current.version)
        return _Wanted(stable=info.version)

    def _apply(self, name: str, wanted: _Wanted) -> list[str]:
        before = self.router.model_route(name)
        stable = self._slot(name, wanted.stable, before.stable)
        changes = []
        if wanted.candidate is None or wanted.deployment_id is None:
            route = ModelRoute(replace(stable, route=ARM_PRODUCTION, deployment_id=None))
        else:
            candidate = self._candidate(name, wanted, stable)
            stable = replace(stable, route=ARM_STABLE, deployment_id=wanted.deployment_id)
            if candidate is None:  # not loaded or unhealthy: stable answers everything
                route = ModelRoute(stable)
            else:
                route = ModelRoute(stable, candidate, wanted.share, wanted.shadow)
        if _describe(route) != _describe(before):
            changes.append(f"{name}: {_describe(route)} (was {_describe(before)})")
            self.router.set_route(name, route)
        return changes

    def _candidate(self, name: str, wanted: _Wanted, stable: ServingSlot) -> ServingSlot | None:
        deployment_id = wanted.deployment_id or ""
        assert wanted.candidate is not None
        if self._health.get(deployment_id):
            return None
        try:
            slot = self._slot(name, wanted.candidate, stable)
            if slot.model.spec.features != stable.model.spec.features:
                raise CreditopsError(
                    f"v{slot.version} has different features from v{stable.version}; "
                    "a restart is needed to serve it"
                )
            self.health_check(slot)
        except Exception as exc:  # any failure of the candidate is a failed health check
            message = exc.message if isinstance(exc, CreditopsError) else repr(exc)
            log.error(
                "candidate %s v%s failed its health check: %s", name, wanted.candidate, message
            )
            self._health[deployment_id] = message or "failed"
            return None
        self._health[deployment_id] = None
        return replace(slot, route=ARM_CANDIDATE, deployment_id=wanted.deployment_id)

    def _slot(self, name: str, version: str, current: ServingSlot) -> ServingSlot:
        now = datetime.now(UTC)
        warm = self._warm.get((name, version))
        if warm is not None:
            self._warm[(name, version)] = (warm[0], now)
            return warm[0]
        slot = current if current.version == version else prepare(self.ctx, name, version)
        self._warm[(name, version)] = (slot, now)
        return slot

    def _evict(self, now: datetime) -> None:
        """Unload versions that no route uses and that were last used longer ago than
        ``deploy.keep_warm_s``."""
        keep = timedelta(seconds=self.ctx.settings.deploy.keep_warm_s)
        in_use = set()
        for name in self.router.names():
            route = self.router.model_route(name)
            in_use.add((name, route.stable.version))
            if route.candidate is not None:
                in_use.add((name, route.candidate.version))
        for key, (_, used_at) in list(self._warm.items()):
            if key in in_use:
                self._warm[key] = (self._warm[key][0], now)
            elif now - used_at > keep:
                del self._warm[key]

    # -- what this process tells the worker ----------------------------------------------
    def report(self) -> dict[str, Any]:
        """Per deployment this process follows: whether the candidate is loaded and
        healthy (``ready``), its health error if any, and the candidate's scoring attempts
        and errors since this process started."""
        deployments: dict[str, Any] = {}
        for name in self.router.names():
            route = self.router.model_route(name)
            if route.deployment_id is None:
                continue
            attempts, errors = self.router.candidate_counts.get(route.deployment_id, [0, 0])
            deployments[route.deployment_id] = {
                "model": name,
                "ready": True,
                "attempts": attempts,
                "errors": errors,
            }
        for deployment_id, error in self._health.items():
            if error:
                entry = deployments.setdefault(deployment_id, {"attempts": 0, "errors": 0})
                entry.update(ready=False, health_error=error)
        return {
            "serving": {s.name: s.version for s in self.router.slots()},
            "warm": sorted(f"{n}:{v}" for n, v in self._warm),
            "deployments": deployments,
        }

    def _report(self, now: datetime) -> None:
        try:
            with self.sessions.begin() as session:
                ServingProcessRepository(session).report(
                    self.process_id, self.started_at, now, self.report()
                )
        except Exception as exc:  # the next interval reports again
            log.warning("could not report this process's serving state: %s", exc)

    def forget(self) -> None:
        """Remove this process's report (a clean shutdown)."""
        try:
            with self.sessions.begin() as session:
                ServingProcessRepository(session).forget(self.process_id)
        except Exception as exc:
            log.warning("could not remove this process's report: %s", exc)


def _describe(route: ModelRoute) -> str:
    if route.candidate is None:
        return f"serving v{route.stable.version}"
    if route.shadow:
        return f"v{route.stable.version} with v{route.candidate.version} in shadow"
    return (
        f"v{route.stable.version} and v{route.candidate.version} at "
        f"{route.share:.0%} (deployment {route.deployment_id})"
    )
