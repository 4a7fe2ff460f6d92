-- wrk: POST /chat?query=... (old-client form, no body) on every request.
dofile(os.getenv("BENCH_DIR") .. "/wrk/report.lua")

local req

function init(args)
    req = wrk.format("POST",
                     "/chat?query=what+is+the+refund+policy+for+annual+plans%3F")
end

function request()
    return req
end
