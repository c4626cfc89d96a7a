"""Fixtures of the unit tests: the use cases' Services on fakes of every port with a recording
summariser, and for the tests that drive Redis scripts, fakeredis (with Lua) and a clock of the test's."""

from __future__ import annotations

import pytest
from fakeredis import FakeAsyncRedis, FakeServer

from memcompress.jobs import Services
from tests.unit.fakes import fake_services
from tests.unit.stubs import SMALL, Recording

T0 = 1_800_000_000.0


class Clock:
    """A clock the test moves by setting ``now``; passed where the code takes ``clock=time.time``."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def redis() -> FakeAsyncRedis:
    return FakeAsyncRedis(server=FakeServer())


@pytest.fixture
def services(redis: FakeAsyncRedis, clock: Clock) -> Services:
    """Every store port faked, the real queue on ``redis`` and ``clock``, a
    :class:`~tests.unit.stubs.Recording` summariser, the ``SMALL`` policy."""
    return fake_services(Recording(), redis=redis, clock=clock, **SMALL)
