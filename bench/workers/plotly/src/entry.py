import plotly.graph_objects as go
from workers import Response, WorkerEntrypoint

# Built at import: plotly loads most of its modules lazily, on first use,
# which would otherwise fall to the first request instead of the snapshot.
FIGURE = go.Figure(go.Bar(x=["a", "b", "c"], y=[3, 1, 2]))
FIGURE.to_json()


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        return Response(FIGURE.to_json(), headers={"content-type": "application/json"})
