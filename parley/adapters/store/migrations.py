"""Run Alembic migrations from inside the running service (``SqlStore.start``).

Several processes may start at once (api ×2, realtime ×2, …): on MySQL a named lock
(``GET_LOCK``) lets one of them migrate while the others wait; SQLite's write lock does the same.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

ALEMBIC_DIR = Path(__file__).parent / "alembic"


def alembic_config(url: str | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(ALEMBIC_DIR))
    if url:
        cfg.set_main_option("sqlalchemy.url", url)
    return cfg


def _upgrade(sync_conn: Any) -> None:
    cfg = alembic_config()
    cfg.attributes["connection"] = sync_conn
    command.upgrade(cfg, "head")


async def upgrade_to_head(engine: AsyncEngine) -> None:
    is_mysql = engine.dialect.name in ("mysql", "mariadb")
    async with engine.connect() as conn:
        if is_mysql:
            got = (await conn.execute(text("SELECT GET_LOCK('parley_migrations', 60)"))).scalar()
            if got != 1:
                raise RuntimeError("could not take the migration lock within 60 s")
            await conn.commit()
        try:
            await conn.run_sync(_upgrade)
            await conn.commit()
        finally:
            if is_mysql:
                await conn.execute(text("SELECT RELEASE_LOCK('parley_migrations')"))
                await conn.commit()
