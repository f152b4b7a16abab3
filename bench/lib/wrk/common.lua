-- Shared by put.lua and get.lua: thread numbering and the JSON summary that bench/lib/wrk.ts reads.
local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRK_JSON {\"duration_us\":%d,\"requests\":%d,\"bytes\":%d," ..
    "\"errors\":{\"connect\":%d,\"read\":%d,\"write\":%d,\"status\":%d,\"timeout\":%d}," ..
    "\"latency_us\":{\"min\":%d,\"mean\":%.1f,\"p50\":%d,\"p90\":%d,\"p99\":%d,\"p999\":%d,\"max\":%d}}\n",
    summary.duration, summary.requests, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.mean, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9), latency.max))
end

-- Reads a body pool written by bench/lib/smallfiles.ts: <pool>.bin holds the bodies back to
-- back, <pool>.idx one line per body: "<length> <sha256 hex> <logical size>".
function load_pool(path)
  -- body by body: the pool is large, and one string of it all would double the memory
  local f = assert(io.open(path .. ".bin", "rb"))
  local pool = {}
  for line in io.lines(path .. ".idx") do
    local len, sha, size = line:match("^(%d+) (%x+) (%d+)$")
    pool[#pool + 1] = { body = f:read(tonumber(len)), sha = sha, size = size }
  end
  f:close()
  return pool
end
