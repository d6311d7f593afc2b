"""The InfluxDB 3 plugin API for Sluice, independent of how the host is reached.

`app.py` binds it to the WIT contract inside the WebAssembly sandbox; the native
baseline engine binds it to a Rust object. Both run this same code, so a benchmark
compares executors, not two implementations of the API.
"""
