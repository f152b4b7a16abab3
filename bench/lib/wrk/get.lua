-- GET load: random reads among <count> files stored before the run (requests built in init()).
-- args: <key prefix> <count> [auth header]
-- common.lua (next to this script) defines setup(), done() and load_pool().
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "common.lua")
function init(args)
  local prefix, count, auth = args[1], tonumber(args[2]), args[3]
  local headers = {}
  if auth and auth ~= "" then
    headers["Authorization"] = auth
    headers["x-amz-content-sha256"] = "UNSIGNED-PAYLOAD"
  end
  reqs = {}
  for i = 1, count do
    local h = {}
    for k, v in pairs(headers) do h[k] = v end
    reqs[i] = wrk.format("GET", prefix .. "/" .. (i - 1), h)
  end
  math.randomseed(tid or 1)
end

function request()
  return reqs[math.random(#reqs)]
end
