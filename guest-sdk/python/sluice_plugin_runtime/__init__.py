"""The InfluxDB 3 plugin API for Sluice, independent of how the host is reached.

Both runtimes run this same code, and reach the host through the same door (`door.py`):
the WebAssembly sandbox from `app.py`, where the door is the runtime's one host import,
and the pyo3 runtime from `native.py`, where it is a builtin module of the server's. So a
benchmark compares executors, not two implementations of the API.
"""
