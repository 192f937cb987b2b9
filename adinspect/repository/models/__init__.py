"""Triton Python-backend `model.py` files, copied verbatim into the generated repository.

Each is thin (STYLE.md §7): parse the config once in `initialize`, loop over the requests in
`execute`, call one `adinspect.repository.steps` function, return one response per request, and a
per-request `TritonError` with a code for bad input. They import `triton_python_backend_utils`,
which only exists inside Triton, so nothing in adinspect imports them.
"""
