"""bench/do.sh's worker: one RPC per request, to one object or to one of
many; one storage put and get per request."""

import random

from workers import DurableObject, Response, WorkerEntrypoint


class Bench(DurableObject):
    async def ping(self):
        return 1

    async def put_get(self, value):
        await self.ctx.storage.put("k", value)
        return await self.ctx.storage.get("k")


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        path = request.url.split("/", 3)[3]
        ns = self.env.OBJECTS
        if path == "one":
            return Response(str(await ns.getByName("hot").ping()))
        if path == "spread":
            return Response(str(await ns.getByName(str(random.randrange(1000))).ping()))
        if path == "storage":
            name = str(random.randrange(100))
            return Response(str(await ns.getByName(name).put_get(random.random())))
        return Response("ok")
