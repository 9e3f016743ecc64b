"""Chaos and soak (issue 9): the real processes (Redis, the simulator, two web, two scaler and two
worker processes) under demand, one fault at a time, checked against the simulator's ground truth.

- `harness`: starts and restarts the processes, finds the leader, restarts Redis without its data.
- `demand`: players joining and leaving through the session API across regions.
- `invariants`: design.md §5 checked during the run (a sampler) and after it (a final check).
- `scenarios`: the faults, each injected alone, then cleared, then checked.
- `soak`: 10 minutes of callbacks and placements with memory and nothing-lost checks.
- `__main__`: `make chaos` (every scenario with three seeds, the soak, the OpenAPI fuzz).
"""
