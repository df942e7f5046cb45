import itertools

from workers import Response, WorkerEntrypoint

COUNTER = itertools.count()


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        key = f"key-{next(COUNTER) % 1000}"
        await self.env.KV.put(key, "a small value")
        value = await self.env.KV.get(key)
        return Response(value)
