"""``python -m bench.reindex_timer``: Parley's ``reindex`` command, timed to the millisecond.

The command prints its own duration with 0.1 s resolution, too coarse for a burst of a few
thousand documents; this runs the same function (``parley.runtime.reindex.reindex``) on the
same settings and prints ``indexed <N> docs in <seconds> s`` from its own clock, which also
covers opening the store and the index (the command's own clock starts after that), so the rate
is a slight underestimate for small rebuilds.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import time

from parley.composition import Parley
from parley.runtime.reindex import reindex
from parley.settings import get_settings


async def main() -> None:
    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # its per-batch progress lines
        count = await reindex(Parley(get_settings(), "tool"), batch_size=1000)
    print(f"indexed {count} docs in {time.perf_counter() - started:.4f} s", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
