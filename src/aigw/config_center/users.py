"""Admin users, their passwords and session tokens. (Being written: see auth.py for the contract.)"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import async_sessionmaker

from aigw.config_center.auth import Principal


class UserService:
    def __init__(self, sessions: async_sessionmaker, session_ttl_seconds: int) -> None:  # type: ignore[type-arg]
        self._sessions = sessions
        self._ttl = session_ttl_seconds

    async def principal_for_token(self, token: str) -> Principal | None:
        return None
