-- wrk script for a GET route (benchmarks/bench_http.py runs it against /healthz beside the scoring routes).
--
--   wrk -t1 -c8 -d10s --latency -s benchmarks/http_get.lua http://127.0.0.1:8000/healthz
--
-- done() prints the same JSON line as http_score.lua, which bench_http.py reads.

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
