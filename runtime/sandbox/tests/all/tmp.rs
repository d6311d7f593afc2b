//! Each instance's `/tmp`: writable, its own, bounded, emptied when a call ends.

use crate::support::*;
use sluice_plugin_api::Limits;

/// `tempfile` and plain files in `/tmp` work as on any machine.
#[tokio::test(flavor = "multi_thread")]
async fn tempfile_and_files_in_tmp_work() {
    let dir = PluginDir::new();
    let code = r#"
import os, shutil, tempfile

def process_writes(api, batches, args=None):
    with tempfile.NamedTemporaryFile("w+", suffix=".csv") as f:
        f.write("a,b\n1,2\n")
        f.flush()
        f.seek(0)
        api.info(os.path.dirname(f.name), f.read().splitlines())
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "x.txt"), "w") as out:
            out.write("hello")
        shutil.copy(os.path.join(d, "x.txt"), os.path.join(d, "y.txt"))
        os.rename(os.path.join(d, "y.txt"), os.path.join(d, "z.txt"))
        api.info(sorted(os.listdir(d)), open(os.path.join(d, "z.txt")).read())
    fd, path = tempfile.mkstemp()
    os.write(fd, b"12345")
    os.lseek(fd, 0, 0)
    api.info(os.read(fd, 10), os.path.getsize(path))
    os.close(fd)
    os.unlink(path)
    with tempfile.SpooledTemporaryFile(max_size=10) as spool:
        spool.write(b"x" * 100)
        spool.seek(0)
        api.info(len(spool.read()))
    api.info(tempfile.gettempdir(), os.environ.get("TMPDIR"), os.listdir("/tmp"))
"#;
    let report = ok(wal(&dir.plugin("tmp_works.py", code), "m f=1i").await);
    assert_eq!(
        info_lines(&report),
        vec![
            "/tmp ['a,b', '1,2']",
            "['x.txt', 'z.txt'] hello",
            "b'12345' 5",
            "100",
            "/tmp /tmp []",
        ]
    );
}

/// Past the call's limit, creating, resizing and writing fail with `ENOSPC` (a write once
/// the pages that fit are written), and the plugin goes on; every byte written counts,
/// overwritten or deleted, and every file created 4 KiB.
#[tokio::test(flavor = "multi_thread")]
async fn a_call_writes_no_more_than_its_limit() {
    let dir = PluginDir::new();
    let code = r#"
import errno, os

def attempt(action):
    try:
        action()
        return "ok"
    except OSError as e:
        return errno.errorcode[e.errno]

def write(path, size):
    with open(path, "wb") as f:
        f.write(b"x" * size)

def process_writes(api, batches, args=None):
    # A limit of 65,536 bytes: a file counts a page of 4,096, and the pages its bytes
    # touch: 10 for 40,000.
    api.info(attempt(lambda: write("/tmp/a", 40_000)))
    os.unlink("/tmp/a")
    # Deleted, but written: 45,056 counted still; c takes two pages more.
    api.info(attempt(lambda: write("/tmp/c", 2_000)))
    # Growing c to 1 MiB would count its growth.
    api.info(attempt(lambda: os.truncate("/tmp/c", 1 << 20)))
    # 53,248 counted: b's page fits, and two pages of its bytes, which are written.
    api.info(attempt(lambda: write("/tmp/b", 40_000)))
    api.info(sorted(os.listdir("/tmp")), os.path.getsize("/tmp/b"))
    made = 0
    while attempt(lambda: os.mkdir(f"/tmp/d{made}")) == "ok":
        made += 1
    api.info(made)
"#;
    let limits = Limits {
        tmp_bytes: 64 << 10,
        ..Limits::default()
    };
    let plugin = dir.plugin("tmp_full.py", code);
    let report = ok(run_with(&plugin, writes_call("m f=1i", None), &limits).await);
    let lines = info_lines(&report);
    assert_eq!(
        lines[..6],
        ["ok", "ok", "ENOSPC", "ENOSPC", "['b', 'c'] 8192", "0"],
        "then nothing is left for a directory; {lines:?}"
    );
    assert!(
        report
            .log_lines
            .iter()
            .any(|line| line.contains("/tmp is full") && line.contains("64 KiB")),
        "{:?}",
        report.log_lines
    );
    assert_healthy().await;
}

/// A write counts the pages it touches: one byte written a page far apart counts a page,
/// whether through a file object (seek, write) or `os.pwrite`.
#[tokio::test(flavor = "multi_thread")]
async fn sparse_writes_count_the_pages_they_hold() {
    let dir = PluginDir::new();
    let code = r#"
import errno, os

def process_writes(api, batches, args=None):
    written = 0
    try:
        if args["how"] == "seek":
            with open("/tmp/sparse", "wb") as f:
                while True:
                    f.seek(written * 1_000_000)
                    f.write(b"x")
                    f.flush()
                    written += 1
        else:
            fd = os.open("/tmp/sparse", os.O_WRONLY | os.O_CREAT)
            while True:
                os.pwrite(fd, b"x", written * 1_000_000)
                written += 1
    except OSError as e:
        api.info(written, errno.errorcode[e.errno])
"#;
    let plugin = dir.plugin("sparse.py", code);
    let limits = Limits {
        tmp_bytes: 64 << 10,
        ..Limits::default()
    };
    // The file's page, and 15 of the 16 pages left.
    for (how, expected) in [("seek", "15 ENOSPC"), ("pwrite", "15 ENOSPC")] {
        let call = writes_call("m f=1i", args(&[("how", how)]));
        let report = ok(run_with(&plugin, call, &limits).await);
        assert_eq!(
            info_lines(&report)[0],
            expected,
            "{how}: {:?}",
            report.log_lines
        );
    }
}

/// Files a package plugin writes when it is loaded and keeps open stay counted: its
/// first call has only what is left of its limit, though their names are gone.
#[tokio::test(flavor = "multi_thread")]
async fn files_kept_open_from_loading_count_in_the_first_call() {
    let dir = PluginDir::new();
    dir.file(
        "keeper/__init__.py",
        r#"
import builtins, errno, os

kept = open("/tmp/loaded", "wb")
kept.write(b"x" * 700_000)
kept.flush()
builtins.loaded_file = kept

def process_writes(api, batches, args=None):
    before = os.listdir("/tmp")
    try:
        with open("/tmp/called", "wb") as f:
            f.write(b"x" * 400_000)
        api.info(before, "ok")
    except OSError as e:
        api.info(before, errno.errorcode[e.errno])
"#,
    );
    let limits = Limits {
        tmp_bytes: 1 << 20,
        ..Limits::default()
    };
    let call = writes_call("m f=1i", None);
    let report = ok(run_with(&dir.reference("keeper"), call, &limits).await);
    assert_eq!(
        info_lines(&report)[0],
        "[] ENOSPC",
        "{:?}",
        report.log_lines
    );
}

/// `/tmp` holds the plugin in: links out of it do not resolve, the read-only mounts
/// cannot be linked into it, and what it sees there is its own.
#[tokio::test(flavor = "multi_thread")]
async fn tmp_does_not_reach_the_host() {
    let dir = PluginDir::new();
    dir.file("pkg/__init__.py", "");
    let code = r#"
import errno, os

def attempt(action):
    try:
        return repr(action())[:40]
    except OSError as e:
        return errno.errorcode[e.errno]

def through(target, use):
    def action():
        os.symlink(target, "/tmp/link")
        try:
            return use("/tmp/link")
        finally:
            os.unlink("/tmp/link")
    return attempt(action)

def process_writes(api, batches, args=None):
    api.info(through("/etc/passwd", lambda path: open(path).read()))
    api.info(through("../../../../../../etc/passwd", lambda path: open(path).read()))
    api.info(through("/plugins", os.listdir))
    api.info(attempt(lambda: os.link(__file__, "/tmp/own")))
    api.info(attempt(lambda: os.listdir("/tmp/..")))
"#;
    let report = ok(wal(&dir.plugin("escape.py", code), "m f=1i").await);
    let lines = info_lines(&report);
    for (line, outcome) in lines.iter().zip(["/tmp/abs", "/tmp/up", "/tmp/plugins"]) {
        assert!(!line.contains("root:"), "{outcome}: {line}");
        assert!(line.starts_with('E'), "{outcome} should fail: {line}");
    }
    assert!(
        lines[3].starts_with('E'),
        "a hard link into /tmp: {}",
        lines[3]
    );
    assert!(
        lines[4].starts_with('E'),
        "the parent of /tmp: {}",
        lines[4]
    );
}
