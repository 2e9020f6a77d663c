-- Cycle through pre-signed webhook requests: each wrk thread sends its own file
-- (BENCH_REQ_DIR/requests-<n>.bin), so every request is a distinct event until a file wraps.
-- Records: "<Stripe-Signature>\t<body length>\n<body>".
-- At the end, writes counters and the ids answered 200 to BENCH_WRK_OUT.

local threads = {}
local counter = 0

function setup(thread)
  thread:set("thread_index", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  requests = {}
  sent = 0
  wraps = 0
  ok = 0
  other = {}
  ok_ids = {}
  local dir = os.getenv("BENCH_REQ_DIR")
  local path = os.getenv("BENCH_PATH") or "/webhooks/stripe"
  local f = assert(io.open(dir .. "/requests-" .. thread_index .. ".bin", "rb"))
  while true do
    local line = f:read("*l")
    if not line then break end
    local sig, len = line:match("^([^\t]+)\t(%d+)$")
    local body = f:read(tonumber(len))
    requests[#requests + 1] = wrk.format("POST", path, {
      ["Content-Type"] = "application/json; charset=utf-8",
      ["Stripe-Signature"] = sig,
      ["User-Agent"] = "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
    }, body)
  end
  f:close()
  total = #requests
end

function request()
  sent = sent + 1
  local i = sent % total
  if i == 0 then
    wraps = wraps + 1
    i = total
  end
  return requests[i]
end

function response(status, headers, body)
  if status == 200 then
    ok = ok + 1
    local id = body:match('"id"%s*:%s*"([^"]+)"')
    if id then ok_ids[#ok_ids + 1] = id end
  else
    local key = tostring(status)
    other[key] = (other[key] or 0) + 1
  end
end

function done(summary, latency, requests)
  local out = assert(io.open(os.getenv("BENCH_WRK_OUT"), "w"))
  out:write("requests ", summary.requests, "\n")
  out:write("duration_us ", summary.duration, "\n")
  out:write("bytes ", summary.bytes, "\n")
  local e = summary.errors
  out:write("errors_connect ", e.connect, "\n")
  out:write("errors_read ", e.read, "\n")
  out:write("errors_write ", e.write, "\n")
  out:write("errors_status ", e.status, "\n")
  out:write("errors_timeout ", e.timeout, "\n")
  out:write("latency_mean_us ", latency.mean, "\n")
  out:write("latency_max_us ", latency.max, "\n")
  for _, p in ipairs({50, 90, 99, 99.9}) do
    out:write("latency_p", p, "_us ", latency:percentile(p), "\n")
  end
  for _, thread in ipairs(threads) do
    local n = thread:get("thread_index")
    out:write("thread_sent ", n, " ", thread:get("sent"), "\n")
    out:write("thread_total ", n, " ", thread:get("total"), "\n")
    out:write("thread_wraps ", n, " ", thread:get("wraps"), "\n")
    out:write("thread_ok ", n, " ", thread:get("ok"), "\n")
    for status, count in pairs(thread:get("other")) do
      out:write("status ", status, " ", count, "\n")
    end
    for _, id in ipairs(thread:get("ok_ids")) do
      out:write("ok_id ", id, "\n")
    end
  end
  out:close()
end
