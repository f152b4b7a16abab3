-- PUT load: each request stores a new path; bodies cycle through the pool.
-- args: <key prefix> <run id> <pool path> <start index> <query> <mode: ft|s3> [auth header]
-- common.lua (next to this script) defines setup(), done() and load_pool().
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "common.lua")
function init(args)
  prefix, runid, pool, counter, query, mode, auth = args[1], args[2], load_pool(args[3]), tonumber(args[4]), args[5], args[6], args[7]
  n = #pool
  tid = tid or 1
end

function request()
  counter = counter + 1
  local item = pool[(counter % n) + 1]
  local path = prefix .. "/" .. runid .. "/" .. tid .. "/" .. counter .. query
  local headers
  if mode == "ft" then
    -- as the Filetracker client sends a file: gzip body with its checksum and logical size
    headers = { ["Content-Type"] = "application/octet-stream", ["Content-Encoding"] = "gzip",
                ["SHA256-Checksum"] = item.sha, ["Logical-Size"] = item.size }
  else
    headers = { ["Content-Type"] = "application/octet-stream", ["Authorization"] = auth,
                ["x-amz-content-sha256"] = "UNSIGNED-PAYLOAD" }
  end
  return wrk.format("PUT", path, headers, item.body)
end
