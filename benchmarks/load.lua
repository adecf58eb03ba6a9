-- wrk script for benchmarks/load.py: counts every response by status and prints,
-- once the run is over, one line "LOADJSON {...}" with the totals and latency
-- percentiles (milliseconds). The request itself (method, path, headers) comes
-- from wrk's command line. Each wrk thread has its own Lua state, so the counts
-- are gathered from every thread in done().

local threads = {}

function setup(thread)
   table.insert(threads, thread)
end

function init(args)
   statuses = {}
end

function response(status, headers, body)
   local key = tostring(status)
   statuses[key] = (statuses[key] or 0) + 1
end

local function ms(microseconds)
   return string.format("%.3f", microseconds / 1000)
end

function done(summary, latency, requests)
   local counts = {}
   for _, thread in ipairs(threads) do
      for status, n in pairs(thread:get("statuses") or {}) do
         counts[status] = (counts[status] or 0) + n
      end
   end
   local parts = {}
   for status, n in pairs(counts) do
      table.insert(parts, string.format('"%s": %d', status, n))
   end
   local e = summary.errors
   io.write("LOADJSON {",
      string.format('"requests": %d, "duration_us": %d, ', summary.requests, summary.duration),
      string.format('"statuses": {%s}, ', table.concat(parts, ", ")),
      string.format('"errors": {"connect": %d, "read": %d, "write": %d, "timeout": %d}, ',
         e.connect, e.read, e.write, e.timeout),
      '"latency_ms": {',
      '"p50": ', ms(latency:percentile(50)), ', ',
      '"p90": ', ms(latency:percentile(90)), ', ',
      '"p99": ', ms(latency:percentile(99)), ', ',
      '"max": ', ms(latency.max), ', ',
      '"mean": ', ms(latency.mean), '}}\n')
end
