-- wrk script: POST a 256-byte JSON event. Set KEY in the environment for the API key.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local key = os.getenv("KEY")
if key then wrk.headers["X-API-Key"] = key end
local pad = string.rep("x", 256 - 40)
wrk.body = '{"event":"bench.event","pad":"' .. pad .. '"}'
