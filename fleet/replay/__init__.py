"""`fleet replay`: the offline what-if replay in virtual time (composition code, no Redis, no HTTP).

- `inputs`: what a replay runs on (trace window, configuration, reference setting, regions);
- `players`: the players drawn from the trace, and the lower bound;
- `units`: the fleet configuration (read by `fleet apply`'s parser) as the scaler's decision units;
- `world`: the simulator's world model as the replay drives it;
- `engine`: the event loop, placement and waiting;
- `scalers`: ours (`autoscaler.policy`), the platform's own fleet behaviour, the Agones-style buffer;
- `window`: the stabilisation window's peak demand, exact in virtual time;
- `run`, `report`: running policies side by side and writing the report.
"""
