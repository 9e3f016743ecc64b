"""The scaler loop (placeholder until the autoscaler room lands)."""

from __future__ import annotations

from fleet.bootstrap import Services


async def run_scaler(services: Services, *, once: bool = False) -> None:
    raise NotImplementedError("the scaler loop is not built yet")
