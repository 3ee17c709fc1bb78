"""Which model version answers a request.

:class:`ModelRouter` is the one component that decides routing. Today every request for a
model goes to the version behind its ``production`` alias; canary, shadow and A/B routing
will plug in here as a pure function of (deployment state, application id hash), so every
replica agrees without coordination. Slots are replaced by assigning a new immutable
object, which is atomic for readers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from creditops.errors import ModelNotFoundError
from creditops.modeling.bundle import ScoringModel
from creditops.registry.records import VersionInfo
from creditops.services.context import AppContext
from creditops.services.model_versions import load_model


@dataclass(frozen=True)
class ServingSlot:
    name: str
    version: str
    model: ScoringModel
    info: VersionInfo
    route: str = "production"
    loaded_at: datetime = field(default_factory=lambda: datetime.now(UTC))


class ModelRouter:
    def __init__(self, slots: dict[str, ServingSlot] | None = None) -> None:
        self._slots: dict[str, ServingSlot] = dict(slots or {})

    def names(self) -> list[str]:
        return sorted(self._slots)

    def slots(self) -> list[ServingSlot]:
        return [self._slots[n] for n in self.names()]

    def route(self, name: str, application_id: str | None = None) -> ServingSlot:
        del application_id  # used by canary / A/B routing
        try:
            return self._slots[name]
        except KeyError:
            raise ModelNotFoundError(name) from None

    def swap(self, slot: ServingSlot) -> None:
        slots = dict(self._slots)
        slots[slot.name] = slot
        self._slots = slots


def refresh_router(ctx: AppContext, router: ModelRouter) -> list[str]:
    """Swap in the version now behind each served model's production alias.

    Returns what changed, as messages. A new version whose spec has different features is
    not swapped in: its request schema would differ from the routes this process registered
    at start-up, so it needs a restart (which the message says).
    """
    changes = []
    for slot in router.slots():
        current = ctx.registry.find_alias(slot.name, "production")
        if current is None or current.version == slot.version:
            continue
        loaded = load_model(ctx, slot.name, current.version)
        loaded.model.prepare_for_serving()
        if loaded.model.spec.features != slot.model.spec.features:
            changes.append(
                f"{slot.name}: production is now v{current.version} with different features; "
                "restart the service to serve it"
            )
            continue
        router.swap(ServingSlot(slot.name, loaded.info.version, loaded.model, loaded.info))
        changes.append(f"{slot.name}: now serving v{loaded.info.version} (was v{slot.version})")
    return changes


def load_router(ctx: AppContext, names: Sequence[str]) -> ModelRouter:
    """Load the production version of each named model (every aliased model if empty)."""
    if not names:
        names = [n for n in ctx.registry.model_names() if ctx.registry.find_alias(n, "production")]
    slots = {}
    for name in names:
        loaded = load_model(ctx, name, "production")
        loaded.model.prepare_for_serving()
        slots[name] = ServingSlot(name, loaded.info.version, loaded.model, loaded.info)
    return ModelRouter(slots)
