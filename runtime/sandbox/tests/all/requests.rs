//! Request plugins: their inputs, and every return-value convention of upstream.

use crate::support::*;
use sluice_plugin_api::PluginCall;

fn call(body: &[u8]) -> PluginCall {
    PluginCall::Request {
        request: request(
            "POST",
            &[("q1", "whatevs"), ("q1", "last")],
            &[
                ("Content-Type", "application/json"),
                ("X-Thing", "1"),
                ("Authorization", "Bearer x"),
            ],
            body,
        ),
        args: args(&[("test_arg", "hello")]),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn request_inputs_match_upstream() {
    let dir = PluginDir::new();
    let plugin = dir.plugin(
        "inputs.py",
        "def process_request(api, query_parameters, request_headers, request_body, args=None):\n    api.info(query_parameters, request_headers, repr(request_body), args)\n    return 'ok'\n",
    );
    let report = ok(run(&plugin, call(br#"{"hello": "world"}"#)).await);
    assert_eq!(
        report.log_lines,
        vec![
            r#"INFO: {'q1': 'last'} {'content-type': 'application/json', 'x-thing': '1'} b'{"hello": "world"}' {'test_arg': 'hello'}"#
        ]
    );
}

/// What the plugin returns, and the status, headers and body that makes.
type Convention = (
    &'static str,
    u16,
    &'static [(&'static str, &'static str)],
    &'static str,
);

const CONVENTIONS: &[Convention] = &[
    (
        r#""Hello, World!""#,
        200,
        &[("Content-Type", "text/html")],
        "Hello, World!",
    ),
    (
        r#"{"message": "hi", "n": 1}"#,
        200,
        &[("Content-Type", "application/json")],
        r#"{"message": "hi", "n": 1}"#,
    ),
    (
        r#""Created successfully", 201"#,
        201,
        &[("Content-Type", "text/html")],
        "Created successfully",
    ),
    (
        r#""Custom Content-Type", {"Content-Type": "text/plain", "X-Custom-Header": "test-value"}"#,
        200,
        &[
            ("Content-Type", "text/plain"),
            ("X-Custom-Header", "test-value"),
        ],
        "Custom Content-Type",
    ),
    (
        r#""Not Found", 404, {"X-Reason": "gone"}"#,
        404,
        &[("Content-Type", "text/html"), ("X-Reason", "gone")],
        "Not Found",
    ),
    (
        r#"["item1", "item2", "item3"]"#,
        200,
        &[("Content-Type", "application/json")],
        r#"["item1", "item2", "item3"]"#,
    ),
    (
        r#"(x for x in ["Line 1\n", "Line 2\n", b"Line 3\n", 4, b"\xff"])"#,
        200,
        &[("Content-Type", "text/html")],
        "Line 1\nLine 2\nLine 3\n",
    ),
    (
        r#"{"error": "Not Found", "code": 404}, 404"#,
        404,
        &[("Content-Type", "application/json")],
        r#"{"error": "Not Found", "code": 404}"#,
    ),
    (r#"(42,)"#, 200, &[("Content-Type", "text/plain")], "42"),
    (
        r#"b"bytes iterate as ints""#,
        200,
        &[("Content-Type", "text/html")],
        "",
    ),
    (
        "FlaskLike()",
        202,
        &[
            ("Content-Type", "text/custom"),
            ("X-Generated-By", "FlaskResponse"),
        ],
        "Custom Flask Response",
    ),
];

#[tokio::test(flavor = "multi_thread")]
async fn every_return_convention_becomes_the_upstream_response() {
    let dir = PluginDir::new();
    for (returned, status, headers, body) in CONVENTIONS {
        let code = format!(
            r#"
class FlaskLike:
    status_code = 202
    headers = {{"Content-Type": "text/custom", "X-Generated-By": "FlaskResponse"}}
    def __flask_response__(self):
        return True
    def get_data(self):
        return "Custom Flask Response"

def process_request(api, query_parameters, request_headers, request_body, args=None):
    return {returned}
"#
        );
        let report = ok(run(&dir.plugin("conventions.py", &code), call(b"")).await);
        let response = report.response.expect("a response");
        assert_eq!(response.status, *status, "for {returned}");
        let expected: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(response.headers, expected, "for {returned}");
        assert_eq!(response.body, *body, "for {returned}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn unsupported_returns_and_bad_headers_are_errors() {
    let dir = PluginDir::new();
    for (returned, expected) in [
        (
            "None",
            "TypeError: Unsupported return type from Python function",
        ),
        (
            "42",
            "TypeError: Unsupported return type from Python function",
        ),
        (
            r#""x", 200, "not a dict""#,
            "TypeError: expected a dictionary in header item",
        ),
    ] {
        let code =
            format!("def process_request(api, q, h, b, args=None):\n    return {returned}\n");
        let report = run(&dir.plugin("bad.py", &code), call(b"")).await;
        assert_eq!(
            report.errors,
            vec![format!("error executing plugin: {expected}")],
            "for {returned}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_responses_hit_the_response_limit() {
    let dir = PluginDir::new();
    let plugin = dir.plugin(
        "big.py",
        "def process_request(api, q, h, b, args=None):\n    return 'x' * 5000\n",
    );
    let limits = sluice_plugin_api::Limits {
        response_bytes: 4096,
        ..Default::default()
    };
    let report = run_with(&plugin, call(b""), &limits).await;
    assert_eq!(
        report.errors,
        vec!["error executing plugin: response size limit of 4 KiB exceeded"]
    );
}
