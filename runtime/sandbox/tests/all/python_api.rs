//! The `influxdb3_local` API and `LineBuilder`, as plugins see them.

use crate::support::*;
use sluice_plugin_api::PluginCall;

#[tokio::test(flavor = "multi_thread")]
async fn the_api_object_has_exactly_the_nine_attributes() {
    let dir = PluginDir::new();
    let plugin = dir.plugin(
        "attrs.py",
        "def process_writes(influxdb3_local, table_batches, args=None):\n    influxdb3_local.info(sorted(a for a in dir(influxdb3_local) if not a.startswith('__')))\n",
    );
    let report = ok(wal(&plugin, "m f=1i").await);
    assert_eq!(
        report.log_lines,
        vec![
            "INFO: ['cache', 'error', 'info', 'query', 'warn', 'write', 'write_sync', 'write_sync_to_db', 'write_to_db']"
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn logging_joins_str_of_each_argument() {
    let dir = PluginDir::new();
    let plugin = dir.plugin(
        "logs.py",
        "def process_writes(api, batches, args=None):\n    x = [{'host': 's2', 'region': 'us-east', 'usage': 0.89}]\n    api.info('i', x, 's2')\n    api.warn('w:', x)\n    api.error('err', x)\n    api.info()\n",
    );
    let report = ok(wal(&plugin, "m f=1i").await);
    assert_eq!(
        report.log_lines,
        vec![
            "INFO: i [{'host': 's2', 'region': 'us-east', 'usage': 0.89}] s2",
            "WARN: w: [{'host': 's2', 'region': 'us-east', 'usage': 0.89}]",
            "ERROR: err [{'host': 's2', 'region': 'us-east', 'usage': 0.89}]",
            "INFO: ",
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rows_arrive_as_upstream_dicts_with_arguments() {
    let dir = PluginDir::new();
    let plugin = dir.plugin(
        "rows.py",
        "def process_writes(api, table_batches, args=None):\n    api.info('args', args)\n    for b in table_batches:\n        api.info(b['table_name'], b['rows'])\n",
    );
    let lp = "cpu,host=A,region=west usage=1i,system=23.2 100\nmem,host=B user=43.1 120\ncpu,host=C flag=true,name=\"x\",big=18446744073709551615u 130";
    let report = ok(run(&plugin, writes_call(lp, args(&[("arg1", "arg1_value")]))).await);
    assert_eq!(
        info_lines(&report),
        vec![
            "args {'arg1': 'arg1_value'}",
            "cpu [{'host': 'A', 'region': 'west', 'usage': 1, 'system': 23.2, 'time': 100}, {'host': 'C', 'flag': True, 'name': 'x', 'big': 18446744073709551615, 'time': 130}]",
            "mem [{'host': 'B', 'user': 43.1, 'time': 120}]",
        ]
    );
    let report = ok(run(&plugin, writes_call("m f=1i", None)).await);
    assert_eq!(report.log_lines[0], "INFO: args None");
}

#[tokio::test(flavor = "multi_thread")]
async fn batched_writes_accept_any_builder_and_land_in_their_database() {
    let dir = PluginDir::new();
    let plugin = dir.plugin(
        "writes.py",
        r#"
class Raw:
    def build(self):
        return "raw,a=1 f=1i\nraw,a=2 f=2i"

def process_writes(api, batches, args=None):
    api.write(LineBuilder("some_table").tag("t", "v").int64_field("f", 1))
    api.write(Raw())
    api.write_to_db("other", LineBuilder("x").float64_field("v", 2.0))
    api.write_sync(LineBuilder("now").bool_field("b", True), no_sync=True)
    try:
        api.write_sync(LineBuilder("now").bool_field("b", True))
    except TypeError as e:
        api.info("TypeError", "no_sync" in str(e))
"#,
    );
    let report = ok(wal(&plugin, "m f=1i").await);
    assert_eq!(report.log_lines, vec!["INFO: TypeError True"]);
    // Batched writes are reported line by line (upstream reports a builder's `build()`
    // as one entry even when it holds several lines).
    assert_eq!(
        report.database_writes["db"],
        vec![
            "now b=t",
            "some_table,t=v f=1i",
            "raw,a=1 f=1i",
            "raw,a=2 f=2i"
        ]
    );
    assert_eq!(report.database_writes["other"], vec!["x v=2.0"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn batched_writes_are_discarded_when_the_plugin_fails() {
    let dir = PluginDir::new();
    let plugin = dir.plugin(
        "fails.py",
        "def process_writes(api, batches, args=None):\n    api.write_sync(LineBuilder('kept').int64_field('f', 1), False)\n    api.write(LineBuilder('dropped').int64_field('f', 1))\n    raise RuntimeError('boom')\n",
    );
    let report = wal(&plugin, "m f=1i").await;
    assert_eq!(
        report.errors,
        vec!["error executing plugin: RuntimeError: boom (fails.py, line 4)"]
    );
    assert_eq!(report.database_writes["db"], vec!["kept f=1i"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn many_batched_writes_arrive_in_order_or_not_at_all() {
    // More lines than the guest hands over at once, to two databases, interleaved.
    let dir = PluginDir::new();
    let code = "def process_writes(api, batches, args=None):\n    for i in range(10000):\n        api.write(LineBuilder('own').int64_field('i', i))\n        if i % 3 == 0:\n            api.write_to_db('other', LineBuilder('o').int64_field('i', i))\n    if args:\n        raise RuntimeError('late')\n";
    let plugin = dir.plugin("many.py", code);
    let report = ok(wal(&plugin, "m f=1i").await);
    let own: Vec<String> = (0..10_000).map(|i| format!("own i={i}i")).collect();
    let other: Vec<String> = (0..10_000)
        .step_by(3)
        .map(|i| format!("o i={i}i"))
        .collect();
    assert_eq!(report.database_writes["db"], own);
    assert_eq!(report.database_writes["other"], other);

    let args = Some(vec![("fail".to_string(), "yes".to_string())]);
    let report = run(&plugin, writes_call("m f=1i", args)).await;
    assert_eq!(report.errors.len(), 1, "{:?}", report.errors);
    assert!(
        report.database_writes.is_empty(),
        "lines handed over before the failure are dropped too: {:?}",
        report.database_writes.keys()
    );
}

/// Python for plugins that write each line twice, once as the text `build()` made:
/// `Text(line.build())` is written as it is.
const TEXT: &str = "class Text:\n    def __init__(self, text):\n        self.text = text\n    def build(self):\n        return self.text\n";

#[tokio::test(flavor = "multi_thread")]
async fn written_floats_read_exactly_as_build_makes_them() {
    // `LineBuilder` lines leave their float values for the host to format: what arrives
    // must be what `build()` (upstream's Python formatting) makes, in order, across hand-overs, with
    // lines holding a NUL of their own in between.
    let dir = PluginDir::new();
    let code = r#"
import math, random, struct


def process_writes(api, batches, args=None):
    rng = random.Random(7)
    values = [0.1, -2.5e-300, 1e-05, 1e16, 1234567890123456.7, 5e-324, -0.0, 3.0]
    values += [rng.uniform(-1e6, 1e6) for _ in range(3000)]
    bits = [struct.unpack("<d", struct.pack("<Q", rng.getrandbits(64)))[0] for _ in range(3003)]
    values += [value for value in bits if math.isfinite(value)][:3000]
    for i, value in enumerate(values):
        line = LineBuilder("f").tag("i", str(i)).float64_field("v", value)
        line.int64_field("n", i).float64_field("w", value / 3).time_ns(i)
        if i % 1000 == 1:
            line.string_field("s", "a\0b")
        api.write_to_db("expected", Text(line.build()))
        api.write(line)
"#;
    let plugin = dir.plugin("floats.py", &format!("{TEXT}{code}"));
    let report = ok(wal(&plugin, "m f=1i").await);
    let written = &report.database_writes["db"];
    assert_eq!(written.len(), 6008);
    assert_eq!(written, &report.database_writes["expected"]);
    assert_eq!(written[0], "f,i=0 v=0.1,n=0i,w=0.03333333333333333 0");
    assert!(written[1].contains("s=\"a\0b\""), "{}", written[1]);
}

#[tokio::test(flavor = "multi_thread")]
async fn lines_of_any_shape_are_written_as_build_makes_them() {
    // Lines of a shape seen before are assembled by code generated for the shape: for
    // measurements in one shape, in alternating shapes, in more shapes than are learnt,
    // with keys and values that need escaping or hold NULs or SOHs (the characters that
    // stand for values handed over apart), tags in another order, and timestamps at the
    // ends of their range, beyond it or of another type, what arrives must be what
    // `build()` makes.
    let dir = PluginDir::new();
    let code = r#"
import random


class Stamp(int):
    pass

class Odd(str):
    def __format__(self, spec):
        return "\0"
    def __str__(self):
        return self

ODD = ["a b", "c,d", "e=f", "g\\h", "{x}", "'\"", "n\0ul", "s\1oh", "é", "%s", "}{"]

def process_writes(api, batches, args=None):
    rng = random.Random(11)
    shapes = {}
    for m in ["m", "q,r", "{m}", "m\\'", "é", "m\1"]:
        tags = rng.sample(["t1", "t{2}", "t\\3", "t'4", "%d", "t\0", "t\1"], rng.randint(0, 3))
        fields = [(k, rng.choice("fisb")) for k in rng.sample(["f1", "f{2}", "f\\3", 'f"4'], rng.randint(1, 3))]
        shapes[m] = (tags, fields)
    for i in range(6000):
        m = rng.choice(list(shapes))
        tags, fields = shapes[m]
        if i % 7 == 0:
            tags = tags[::-1]
        if m == "{m}" and i % 2:
            fields = fields + [(f"extra{i % 20}", "f")]
        line = LineBuilder(m)
        for k in tags:
            line.tag(k, rng.choice(ODD + [str(i % 7)] * 10))
        for k, kind in fields:
            if kind == "f":
                line.float64_field(k, rng.choice([1.5, -0.0, 3.0, 1e300, float(i), rng.random(), 7]))
            elif kind == "i":
                line.int64_field(k, i)
            elif kind == "s":
                line.string_field(k, rng.choice(ODD + [""] + ["ok"] * 10))
            else:
                line.bool_field(k, i % 2)
        r = rng.random()
        if r < 0.8:
            line.time_ns(i * 1000003)
        elif r < 0.85:
            line.time_ns(Stamp(i))
        elif r < 0.9:
            line.time_ns(rng.choice([2**63 - 1, -2**63, 0, -1]))
        elif r < 0.905:
            line.time_ns(rng.choice([2**63, -2**63 - 1, 10**30]))
        api.write_to_db("expected", Text(line.build()))
        api.write(line)
    # A tag value of a `str` subclass that formats itself otherwise is written as its text.
    for i in range(4):
        line = LineBuilder("odd").tag("t", Odd("v")).float64_field("f", 0.5).time_ns(i)
        api.write_to_db("expected", Text(line.build()))
        api.write(line)
"#;
    let plugin = dir.plugin("shapes.py", &format!("{TEXT}{code}"));
    let report = wal(&plugin, "m f=1i").await;
    // Lines whose timestamp is beyond 64 bits are refused, alike however they came.
    let (refused, refused_too): (Vec<_>, Vec<_>) = report
        .errors
        .iter()
        .partition(|e| e.contains(" to db db: "));
    assert!(
        refused.iter().any(|e| e.contains("'9223372036854775808'")),
        "{refused:?}"
    );
    let refused: Vec<_> = refused
        .iter()
        .map(|e| e.replace(" to db db: ", " to db expected: "))
        .collect();
    assert_eq!(refused.iter().collect::<Vec<_>>(), refused_too);
    let written = &report.database_writes["db"];
    assert_eq!(written.len(), 6004);
    assert_eq!(written, &report.database_writes["expected"]);
    assert_eq!(written[6003], "odd,t=v f=0.5 3");
    assert!(
        written.iter().any(|l| l.starts_with("q\\,r")),
        "{:?}",
        &written[..3]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn query_checks_its_arguments_and_raises_query_error() {
    let dir = PluginDir::new();
    let plugin = dir.plugin(
        "query.py",
        r#"
def process_writes(api, batches, args=None):
    try:
        api.query("SELECT 1", {"a": 1})
    except TypeError as e:
        api.info("TypeError:", e)
    try:
        api.query("SELECT foo FROM bar", {"a": "1"}, database="elsewhere")
    except Exception as e:
        api.info(type(e).__name__, type(e).__module__, "executing query on elsewhere: SELECT foo FROM bar" in str(e))
"#,
    );
    let report = ok(wal(&plugin, "m f=1i").await);
    assert_eq!(
        info_lines(&report),
        vec![
            "TypeError: argument 'args': 'int' object cannot be converted to 'PyString'",
            "QueryError influxdb3_py_api True",
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cache_round_trips_objects_with_ttl_and_namespaces() {
    let dir = PluginDir::new();
    let plugin = dir.plugin(
        "cache.py",
        r#"
import collections, time

def process_writes(api, batches, args=None):
    c = api.cache
    value = {"q": collections.deque([1, 2]), "nested": {"list": [1, {"x": None}]}}
    c.put("k", value)
    c.put("k", "global_value", use_global=True)
    got = c.get("k")
    api.info(got == value, type(got["q"]).__name__, got is value, c.get("k", use_global=True))
    c.put("none", None)
    api.info(c.get("none", default="d"), c.get("missing", default="d"))
    c.put("short", 1, ttl=0.05)
    time.sleep(0.1)
    api.info("after ttl", c.get("short"))
    api.info(c.delete("k"), c.delete("k"), c.get("k"))
    for bad in (-1, float("nan")):
        try:
            c.put("bad", 1, ttl=bad)
        except ValueError as e:
            api.info("ValueError", e)
"#,
    );
    let report = ok(wal(&plugin, "m f=1i").await);
    assert_eq!(
        info_lines(&report),
        vec![
            "True deque False global_value",
            "None d",
            "after ttl None",
            "True False None",
            "ValueError cannot convert float seconds to Duration: value is negative",
            "ValueError cannot convert float seconds to Duration: value is either too big or NaN",
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cache_persists_across_calls_with_the_same_host_cache() {
    let dir = PluginDir::new();
    let plugin = dir.plugin(
        "count.py",
        "def process_writes(api, batches, args=None):\n    n = api.cache.get('n', default=0) + len(batches[0]['rows'])\n    api.cache.put('n', n)\n    api.info('count', n)\n",
    );
    let host = host();
    for (lp, expected) in [
        ("m f=1i\nm f=2i\nm f=3i", "INFO: count 3"),
        ("m f=1i\nm f=2i", "INFO: count 5"),
    ] {
        let report = sluice_engine::dry_run::dry_run(
            sandbox(),
            &plugin,
            writes_call(lp, None),
            &Default::default(),
            host.clone(),
        )
        .await;
        assert_eq!(report.log_lines, vec![expected]);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn call_time_is_a_naive_utc_datetime_in_whole_seconds() {
    let dir = PluginDir::new();
    let plugin = dir.plugin(
        "schedule.py",
        "import os, time\ndef process_scheduled_call(api, call_time, args=None):\n    api.info(repr(call_time), call_time.tzinfo, args, os.environ['TZ'], time.strftime('%Z'))\n",
    );
    let call = PluginCall::Schedule {
        call_time_ns: 1_750_165_354_999_999_999,
        args: args(&[("region", "us-east")]),
    };
    let report = ok(run(&plugin, call).await);
    assert_eq!(
        report.log_lines,
        vec!["INFO: datetime.datetime(2025, 6, 17, 13, 2, 34) None {'region': 'us-east'} UTC UTC"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn line_builder_produces_the_golden_lines() {
    let dir = PluginDir::new();
    let plugin = dir.plugin(
        "golden.py",
        r#"
def process_writes(influxdb3_local, table_batches, args=None):
    lines = [
        LineBuilder("metrics").tag("host", "server01").tag("region", "us-west")
            .int64_field("cpu", 42).uint64_field("memory_bytes", 8589934592)
            .float64_field("load", 86.5).string_field("status", "online")
            .bool_field("healthy", True).time_ns(1609459200000000000),
        LineBuilder("system_metrics").tag("server", "app server 1").tag("datacenter", "us west")
            .int64_field("count", 1),
        LineBuilder("network").tag("servers", "web,app,db").tag("location", "floor1,rack3")
            .int64_field("connections", 256),
        LineBuilder("formulas").tag("equation", "y=mx+b").tag("result", "a=b=c")
            .float64_field("value", 3.14159),
        LineBuilder("paths").tag("windows_path", "C:\\Program Files\\App").tag("regex", "\\d+\\w+")
            .string_field("description", "Windows\\Unix paths").int64_field("count", 42),
        LineBuilder("messages").tag("type", "notification")
            .string_field("content", 'User said "Hello World"')
            .string_field("json", '{"key": "value"}').int64_field("priority", 1),
        LineBuilder("complex,measurement").tag("location", "New York, USA")
            .tag("details", "floor=5, room=3").tag("path", "C:\\Users\\Admin\\Documents")
            .string_field("message", 'Error in line: "x = y + z"')
            .string_field("query", 'SELECT * FROM table WHERE id="abc"')
            .float64_field("value", 123.456).time_ns(1609459200000000000),
        LineBuilder("sensor_data").tag("device", "thermostat").tag("room", "living room")
            .tag("floor", "1").float64_field("temperature", 72.5).int64_field("humidity", 45)
            .string_field("mode", "auto"),
    ]
    for line in lines:
        influxdb3_local.write(line)
    influxdb3_local.write_to_db("metrics_db", LineBuilder("memory_stats").tag("host", "server1").int64_field("usage", 75))
    for bad in (lambda: LineBuilder("has space"), lambda: LineBuilder("m").tag("", "v"),
                lambda: LineBuilder("m").tag("a b", "v"), lambda: LineBuilder("m").int64_field("a,b", 1),
                lambda: LineBuilder("m").int64_field("a=b", 1), lambda: LineBuilder("m").uint64_field("u", -1)):
        try:
            bad()
        except Exception as e:
            influxdb3_local.info(type(e).__name__, e, isinstance(e, InfluxDBError))
    influxdb3_local.info(LineBuilder("f").float64_field("a", 1e20).float64_field("b", 1e-7).build())
    influxdb3_local.info("All LineBuilder tests completed")
"#,
    );
    let report = ok(wal(&plugin, "m f=1i").await);
    let golden = [
        r#"metrics,host=server01,region=us-west cpu=42i,memory_bytes=8589934592u,load=86.5,status="online",healthy=t 1609459200000000000"#,
        r#"system_metrics,server=app\ server\ 1,datacenter=us\ west count=1i"#,
        r#"network,servers=web\,app\,db,location=floor1\,rack3 connections=256i"#,
        r#"formulas,equation=y\=mx+b,result=a\=b\=c value=3.14159"#,
        r#"paths,windows_path=C:\\Program\ Files\\App,regex=\\d+\\w+ description="Windows\\Unix paths",count=42i"#,
        r#"messages,type=notification content="User said \"Hello World\"",json="{\"key\": \"value\"}",priority=1i"#,
        r#"complex\,measurement,location=New\ York\,\ USA,details=floor\=5\,\ room\=3,path=C:\\Users\\Admin\\Documents message="Error in line: \"x = y + z\"",query="SELECT * FROM table WHERE id=\"abc\"",value=123.456 1609459200000000000"#,
        r#"sensor_data,device=thermostat,room=living\ room,floor=1 temperature=72.5,humidity=45i,mode="auto""#,
    ];
    assert_eq!(report.database_writes["db"], golden);
    assert_eq!(
        report.database_writes["metrics_db"],
        vec!["memory_stats,host=server1 usage=75i"]
    );
    assert_eq!(
        info_lines(&report),
        vec![
            "InvalidMeasurementError Measurement name cannot contain spaces True",
            "InvalidKeyError tag key cannot be empty True",
            "InvalidKeyError tag key 'a b' cannot contain spaces True",
            "InvalidKeyError field key 'a,b' cannot contain commas True",
            "InvalidKeyError field key 'a=b' cannot contain equals signs True",
            "ValueError uint64 field 'u' cannot be negative False",
            "f a=100000000000000000000.0,b=1e-07",
            "All LineBuilder tests completed",
        ]
    );
}
