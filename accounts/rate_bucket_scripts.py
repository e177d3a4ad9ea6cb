"""The Lua scripts of the rate-limit buckets in Redis (`accounts.rate_buckets.RedisBuckets`), one atomic step each.

Both scripts get KEYS = the developer's and the organization's buckets (hashes of `tokens` and `ts`) and ARGV[1..3] =
their limits (0: none) and the window in seconds, and share one refill: a bucket holds at most its limit and gains
`limit / window` tokens a second since its last write (Redis's clock), a bucket never written is full.

The leases of `accounts.rate_buckets.RedisBuckets.atake`: `TAKE` grants `min(want, floor(have - limit/2))` over both
buckets: tokens from the **upper half** of each bucket only, and at least 1 whenever both have a token (refusal and
`retry_after` exactly as without leases). What holds:

- **Never more calls than the limit**: every admitted call spends a token taken in Redis; a give-back returns only
  unused tokens, capped at the limit, which leaves the bucket as if they had never been taken. The one difference
  is timing: a token may be spent up to the lease period `L` (`accounts.rate_buckets.lease_seconds`, 0.25 s by
  default) after it was taken, so over any T seconds a pair makes at most `limit + rate × (T + L)` calls instead of
  `limit + rate × T` (with 0.25 s, `limit / 240` more: under one call for limits below 240 a minute).
- **Near the limit every call is decided in Redis**: with a bucket at most half full, every take is of one token,
  exactly as without leases. A refusal can come while another process still holds unused leased tokens (at most
  what it leased from the upper half, ≤ `MAX_LEASE` a take); they are back in Redis within `L`, so such a refusal is
  at most `L` early for them, and its `Retry-After` (from Redis's buckets) errs long.
- Redis down: a live lease is still spent (≤ `L`), then the fail-open/closed rule of
  `accounts.rate_buckets`; the unused tokens of a lease that cannot be given back are lost (fewer calls, never more).
- What it saves: under sustained demand one round trip per up to `MAX_LEASE` calls; a leased check costs ~5 µs
  (4.7–7.4 measured) against ~210 µs for a bare PING and ~300 µs for the script (sync client), and the bridge with
  limits on kept 0.90–0.96 of its throughput without them (`bench/mcp_overhead.py`, 8 clients, median of the
  rounds' own ratios over five runs, noise-bound; 0.78–0.79 before).
"""

from __future__ import annotations

# Redis's clock, the window, and the refill and the write of bucket i (1: the developer's, 2: the organization's).
_BUCKETS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local window = tonumber(ARGV[3])
local function refilled(i)
  local limit = tonumber(ARGV[i])
  if limit <= 0 then return nil end
  local v = redis.call('HMGET', KEYS[i], 'tokens', 'ts')
  local have, ts = tonumber(v[1]), tonumber(v[2])
  if have == nil or ts == nil then have, ts = limit, now end
  local rate = limit / window
  return math.min(limit, have + math.max(0, now - ts) * rate), limit, rate
end
local function store(i, tokens)
  redis.call('HSET', KEYS[i], 'tokens', tostring(tokens), 'ts', tostring(now))
  redis.call('EXPIRE', KEYS[i], math.ceil(window * 2))
end
"""

# One call, with leases: ARGV[4] = `want` (tokens asked for; 0: only give back) and ARGV[5] = `give_back` (unused
# tokens of this process's previous lease for the pair, returned first, capped at the limit). Returns
# {granted, wait, which}: granted = min(want, floor(have - limit/2) of each bucket), at least 1 whenever both buckets
# have a token; 0 with the wait and whose bucket (1, 2) when refused.
TAKE = (
    _BUCKETS
    + """
local want = tonumber(ARGV[4] or '1')
local give = tonumber(ARGV[5] or '0')
local tokens = {}
local wait, which = 0, 0
local grant = want
for i = 1, 2 do
  local have, limit, rate = refilled(i)
  if have ~= nil then
    if give > 0 then have = math.min(limit, have + give) end
    tokens[i] = have
    if have < 1 then
      local w = (1 - have) / rate
      if w > wait then wait, which = w, i end
    end
    grant = math.min(grant, math.floor(have - limit / 2))
  end
end
if want < 1 or which > 0 then
  if give > 0 then
    for i = 1, 2 do
      if tokens[i] ~= nil then store(i, tokens[i]) end
    end
  end
  if want < 1 then return {0, '0', 0} end
  return {0, tostring(wait), which}
end
if grant < 1 then grant = 1 end
for i = 1, 2 do
  if tokens[i] ~= nil then store(i, tokens[i] - grant) end
end
return {grant, '0', 0}
"""
)

# `n` calls at once (`check_many`): ARGV[4] = n. Takes n tokens from both buckets, or none: refused with the wait until
# both hold n (and whose bucket) when either holds fewer. No lease, no give-back.
TAKE_MANY = (
    _BUCKETS
    + """
local n = tonumber(ARGV[4])
local tokens = {}
local wait, which = 0, 0
for i = 1, 2 do
  local have, limit, rate = refilled(i)
  if have ~= nil then
    tokens[i] = have
    if have < n then
      local w = (n - have) / rate
      if w > wait then wait, which = w, i end
    end
  end
end
if which > 0 then return {0, tostring(wait), which} end
for i = 1, 2 do
  if tokens[i] ~= nil then store(i, tokens[i] - n) end
end
return {n, '0', 0}
"""
)
