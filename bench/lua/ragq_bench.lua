-- ragq's two endpoints written the way an OpenResty user would write them
-- (lua-resty-redis with pooled connections, lua-cjson), as the benchmark's
-- "what you would otherwise pick" baseline.  Same JSON shapes as the C module,
-- and the Valkey work the module did before issue 13 changed its data model
-- (bench/ENQUEUE.md, alternative (a)): MULTI / HSET P:job:ID (7 fields) /
-- XADD P:jobs * job ID / XLEN / EXEC per /chat, one HGETALL per /job-status.
-- Kept so on purpose, as the issue asks: "/chat >= 2.5x the Lua version"
-- compares against that older, five-command enqueue.  bench/run counts the
-- commands each run sends (INFO commandstats) and report.py checks 5 and 1.

local redis = require "nginx.redis"
-- lua-cjson is what OpenResty users reach for; a plain-Lua escaper keeps the
-- benchmark running where the Debian package is not installed.
local has_cjson, cjson = pcall(require, "cjson.safe")
if not has_cjson then
    local esc = { ['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n",
                  ["\r"] = "\\r", ["\t"] = "\\t" }
    cjson = {
        encode = function(s)
            return '"' .. s:gsub('[%c"\\]', function(c)
                return esc[c] or string.format("\\u%04x", c:byte())
            end) .. '"'
        end,
    }
end

local _M = {}

local cfg = {
    host = "127.0.0.1",
    port = 6379,
    prefix = "ragq",
    top_k = "5",
    max_query = 4096,
    max_queue = 100000000,
    pool_size = 512,
}

-- Opened once per worker: io buffers /dev/urandom, so ids cost one read()
-- per few hundred requests instead of one syscall each.
local urandom

local fmt, byte, concat = string.format, string.byte, table.concat
local HEX32 = string.rep("%02x", 16)

function _M.configure(opts)
    for k, v in pairs(opts) do
        cfg[k] = v
    end
end

function _M.init_worker()
    urandom = assert(io.open("/dev/urandom", "rb"))
end

local function new_id()
    return fmt(HEX32, byte(urandom:read(16), 1, 16))
end

-- A known length spares the chunked encoding, as the C module does.
local function send(body)
    ngx.header["Content-Length"] = #body
    ngx.print(body)
end

local function fail(status, code, message, extra)
    ngx.status = status
    ngx.header["Content-Type"] = "application/json"
    if extra then
        for k, v in pairs(extra) do
            ngx.header[k] = v
        end
    end
    send('{"error":{"code":"' .. code .. '","message":'
         .. cjson.encode(message) .. '}}')
    return ngx.exit(status)
end

local function connect()
    local red = redis:new()
    red:set_timeout(1000)
    local ok, err = red:connect(cfg.host, cfg.port)
    if not ok then
        return nil, err
    end
    return red
end

function _M.chat()
    if ngx.req.get_method() ~= "POST" then
        return fail(405, "method_not_allowed", "use POST", { Allow = "POST" })
    end
    local q = ngx.req.get_uri_args(16).query
    if type(q) == "table" then
        q = q[1]
    end
    if type(q) ~= "string" or q == "" then
        return fail(400, "missing_query", "pass the question as ?query=...")
    end
    if #q > cfg.max_query then
        return fail(413, "query_too_long", "the question is too long")
    end

    local red, err = connect()
    if not red then
        return fail(503, "valkey_unavailable", err, { ["Retry-After"] = "1" })
    end

    local id = new_id()
    local p = cfg.prefix
    red:init_pipeline(5)
    red:multi()
    red:hset(p .. ":job:" .. id, "status", "queued", "query", q,
             "top_k", cfg.top_k, "collection", "", "tenant", "",
             "created_at", fmt("%d", ngx.now() * 1000), "attempts", "0")
    red:xadd(p .. ":jobs", "*", "job", id)
    red:xlen(p .. ":jobs")
    red:exec()
    local res
    res, err = red:commit_pipeline()
    if not res or type(res[5]) ~= "table" or res[5][1] == false then
        red:close()
        return fail(503, "valkey_unavailable", tostring(err),
                    { ["Retry-After"] = "1" })
    end
    red:set_keepalive(60000, cfg.pool_size)

    local url = "/job-status?job_id=" .. id
    ngx.status = 202
    ngx.header["Content-Type"] = "application/json"
    ngx.header["Location"] = url
    send('{"status":"queued","job_id":"' .. id .. '","status_url":"' .. url
         .. '"}')
end

local function num(v)
    if v == nil or v == "" then
        return "null"
    end
    return v
end

local function str(v)
    if v == nil then
        return "null"
    end
    return cjson.encode(v)
end

local function raw(v)
    if v == nil or v == "" then
        return "null"
    end
    return v
end

function _M.status()
    local id = ngx.var.arg_job_id
    if not id or id == "" then
        return fail(400, "missing_job_id", "pass ?job_id=ID")
    end
    if #id ~= 32 or id:find("[^0-9a-f]") then
        return fail(400, "bad_job_id", "job ids are 32 lowercase hex digits")
    end

    local red, err = connect()
    if not red then
        return fail(503, "valkey_unavailable", err, { ["Retry-After"] = "1" })
    end
    local res
    res, err = red:hgetall(cfg.prefix .. ":job:" .. id)
    if not res then
        red:close()
        return fail(503, "valkey_unavailable", err, { ["Retry-After"] = "1" })
    end
    red:set_keepalive(60000, cfg.pool_size)
    if #res == 0 then
        return fail(404, "job_not_found", "no such job (or it expired)")
    end
    local h = red:array_to_hash(res)

    ngx.header["Content-Type"] = "application/json"
    send(concat({
        '{"job_id":"', id,
        '","status":', str(h.status),
        ',"query":', str(h.query),
        ',"result":', str(h.result),
        ',"sources":', raw(h.sources),
        ',"error":', raw(h.error),
        ',"created_at":', num(h.created_at),
        ',"started_at":', num(h.started_at),
        ',"ended_at":', num(h.ended_at),
        ',"attempts":', num(h.attempts),
        ',"usage":', raw(h.usage),
        '}'
    }))
end

return _M
