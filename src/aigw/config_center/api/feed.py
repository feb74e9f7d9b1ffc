"""The feed gateways follow: the newest configuration document, by long-poll.

``GET /internal/v1/config?after=N&wait=S`` answers at once with ``200 {"version", "document"}``
when the head is newer than ``N``; otherwise it waits up to ``S`` seconds for a newer version and
answers 204 if none came. The document is exactly as stored: provider credentials stay encrypted
(``enc:v1:``) and only a gateway holding the master key can read them. Gateways authenticate with
the shared gateway token (``AIGW_GATEWAY_TOKEN``), not as admins, so this is outside ``/api/``.
"""

from __future__ import annotations

import hmac
import logging
import time
from typing import Any

from fastapi import APIRouter, Depends, Query, Request, Response

from aigw.config_center.errors import ApiError, Unauthenticated
from aigw.config_center.feed import VersionFeed

log = logging.getLogger("aigw.config_center.feed")

MAX_WAIT = 30.0
DEFAULT_WAIT = 25.0


class Unavailable(ApiError):
    status = 503
    type = "unavailable"


async def gateway(request: Request) -> None:
    """Only callers presenting ``Authorization: Bearer <gateway token>`` get through."""
    expected = request.app.state.settings.gateway_token
    if not expected:
        raise Unauthenticated("this config center has no gateway token: set AIGW_GATEWAY_TOKEN")
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        token.strip().encode(), expected.encode()
    ):
        raise Unauthenticated("invalid gateway token")


router = APIRouter(prefix="/internal/v1", tags=["gateway feed"], dependencies=[Depends(gateway)])


@router.get(
    "/config",
    responses={200: {"description": "A newer version"}, 204: {"description": "None came"}},
)
async def config(
    request: Request,
    after: int = Query(0, ge=0, description="The version the gateway has (0: none)."),
    wait: float = Query(DEFAULT_WAIT, ge=0, le=MAX_WAIT, description="Seconds to wait."),
) -> Response:
    feed: VersionFeed = request.app.state.feed
    try:
        if after > feed.version and await _ahead_of_database(feed, after):
            # The gateway holds a version this database does not have (it was replaced or
            # restored): the head here is the configuration to follow.
            return _document(await feed.head_body())
        deadline = time.monotonic() + wait
        while True:
            if feed.version > after:
                version, body = await feed.head_body()
                if version > after:
                    return _document((version, body))
            if feed.stopped:
                # The gateway retries elsewhere or later; it keeps its snapshot meanwhile.
                raise Unavailable("the config center is stopping")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return Response(status_code=204)
            with request.app.state.metrics.feed_long_polls.track_inprogress():
                await feed.wait_newer(max(after, feed.version), remaining)
    except ApiError:
        raise
    except Exception as exc:  # the database is away: the gateway keeps its snapshot and retries
        log.warning("config feed: cannot read the configuration: %s", exc)
        raise Unavailable("the configuration database is unavailable; retry shortly") from None


@router.get("/config/version")
async def config_version(request: Request) -> dict[str, Any]:
    """The newest version this config center knows of."""
    return {"version": request.app.state.feed.version}


async def _ahead_of_database(feed: VersionFeed, after: int) -> bool:
    head = await feed.store.head_version()
    feed.advance(head)
    return 0 < head < after


def _document(head: tuple[int, bytes]) -> Response:
    return Response(content=head[1], media_type="application/json")
