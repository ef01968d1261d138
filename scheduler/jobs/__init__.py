"""One module per job, each with `async def run(ctx: JobContext, result: JobResult)`;
scheduler/registry.py names them and says when each runs."""
