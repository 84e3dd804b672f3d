"""The vendor-batch path of the batch tier: attempts held in pending collections (:mod:`.store`), submitted as
vendor batches and polled by one poller per provider fleet-wide, their results streamed back into jobs
(:mod:`.batcher`). See docs/bulk.md."""
