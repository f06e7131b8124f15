"""When a service that stopped before the first step lets its job go on (pure)."""

from __future__ import annotations

import pytest

from runner.engine.backend import ServiceState
from runner.mission.model import Health, Service
from runner.run.services import exited_cleanly

CHECKED = Health(cmd="true", interval_s=1.0, timeout_s=1.0, retries=3, start_period_s=0.0)


@pytest.mark.parametrize(
    ("health", "state", "goes_on"),
    [
        (None, ServiceState(running=False, exit_code=0), True),  # GitHub checks no more
        (None, ServiceState(running=False, exit_code=3), False),  # a crash
        (None, ServiceState(running=False, exit_code=None), False),  # unknown: fail closed
        (None, ServiceState(running=True), False),  # running is not "exited"
        (CHECKED, ServiceState(running=False, exit_code=0), False),  # its check never passed
    ],
)
def test_only_an_unchecked_service_that_exited_with_0_lets_the_job_go_on(
    health: Health | None, state: ServiceState, goes_on: bool
) -> None:
    service = Service(name="docker", image="base", health=health)
    assert exited_cleanly(service, state) is goes_on
