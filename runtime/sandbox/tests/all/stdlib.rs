//! The pure-Python standard library is importable by plugins.

use crate::support::*;

const MODULES: &[&str] = &[
    "fractions",
    "decimal",
    "statistics",
    "zoneinfo",
    "zlib",
    "json",
    "csv",
    "datetime",
    "re",
    "collections",
    "dataclasses",
    "typing",
    "hashlib",
    "random",
    "uuid",
    "base64",
    "textwrap",
    "urllib.parse",
    "email",
    "logging",
    "tomllib",
    "pickle",
    "copy",
    "itertools",
    "functools",
    "heapq",
    "bisect",
    "string",
    "struct",
    // Not imported while the runtime is built: served from the captured library.
    "difflib",
    "graphlib",
    "ipaddress",
    "shlex",
    "calendar",
    "gzip",
    "html.parser",
    "xml.etree.ElementTree",
    "http.client",
    "sqlite3",
    "asyncio",
    "unittest",
    "argparse",
    "pprint",
    "secrets",
    "colorsys",
];

#[tokio::test(flavor = "multi_thread")]
async fn the_standard_library_imports_and_works() {
    let dir = PluginDir::new();
    let code = format!(
        r#"
import importlib

def process_writes(api, batches, args=None):
    for name in {MODULES:?}:
        importlib.import_module(name)
    import zlib, statistics, fractions, gzip, difflib, hashlib, decimal
    api.info(
        zlib.decompress(zlib.compress(b"sluice")).decode(),
        statistics.median([3, 1, 2]),
        fractions.Fraction(1, 3) + fractions.Fraction(1, 6),
        gzip.decompress(gzip.compress(b"ok")).decode(),
        difflib.SequenceMatcher(None, "abc", "abd").ratio() > 0.6,
        hashlib.sha256(b"").hexdigest()[:8],
        decimal.Decimal("0.1") + decimal.Decimal("0.2"),
    )
"#
    );
    let report = ok(wal(&dir.plugin("imports.py", &code), "m f=1i").await);
    assert_eq!(
        report.log_lines,
        vec!["INFO: sluice 2 1/2 ok True e3b0c442 0.3"]
    );
}
