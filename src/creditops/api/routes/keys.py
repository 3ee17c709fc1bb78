"""API keys (scope admin): list, create (the key is shown once), revoke."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from creditops.api.deps import AdminKey, AdminScope, SessionsDep, StateDep
from creditops.domain.access import SCOPES
from creditops.services import access

KeyId = Annotated[str, Path(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9]+$")]

router = APIRouter(tags=["keys"])


class KeyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=128, description="Who or what uses the key.")
    scopes: list[str] = Field(min_length=1, max_length=len(SCOPES), examples=[["predict"]])


class KeyResponse(BaseModel):
    id: str
    name: str
    scopes: list[str]
    created_at: str
    revoked_at: str | None
    last_used_at: str | None


class CreatedKeyResponse(BaseModel):
    key: str = Field(description="The secret: shown this once, stored only as a hash.")
    id: str
    name: str
    scopes: list[str]


@router.get("/v1/keys", operation_id="list_keys", dependencies=[AdminScope])
async def list_keys(sessions: SessionsDep) -> list[KeyResponse]:
    """Every API key (never the secrets)."""
    rows = await run_in_threadpool(access.list_keys, sessions)
    return [KeyResponse(**row) for row in rows]


@router.post(
    "/v1/keys",
    operation_id="create_key",
    status_code=201,
    responses={
        201: {
            "links": {
                "RevokeKey": {
                    "operationId": "revoke_key",
                    "parameters": {"key_id": "$response.body#/id"},
                }
            }
        }
    },
)
async def create_key(
    body: KeyRequest, principal: AdminKey, sessions: SessionsDep
) -> CreatedKeyResponse:
    """Create a key with the given scopes; the answer holds the secret, once."""
    made = await run_in_threadpool(
        access.create_key, sessions, body.name, body.scopes, SCOPES, principal.actor
    )
    return CreatedKeyResponse(key=made.key, id=made.key_id, name=made.name, scopes=made.scopes)


@router.delete("/v1/keys/{key_id}", operation_id="revoke_key", status_code=204)
async def revoke_key(key_id: KeyId, principal: AdminKey, state: StateDep) -> None:
    """Revoke a key: refused at once by this process, by the others within 5 s (their
    look-up cache)."""
    await run_in_threadpool(access.revoke_key, state.sessions, key_id, principal.actor)
    state.auth.forget(key_id)
