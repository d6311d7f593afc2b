//! `--object-store s3` against a minimal S3-compatible server on a loopback port: the
//! snapshots go to the bucket and come back after a `kill -9`.

use crate::server::TestServer;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

type Objects = Arc<Mutex<BTreeMap<String, Vec<u8>>>>;

const LAST_MODIFIED: &str = "Mon, 23 Nov 2026 00:00:00 GMT";

async fn put(
    State(objects): State<Objects>,
    Path((_, key)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let etag = format!("\"{}\"", body.len());
    objects.lock().expect("lock").insert(key, body.to_vec());
    (StatusCode::OK, [(header::ETAG, etag)]).into_response()
}

/// `bytes=a-b`, `bytes=a-` or `bytes=-n` over `len` bytes, as a half-open range.
fn range(header: &str, len: usize) -> Option<(usize, usize)> {
    let (start, end) = header.strip_prefix("bytes=")?.split_once('-')?;
    match (start.parse::<usize>().ok(), end.parse::<usize>().ok()) {
        (Some(a), Some(b)) => Some((a, (b + 1).min(len))),
        (Some(a), None) => Some((a, len)),
        (None, Some(n)) => Some((len.saturating_sub(n), len)),
        (None, None) => None,
    }
}

async fn get_object(
    State(objects): State<Objects>,
    Path((_, key)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let Some(data) = objects.lock().expect("lock").get(&key).cloned() else {
        return (
            StatusCode::NOT_FOUND,
            "<Error><Code>NoSuchKey</Code></Error>",
        )
            .into_response();
    };
    let etag = format!("\"{}\"", data.len());
    let common = [
        (header::ETAG, etag),
        (header::LAST_MODIFIED, LAST_MODIFIED.to_string()),
    ];
    match headers
        .get(header::RANGE)
        .and_then(|r| r.to_str().ok())
        .and_then(|r| range(r, data.len()))
    {
        Some((start, end)) => {
            let content_range = format!("bytes {start}-{}/{}", end - 1, data.len());
            (
                StatusCode::PARTIAL_CONTENT,
                common,
                [(header::CONTENT_RANGE, content_range)],
                data[start..end].to_vec(),
            )
                .into_response()
        }
        None => (StatusCode::OK, common, data).into_response(),
    }
}

async fn delete(
    State(objects): State<Objects>,
    Path((_, key)): Path<(String, String)>,
) -> StatusCode {
    objects.lock().expect("lock").remove(&key);
    StatusCode::NO_CONTENT
}

async fn list(
    State(objects): State<Objects>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let prefix = query.get("prefix").cloned().unwrap_or_default();
    let contents: String = objects
        .lock()
        .expect("lock")
        .iter()
        .filter(|(key, _)| key.starts_with(&prefix))
        .map(|(key, data)| {
            format!(
                "<Contents><Key>{key}</Key><LastModified>2026-11-23T00:00:00.000Z</LastModified>\
                 <ETag>\"{}\"</ETag><Size>{}</Size></Contents>",
                data.len(),
                data.len()
            )
        })
        .collect();
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><ListBucketResult><IsTruncated>false</IsTruncated>{contents}</ListBucketResult>"
    );
    ([(header::CONTENT_TYPE, "application/xml")], body).into_response()
}

/// Starts the fake S3 server on its own thread; returns its address and its objects.
fn start_fake_s3() -> (SocketAddr, Objects) {
    let objects: Objects = Arc::default();
    let app = Router::new()
        .route("/{bucket}", get(list))
        .route("/{bucket}/{*key}", get(get_object).put(put).delete(delete))
        .with_state(Arc::clone(&objects));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binds");
    listener.set_nonblocking(true).expect("non-blocking");
    let address = listener.local_addr().expect("address");
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            axum::serve(listener, app).await.expect("serves");
        });
    });
    (address, objects)
}

#[test]
fn snapshots_go_to_an_s3_bucket_and_come_back_after_kill_9() {
    let (s3, objects) = start_fake_s3();
    let dir = tempfile::tempdir().expect("temp dir");
    let endpoint = format!("http://{s3}");
    let flags = [
        "--object-store",
        "s3",
        "--bucket",
        "sluice-test",
        "--aws-endpoint",
        &endpoint,
        "--aws-allow-http",
        "--aws-access-key-id",
        "test",
        "--aws-secret-access-key",
        "test",
        "--snapshot-rows",
        "100",
    ];
    let server = TestServer::start_with(dir.path(), &flags);
    for batch in 0..3 {
        let body: String = (batch * 100..batch * 100 + 100)
            .map(|i| format!("cpu,host=h{} usage={i}i {i}\n", i % 3))
            .collect();
        assert_eq!(
            server
                .post(
                    "/api/v3/write_lp?db=mydb&precision=ns",
                    &[],
                    body.as_bytes()
                )
                .status,
            204
        );
    }
    let started = Instant::now();
    while !objects
        .lock()
        .expect("lock")
        .keys()
        .any(|k| k.starts_with("sluice/snapshots/"))
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no snapshot reached the bucket"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        objects
            .lock()
            .expect("lock")
            .keys()
            .any(|k| k.starts_with("sluice/dbs/mydb/cpu/") && k.ends_with(".parquet"))
    );
    let totals = json!([{"n": 300, "total": 44850}]);
    assert_eq!(
        server.query("mydb", "SELECT count(*) AS n, sum(usage) AS total FROM cpu"),
        totals
    );
    server.kill();

    let restarted = TestServer::start_with(dir.path(), &flags);
    assert_eq!(
        restarted.query("mydb", "SELECT count(*) AS n, sum(usage) AS total FROM cpu"),
        totals
    );
}
