//! Requests from concurrent clients, timed; rows written over HTTP.

use std::time::Instant;

/// The value at `p` (0 to 1) of `sorted`.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// The body of a successful GET of `url`.
pub async fn get(client: &reqwest::Client, url: &str) -> String {
    let response = client.get(url).send().await.expect("sent");
    let status = response.status();
    let body = response.text().await.expect("body");
    assert!(status.is_success(), "{url}: {status} {body}");
    body
}

/// `total` GET requests to `url` from `concurrency` clients, after two each to warm up
/// (whose answers must be `expected`, when given): (p50 ms, p99 ms, requests/s).
pub async fn load(
    url: &str,
    expected: Option<&str>,
    concurrency: usize,
    total: usize,
) -> (f64, f64, f64) {
    let client = reqwest::Client::new();
    // The first call of each client may load an instance.
    for _ in 0..concurrency * 2 {
        let body = get(&client, url).await;
        if let Some(expected) = expected {
            assert_eq!(body, expected, "{url}");
        }
    }
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, url) = (client.clone(), url.to_string());
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(total / concurrency);
                for _ in 0..total / concurrency {
                    let sent = Instant::now();
                    get(&client, &url).await;
                    latencies.push(sent.elapsed().as_secs_f64() * 1000.0);
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for worker in workers {
        latencies.extend(worker.await.expect("worker"));
    }
    let seconds = started.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    (
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.len() as f64 / seconds,
    )
}

/// Writes `rows` rows of `table` to `database` in 10,000-row batches.
pub async fn write_rows(host: &str, database: &str, table: &str, rows: usize) {
    let client = reqwest::Client::new();
    for batch in 0..rows / 10_000 {
        let body: String = (0..10_000)
            .map(|i| {
                let n = batch * 10_000 + i;
                format!(
                    "{table},host=h{} f={} {}\n",
                    i % 10,
                    50 + i % 40,
                    1_700_000_000_000_000_000_i64 + n as i64
                )
            })
            .collect();
        let response = client
            .post(format!("{host}/api/v3/write_lp?db={database}"))
            .body(body)
            .send()
            .await
            .expect("sent");
        assert_eq!(response.status(), 204);
    }
}
