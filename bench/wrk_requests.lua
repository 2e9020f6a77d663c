-- Cycle through pre-signed webhook requests: each wrk thread sends its own file
-- (<dir>/requests-<n>.bin), so every request is a distinct event until a file wraps.
-- Records: "<Stripe-Signature>\t<body length>\n<body>". Arguments: <dir> <output file>.
-- At the end, writes "<key> <value>" lines (summed per key by bench/receiver.py; latency in
-- ms) and the ids answered 200 to the output file.

local threads = {}
local counter = 0

function setup(thread)
  thread:set("thread_index", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  requests, sent, ok, non_2xx, ok_ids = {}, 0, 0, 0, {}
  out_path = args[2]
  local f = assert(io.open(args[1] .. "/requests-" .. thread_index .. ".bin", "rb"))
  while true do
    local line = f:read("*l")
    if not line then break end
    local sig, len = line:match("^([^\t]+)\t(%d+)$")
    requests[#requests + 1] = wrk.format("POST", "/webhooks/stripe", {
      ["Content-Type"] = "application/json; charset=utf-8",
      ["Stripe-Signature"] = sig,
      ["User-Agent"] = "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
    }, f:read(tonumber(len)))
  end
  f:close()
  total, past = #requests, 0
end

function request()
  sent = sent + 1
  past = math.max(0, sent - total)
  return requests[(sent - 1) % total + 1]
end

function response(status, headers, body)
  if status == 200 then
    ok = ok + 1
    local id = body:match('"id"%s*:%s*"([^"]+)"')
    if id then ok_ids[#ok_ids + 1] = id end
  else
    non_2xx = non_2xx + 1
  end
end

function done(summary, latency, requests)
  local out = assert(io.open(threads[1]:get("out_path"), "w"))
  out:write("requests ", summary.requests, "\nduration_us ", summary.duration, "\n")
  local e = summary.errors
  out:write("socket_errors ", e.connect + e.read + e.write + e.timeout, "\n")
  out:write("latency_max ", latency.max / 1000, "\n")
  for _, p in ipairs({50, 90, 99, 99.9}) do
    out:write("latency_p", p, " ", latency:percentile(p) / 1000, "\n")
  end
  for _, thread in ipairs(threads) do
    for _, key in ipairs({"sent", "total", "past", "ok", "non_2xx"}) do
      out:write(key, " ", thread:get(key), "\n")
    end
    for _, id in ipairs(thread:get("ok_ids")) do out:write("ok_id ", id, "\n") end
  end
  out:close()
end
