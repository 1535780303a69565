-- wrk script for the scoring endpoints (benchmarks/bench_http.py writes the bodies and runs wrk).
--
--   wrk -t1 -c8 -d20s --latency -s benchmarks/http_score.lua http://127.0.0.1:8000 -- \
--       BODIES.jsonl /v1/incidents/score?explain=false bench-key-0123456789abcdef
--
-- BODIES.jsonl: one JSON request body per line (a single incident, or {"incidents": [...]}).
-- Each connection starts at a different line and walks the file round-robin, so
-- every request carries a different real narrative and household. All requests
-- are formatted once in init(); request() only hands out the next one.
-- done() prints one JSON line that bench_http.py reads: requests, errors,
-- seconds and latency percentiles in microseconds.

local requests = {}
local n = 0
local i = 0
local thread_counter = 0

function setup(thread)
  thread:set("thread_index", thread_counter)
  thread_counter = thread_counter + 1
end

function init(args)
  local file, path, key = args[1], args[2], args[3]
  local headers = { ["Content-Type"] = "application/json", ["X-API-Key"] = key }
  for line in io.lines(file) do
    if #line > 0 then
      n = n + 1
      requests[n] = wrk.format("POST", path, headers, line)
    end
  end
  assert(n > 0, "no request bodies in " .. file)
  -- spread threads over the file so that two threads do not send the same sequence
  i = ((thread_index or 0) * 7919) % n
end

function request()
  i = i % n + 1
  return requests[i]
end

function done(summary, latency, requests_)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "bytes": %d, "connect_errors": %d, "read_errors": %d, ' ..
    '"write_errors": %d, "status_errors": %d, "timeouts": %d, "p50_us": %d, "p90_us": %d, ' ..
    '"p99_us": %d, "p999_us": %d, "max_us": %d, "mean_us": %.1f}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
    latency.max, latency.mean))
end
