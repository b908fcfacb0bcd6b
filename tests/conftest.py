import asyncio
import functools
import inspect

import pytest

pytest_plugins = [
    "tests.org_fixtures", "tests.db_fixtures", "tests.temporal_fixtures", "tests.e2e_fixtures", "tests.codec_fixtures",
    "tests.tls_fixtures",
]

# A wedged async test is cancelled inside its own event loop after this long, so its fixtures
# (worker, test server) shut down and the next test starts clean. pytest-timeout (pyproject.toml,
# thread method, longer) stays the backstop for a hang outside the loop: it dumps every stack and
# ends the run at once rather than letting one hang cost every later test its full timeout.
ASYNC_TEST_BUDGET = 120


def _within_budget(test):
    @functools.wraps(test)
    async def run(*args, **kwargs):
        async with asyncio.timeout(ASYNC_TEST_BUDGET):
            return await test(*args, **kwargs)

    return run


def pytest_collection_modifyitems(items):
    for item in items:
        test = getattr(item, "obj", None)
        if inspect.iscoroutinefunction(test) and not getattr(test, "is_hypothesis_test", False):
            item.obj = _within_budget(test)
