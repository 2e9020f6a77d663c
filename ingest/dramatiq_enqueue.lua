-- A copy of the `enqueue` branch of Dramatiq's dispatch script (dramatiq 2.2.1,
-- dramatiq/brokers/redis/dispatch.lua), for every message of a batch in one call: the
-- sender's heartbeat, then each message's data and its place in the queue. Atomic like the
-- original. Loaded by ingest/dramatiq_compat.py; guarded by tests/ingest/test_enqueue_format.py.
--
-- KEYS: [1] $namespace:__heartbeats__  [2] $namespace:$queue  [3] $namespace:$queue.msgs
-- ARGV: timestamp, broker id, then (redis message id, encoded message) for each message
redis.call("zadd", KEYS[1], ARGV[1], ARGV[2])
for i = 3, #ARGV, 2 do
    redis.call("hset", KEYS[3], ARGV[i], ARGV[i + 1])
    redis.call("rpush", KEYS[2], ARGV[i])
end
