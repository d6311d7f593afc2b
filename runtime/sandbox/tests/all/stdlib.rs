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

/// What pure-Python packages ask of POSIX at import or on common paths, and WASI's
/// CPython lacks (`pint` imports `os.getuid`): answered for one fixed unprivileged user,
/// the same in every sandbox.
#[tokio::test(flavor = "multi_thread")]
async fn who_runs_the_plugin_is_one_fixed_unprivileged_user() {
    let dir = PluginDir::new();
    let code = r#"
import getpass, grp, os, pwd

def process_writes(api, batches, args=None):
    user = pwd.getpwuid(os.getuid())
    try:
        pwd.getpwuid(0)
        root = "found"
    except KeyError as e:
        root = str(e)
    api.info(
        os.getuid(), os.geteuid(), os.getgid(), os.getegid(), os.getppid(), os.getgroups(),
        os.getlogin(), getpass.getuser(), user.pw_name, user[0], user.pw_dir,
        grp.getgrgid(os.getgid()).gr_name, pwd.getpwnam("plugin").pw_uid,
        os.path.expanduser("~/x"), root,
    )
"#;
    let report = ok(wal(&dir.plugin("who.py", code), "m f=1i").await);
    assert_eq!(
        report.log_lines,
        vec![
            "INFO: 1000 1000 1000 1000 1 [1000] plugin plugin plugin plugin / plugin 1000 /x \
             'getpwuid(): uid not found: 0'"
        ]
    );
}

/// `platform`, `locale` and the process ids answer for the sandbox, the same in every
/// instance, and nothing of the host.
#[tokio::test(flavor = "multi_thread")]
async fn platform_and_locale_describe_the_sandbox() {
    let dir = PluginDir::new();
    let code = r#"
import locale, os, platform, sys

def process_writes(api, batches, args=None):
    api.info(
        platform.system(), platform.machine(), platform.python_implementation(),
        sys.platform, locale.setlocale(locale.LC_CTYPE), locale.getpreferredencoding(),
        os.getpid(), os.getppid(),
    )
"#;
    let report = ok(wal(&dir.plugin("where.py", code), "m f=1i").await);
    assert_eq!(
        report.log_lines,
        // CPython 3.15 runs in UTF-8 mode, whose preferred encoding is `utf-8`.
        vec!["INFO: wasi wasm32 CPython wasi C.UTF-8 utf-8 42 1"]
    );
}

/// asyncio's event loops start without the socket pair WASI cannot make: tasks, sleeps
/// and time-outs work in a plugin.
#[tokio::test(flavor = "multi_thread")]
async fn asyncio_runs_tasks_sleeps_and_time_outs() {
    let dir = PluginDir::new();
    let code = r#"
import asyncio

async def twice(x):
    await asyncio.sleep(0.01)
    return 2 * x

async def main():
    doubled = await asyncio.gather(twice(1), twice(2))
    try:
        await asyncio.wait_for(asyncio.sleep(10), timeout=0.01)
        late = "no time-out"
    except TimeoutError:
        late = "timed out"
    return doubled, late

def process_writes(api, batches, args=None):
    api.info(*asyncio.run(main()))
    api.info(asyncio.run(twice(5)))
"#;
    let report = ok(wal(&dir.plugin("aio.py", code), "m f=1i").await);
    assert_eq!(report.log_lines, vec!["INFO: [2, 4] timed out", "INFO: 10"]);
}

/// Every instance starts from one pre-initialised image, which holds the state of
/// `random` too: each draws its own seed, so two instances never share a sequence, nor can
/// a tenant predict another's numbers from its own.
#[tokio::test(flavor = "multi_thread")]
async fn each_instance_draws_its_own_random_numbers() {
    let dir = PluginDir::new();
    let code = r#"
import random

def process_writes(api, batches, args=None):
    api.info(random.getrandbits(64), random.random())
"#;
    let plugin = dir.plugin("dice.py", code);
    let first = ok(wal(&plugin, "m f=1i").await).log_lines;
    let second = ok(wal(&plugin, "m f=1i").await).log_lines;
    assert_eq!(first.len(), 1, "{first:?}");
    assert_ne!(first, second, "two fresh instances drew the same numbers");
}
