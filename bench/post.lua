-- wrk script for `make bench`: POST one small OpenAI chat completion request.
-- The bearer token comes from the environment so one script serves both runs:
-- AIGW_BENCH_KEY is the upstream key when hitting nginx directly, the gateway key otherwise.
wrk.method = "POST"
wrk.body = '{"model": "bench-model", "messages": [{"role": "user", "content": "Say hello"}], "max_tokens": 16}'
wrk.headers["Content-Type"] = "application/json"

local key = os.getenv("AIGW_BENCH_KEY")
if key ~= nil and key ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. key
end
