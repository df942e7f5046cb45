import itertools
import time

from workers import Response, WorkerEntrypoint

SENT = itertools.count()
CONSUMED = 0


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        path = request.url.split("/", 3)[3]
        if path == "count":
            return Response(str(CONSUMED))
        if path == "batch":
            start = next(SENT) * 100
            await self.env.Q.sendBatch([{"body": {"n": start + i}} for i in range(100)])
            return Response("100")
        # One send; the body is how long it took, in milliseconds.
        started = time.perf_counter()
        await self.env.Q.send({"n": next(SENT)})
        return Response(f"{(time.perf_counter() - started) * 1000:.3f}")

    async def queue(self, batch, env, ctx):
        global CONSUMED
        CONSUMED += len(batch.messages)
