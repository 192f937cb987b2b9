"""`adinspect annotate`: label real defects in the browser with ADClick (DESIGN.md §8).

queue (which images) → store (what was decided, written atomically) → service (the click runtime
and the store behind one lock) → app (HTTP routes and the static page). `jobs` runs
`label` → `train-seg` in the background; `bench` drives the HTTP API with the click simulator.
The web framework (starlette, uvicorn) is the optional extra `annotate`; nothing here needs torch.
"""
