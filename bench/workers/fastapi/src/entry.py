from fastapi import FastAPI
from workers import WorkerEntrypoint

app = FastAPI()


@app.get("/")
async def index():
    return {"framework": "fastapi"}


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        import asgi

        return await asgi.fetch(app, request.js_object, self.env)
