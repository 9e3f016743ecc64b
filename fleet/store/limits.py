"""Platform call limits shared by every process through Redis (the `codema.limits.PlatformLimits`
contract): the 429 back-off window and one token bucket per endpoint.

Both use Redis `TIME`, never the caller's clock, so processes on hosts with skewed clocks agree
on when a window ends and how many tokens have refilled. Each operation is one atomic script.
"""

from __future__ import annotations

import math

from redis.asyncio import Redis

from fleet.store.keys import Keys

# The back-off key holds the window's end in Redis epoch seconds ("%.6f"), expiring with it.
_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
"""

# KEYS: back-off, bucket. ARGV: tokens per second, burst. Returns the wait in microseconds; 0 means
# a token was taken. A caller inside the back-off window takes nothing.
_ADMIT = (
    _NOW
    + """
local until_s = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if until_s > now then return math.ceil((until_s - now) * 1000000) end
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local b = redis.call('HMGET', KEYS[2], 'tokens', 'ts')
local tokens = tonumber(b[1])
local ts = tonumber(b[2])
if tokens == nil or ts == nil then tokens = burst; ts = now end
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[2], 'tokens', string.format('%.6f', tokens), 'ts', string.format('%.6f', now))
redis.call('PEXPIRE', KEYS[2], math.ceil(burst / rate * 1000) + 1000)
return math.ceil(wait * 1000000)
"""
)

# KEYS: back-off. ARGV: seconds. Extends the window, never shortens it.
_BACK_OFF = (
    _NOW
    + """
local seconds = tonumber(ARGV[1])
local until_s = now + seconds
local cur = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if until_s > cur then
  redis.call('SET', KEYS[1], string.format('%.6f', until_s), 'PX', math.ceil(seconds * 1000) + 1000)
  return math.ceil(seconds * 1000000)
end
return math.ceil((cur - now) * 1000000)
"""
)

_REMAINING = (
    _NOW
    + """
local until_s = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if until_s > now then return math.ceil((until_s - now) * 1000000) end
return 0
"""
)


class RedisPlatformLimits:
    """`PlatformLimits` shared by every process that uses the same Redis and key prefix."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._keys = keys
        self._admit = redis.register_script(_ADMIT)
        self._back_off = redis.register_script(_BACK_OFF)
        self._remaining = redis.register_script(_REMAINING)

    async def admit(self, endpoint: str, per_s: float, burst: float) -> float:
        if per_s <= 0 or burst < 1 or not math.isfinite(per_s):
            raise ValueError("a bucket needs per_s > 0 and burst >= 1")
        keys = [self._keys.platform_backoff(), self._keys.rate_bucket(endpoint)]
        wait_us = await self._admit(keys=keys, args=[repr(float(per_s)), repr(float(burst))])
        return int(wait_us) / 1_000_000

    async def back_off(self, seconds: float) -> None:
        if seconds > 0 and math.isfinite(seconds):
            await self._back_off(keys=[self._keys.platform_backoff()], args=[f"{seconds:.6f}"])

    async def backoff_remaining(self) -> float:
        remaining_us = await self._remaining(keys=[self._keys.platform_backoff()])
        return int(remaining_us) / 1_000_000
