-- bench (tests/bench/queue.sh): a no-op consumer of the queue "bench", one message per
-- invocation. It declares `event`, so the platform builds it (records with their JSON
-- bodies decoded), as BullMQ's worker hands its processor a job with its data parsed.
return {
  triggers = { { queue = "bench", batch = 1, concurrency = 2 } }, -- queue.sh sets concurrency to its CONC
  handler = function(event) end,
}
