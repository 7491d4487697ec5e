"""Alembic environment. Migrations run inside ``SqlStore.start`` on the service's own
connection (``config.attributes["connection"]``), or from the command line with a URL."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from parley.adapters.store.schema import metadata

config = context.config


def run() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    url = config.get_main_option("sqlalchemy.url") or "sqlite:///data/parley.sqlite3"
    engine = create_engine(url.replace("+aiosqlite", "").replace("+aiomysql", "+pymysql"))
    with engine.connect() as conn:
        context.configure(connection=conn, target_metadata=metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()


run()
