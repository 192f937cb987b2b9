"""The Triton server's lifecycle: find, launch and supervise tritonserver, hot reload, `serve` / `repo`."""
