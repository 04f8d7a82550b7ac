-- wrk script: POST /api/track with valid events (bench/loadgen.py runs it).
-- Arguments: path, events per request, a file of user IDs (one a line: the same pool as the
-- asyncio client's, so one warm-up activates them all), and a seed that makes event IDs that
-- no earlier run used.
-- Each request is for one anonymous (UUID v4) user of a pool; every event has a unique eventId
-- and the current time, so the tracker validates, stores and counts every one of them.
local path, batch = "/api/track", 1
local prefix = ""
local counter = 0
local users = {}
local hex = "0123456789abcdef"
local headers = { ["Content-Type"] = "application/json" }
local threads = 0

local function rhex(n)
  local t = {}
  for i = 1, n do
    local k = math.random(1, 16)
    t[i] = hex:sub(k, k)
  end
  return table.concat(t)
end

function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end

function init(args)
  path = args[1] or path
  batch = tonumber(args[2] or "1")
  for line in io.lines(args[3]) do
    users[#users + 1] = line
  end
  math.randomseed(tonumber(args[4] or "0") + (tid or 0) * 7919)
  prefix = rhex(16)
end

local function event(user, session, ts)
  counter = counter + 1
  return string.format(
    '{"userId":"%s","sessionId":"%s","timestamp":%d,"event":"click","data":{"path":"/products/%d",'
      .. '"element":"button#buy","coordinates":{"x":%d,"y":%d},"metadata":{"viewportWidth":1280,'
      .. '"viewportHeight":800}},"eventId":"%s-%d"}',
    user, session, ts, counter % 50, math.random(0, 1279), math.random(0, 3000), prefix, counter
  )
end

function request()
  local user = users[math.random(#users)]
  local session = "s-" .. user:sub(1, 8)
  local ts = os.time() * 1000
  local body
  if batch == 1 then
    body = event(user, session, ts)
  else
    local parts = {}
    for i = 1, batch do
      parts[i] = event(user, session, ts)
    end
    body = '{"events":[' .. table.concat(parts, ",") .. "]}"
  end
  return wrk.format("POST", path, headers, body)
end

function done(summary, latency, requests)
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"status_errors":%d,"connect_errors":%d,'
      .. '"read_errors":%d,"write_errors":%d,"timeouts":%d,"p50_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, summary.errors.status, summary.errors.connect,
    summary.errors.read, summary.errors.write, summary.errors.timeout,
    latency:percentile(50), latency:percentile(99), latency.max
  ))
end
