//! Behaviour under faults injected into a real broker: the numbers an on-call engineer pages
//! on must point at the right culprit, and everything must recover by itself.

mod support;

use std::time::{Duration, Instant};

use support::*;

const TOPIC: &str = "cc-heartbeat";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrape_flood_delays_no_beat() {
    let mock = mock_cluster(3, TOPIC, 3);
    let running = Running::start(test_config(&mock.bootstrap_servers(), TOPIC, "")).await;
    running.wait_for_heartbeats(9.0).await;
    let before = running.metrics().await;
    let url = format!("http://{}/metrics", running.address);
    let flood_for = Duration::from_secs(30);
    // The clients get their own runtime, as real scrapers are other processes.
    let flood = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let client = reqwest::Client::new();
            let deadline = Instant::now() + flood_for;
            let mut clients = tokio::task::JoinSet::new();
            for _ in 0..50 {
                let (client, url) = (client.clone(), url.clone());
                clients.spawn(async move {
                    let mut scrapes = 0u64;
                    while Instant::now() < deadline {
                        let response = client.get(&url).send().await.expect("scrape");
                        assert_eq!(response.status(), 200);
                        assert!(response.text().await.unwrap().ends_with("# EOF\n"));
                        scrapes += 1;
                    }
                    scrapes
                });
            }
            let mut total = 0;
            while let Some(scrapes) = clients.join_next().await {
                total += scrapes.unwrap();
            }
            total
        })
    });
    let scrapes = tokio::task::spawn_blocking(move || flood.join().unwrap()).await.unwrap();
    let after = running.metrics().await;
    assert!(scrapes >= 500, "only {scrapes} scrapes: no flood happened");

    let delta = |name: &str, filter: &[(&str, &str)]| after.sum(name, filter) - before.sum(name, filter);
    assert_eq!(delta("heartbeat_beats_missed_total", &[]), 0.0, "{}", after.text);
    let beats = delta("heartbeat_beat_delay_seconds_count", &[]);
    let on_time = delta("heartbeat_beat_delay_seconds_bucket", &[("le", "0.05")]);
    assert!(beats >= 140.0, "{beats} beats in 30 s at 0.2 s");
    assert_eq!(on_time, beats, "every beat started within 50 ms of its slot");
    let produced = delta("heartbeat_messages_produced_total", &[]);
    assert!(produced >= 3.0 * 140.0, "{produced} heartbeats");
    assert_eq!(delta("heartbeat_produce_failures_total", &[]), 0.0);
    assert_eq!(delta("heartbeat_messages_lost_total", &[]), 0.0);
    assert!(running.stop().await);
}
