import itertools

from workers import Response, WorkerEntrypoint

COUNTER = itertools.count()
READY = []


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        if not READY:
            await self.env.DB.exec(
                "CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, name TEXT);\n"
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000) "
                "INSERT OR IGNORE INTO items SELECT i, 'item ' || i FROM n;"
            )
            READY.append(True)
        item_id = next(COUNTER) % 1000 + 1
        row = await self.env.DB.prepare("SELECT name FROM items WHERE id = ?").bind(item_id).first()
        return Response(row["name"])
