"""Full-text search over the messages the caller can read."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from parley.domain.actions.search import search_messages
from parley.domain.models import Id
from services.api.deps import ActorDep, DepsDep
from services.api.schemas import SearchMatchPublic, SearchPublic

router = APIRouter(tags=["search"])


@router.get("/search", response_model=SearchPublic)
async def search(
    deps: DepsDep,
    actor: ActorDep,
    q: Annotated[str, Query(min_length=1, max_length=500, description="words to find")],
    workspace_id: Id | None = None,
    conversation_id: Id | None = None,
    from_user_id: Id | None = None,
    before: datetime | None = None,
    after: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0, le=10_000)] = 0,
) -> SearchPublic:
    page = await search_messages(
        deps,
        actor,
        q,
        workspace_id=workspace_id,
        conversation_id=conversation_id,
        from_user_id=from_user_id,
        before=before,
        after=after,
        limit=limit,
        offset=offset,
    )
    return SearchPublic(
        total=page.total,
        matches=[SearchMatchPublic(message=m.message, highlight=m.highlight) for m in page.matches],
        limit=limit,
        offset=offset,
    )
