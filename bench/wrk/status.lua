-- wrk: GET /job-status for ids that exist, round-robin over $WRK_IDS (one id
-- a line).  Each thread starts at a different offset so the threads do not
-- read the same keys in lockstep.
dofile(os.getenv("BENCH_DIR") .. "/wrk/report.lua")

local reqs, n, i = {}, 0, 0
local counter = 0

function setup(thread)
    counter = counter + 1
    thread:set("tid", counter)
end

function init(args)
    for id in io.lines(os.getenv("WRK_IDS")) do
        if #id > 0 then
            n = n + 1
            reqs[n] = wrk.format("GET", "/job-status?job_id=" .. id)
        end
    end
    assert(n > 0, "no ids in WRK_IDS")
    i = ((tid or 1) * 7919) % n
end

function request()
    i = i % n + 1
    return reqs[i]
end
