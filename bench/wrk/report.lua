-- Shared wrk done() hook: writes one run's numbers as JSON to $WRK_OUT so
-- bench/report.py never has to parse wrk's human-readable output.
function done(summary, latency, requests)
    local out = os.getenv("WRK_OUT")
    if not out then
        return
    end
    local e = summary.errors
    local f = assert(io.open(out, "w"))
    f:write(string.format(
        '{"requests":%d,"duration_us":%d,"bytes":%d,' ..
        '"rps":%.2f,"lat_mean_us":%.1f,"lat_p50_us":%d,"lat_p90_us":%d,' ..
        '"lat_p99_us":%d,"lat_max_us":%d,"err_connect":%d,"err_read":%d,' ..
        '"err_write":%d,"err_status":%d,"err_timeout":%d}\n',
        summary.requests, summary.duration, summary.bytes,
        summary.requests / (summary.duration / 1e6), latency.mean,
        latency:percentile(50), latency:percentile(90),
        latency:percentile(99), latency.max, e.connect, e.read, e.write,
        e.status, e.timeout))
    f:close()
end
