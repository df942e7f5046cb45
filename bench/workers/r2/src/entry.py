import itertools

from workers import Response, WorkerEntrypoint

COUNTER = itertools.count()


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        if request.url.endswith("/big"):
            # A large object streamed in (PUT) and out (GET), never whole.
            if request.method == "PUT":
                obj = await self.env.BUCKET.put("big", request.body)
                return Response(str(obj.size))
            obj = await self.env.BUCKET.get("big")
            return Response(obj.body)
        key = f"key-{next(COUNTER) % 1000}"
        await self.env.BUCKET.put(key, "a small value")
        obj = await self.env.BUCKET.get(key)
        return Response(await obj.text())
