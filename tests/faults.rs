//! Behaviour under faults injected into a real broker: the numbers an on-call engineer pages
//! on must point at the right culprit, and everything must recover by itself.

mod support;

use std::time::{Duration, Instant};

use support::*;

const TOPIC: &str = "cc-heartbeat";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrape_flood_delays_no_beat() {
    let _serial = serial().await;
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
            for index in 0..50 {
                let (client, url) = (client.clone(), url.clone());
                // Half ask for OpenMetrics, as Prometheus does; half for the text format.
                let openmetrics = index % 2 == 0;
                clients.spawn(async move {
                    let mut scrapes = 0u64;
                    while Instant::now() < deadline {
                        let mut request = client.get(&url);
                        if openmetrics {
                            request = request.header("accept", PROMETHEUS_ACCEPT);
                        }
                        let response = request.send().await.expect("scrape");
                        assert_eq!(response.status(), 200);
                        let body = response.text().await.unwrap();
                        assert_eq!(body.ends_with("# EOF\n"), openmetrics);
                        assert!(body.contains("heartbeat_up{"), "{body}");
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
    let scrapes = tokio::task::spawn_blocking(move || flood.join().unwrap())
        .await
        .unwrap();
    let after = running.metrics().await;
    assert!(scrapes >= 500, "only {scrapes} scrapes: no flood happened");

    let delta =
        |name: &str, filter: &[(&str, &str)]| after.sum(name, filter) - before.sum(name, filter);
    assert_eq!(
        delta("heartbeat_beats_missed_total", &[]),
        0.0,
        "{}",
        after.text
    );
    let beats = delta("heartbeat_beat_delay_seconds_count", &[]);
    let on_time = delta("heartbeat_beat_delay_seconds_bucket", &[("le", "0.05")]);
    assert!(beats >= 140.0, "{beats} beats in 30 s at 0.2 s");
    assert_eq!(
        on_time, beats,
        "every beat started within 50 ms of its slot"
    );
    let produced = delta("heartbeat_messages_produced_total", &[]);
    assert!(produced >= 3.0 * 140.0, "{produced} heartbeats");
    assert_eq!(delta("heartbeat_produce_failures_total", &[]), 0.0);
    assert_eq!(delta("heartbeat_messages_lost_total", &[]), 0.0);
    assert!(running.stop().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_brokers_down_keeps_serving_bounded_and_recovers() {
    let _serial = serial().await;
    let mock = mock_cluster(3, TOPIC, 3);
    let running = Running::start(test_config(&mock.bootstrap_servers(), TOPIC, "")).await;
    running.wait_for_heartbeats(9.0).await;
    for broker in 1..=3 {
        mock.broker_down(broker).unwrap();
    }
    let start = Instant::now();
    let mut max_in_flight: f64 = 0.0;
    let mut saw_down = false;
    let mut saw_cause = false;
    let beats_before = running
        .metrics()
        .await
        .sum("heartbeat_beat_delay_seconds_count", &[]);
    let ended_before = {
        let m = running.metrics().await;
        m.sum("heartbeat_messages_consumed_total", &[])
            + m.sum("heartbeat_produce_failures_total", &[])
            + m.sum("heartbeat_messages_lost_total", &[])
    };
    while start.elapsed() < Duration::from_secs(32) {
        let (status, text, _) = get(running.address, "/metrics").await;
        assert_eq!(status, 200);
        let metrics = Metrics::parse(&text);
        max_in_flight = max_in_flight.max(metrics.sum("heartbeat_messages_in_flight", &[]));
        assert_eq!(get(running.address, "/healthz").await.0, 200);
        if start.elapsed() > Duration::from_secs(10) {
            assert_eq!(
                metrics.sum("heartbeat_up", &[]),
                0.0,
                "cluster reported up while all brokers are down"
            );
            let (status, reason, _) = get(running.address, "/ready").await;
            assert_eq!(status, 503);
            if reason.contains("metadata is stale") {
                // Once every broker's check has failed, the reason says what they failed on.
                saw_cause |= reason.contains("connection check") && reason.contains("refused");
            } else {
                assert!(reason.contains("round trip"), "{reason}");
            }
            saw_down = true;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(saw_down);
    assert!(saw_cause, "/ready never named the refused connections");
    // In flight: at most what is sent within message.timeout.ms plus librdkafka's 1 s timeout
    // scan (3 s at 0.2 s), per partition; never growing with the outage.
    assert!(
        max_in_flight <= 3.0 * 16.0,
        "in-flight heartbeats grew to {max_in_flight}"
    );
    let down = running.metrics().await;
    assert!(
        down.sum(
            "heartbeat_produce_failures_total",
            &[("reason", "timed_out")]
        ) >= 30.0,
        "{}",
        down.text
    );
    assert!(down.sum("heartbeat_metadata_refresh_failures_total", &[]) >= 5.0);
    assert!(
        down.sum(
            "heartbeat_connection_failures_total",
            &[("reason", "refused")]
        ) >= 15.0
    );
    // Every heartbeat sent during the outage ended one way: failed (or lost, for the few
    // acknowledged just before), or is still in flight. None vanished, none counted twice.
    let beats = down.sum("heartbeat_beat_delay_seconds_count", &[]) - beats_before;
    let ended = down.sum("heartbeat_messages_consumed_total", &[])
        + down.sum("heartbeat_produce_failures_total", &[])
        + down.sum("heartbeat_messages_lost_total", &[])
        - ended_before;
    let in_flight = down.sum("heartbeat_messages_in_flight", &[]);
    assert!(
        (3.0 * beats - ended - in_flight).abs() <= 9.0,
        "{beats} beats x 3 partitions, {ended} ended, {in_flight} in flight"
    );
    // Those already acknowledged when the lights went out are lost; the rest failed, not both.
    assert!(
        down.sum("heartbeat_messages_lost_total", &[]) <= 3.0,
        "{}",
        down.text
    );

    for broker in 1..=3 {
        mock.broker_up(broker).unwrap();
    }
    let consumed =
        |m: &Metrics, p: &str| m.sum("heartbeat_messages_consumed_total", &[("partition", p)]);
    running
        .wait_for(
            "every partition measured again",
            Duration::from_secs(30),
            |m| {
                ["0", "1", "2"]
                    .iter()
                    .all(|p| consumed(m, p) >= consumed(&down, p) + 3.0)
                    && m.sum("heartbeat_up", &[]) == 1.0
            },
        )
        .await;
    let start = Instant::now();
    while get(running.address, "/ready").await.0 != 200 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "never ready again"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(running.stop().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_and_neighbours_are_never_measured() {
    let _serial = serial().await;
    let mock = mock_cluster(1, TOPIC, 1);
    let config = || test_config(&mock.bootstrap_servers(), TOPIC, "");
    // An earlier run leaves its heartbeats on the topic.
    let earlier = Running::start(config()).await;
    earlier.wait_for_heartbeats(5.0).await;
    assert!(earlier.stop().await);

    // Two instances side by side on the same topic.
    let first = Running::start(config()).await;
    let second = Running::start(config()).await;
    first.wait_for_heartbeats(10.0).await;
    second.wait_for_heartbeats(10.0).await;
    for running in [&first, &second] {
        let metrics = running.metrics().await;
        assert!(
            metrics.sum(
                "heartbeat_messages_skipped_total",
                &[("kind", "other_instance")]
            ) >= 5.0
        );
        assert_eq!(
            metrics.sum("heartbeat_messages_skipped_total", &[("kind", "stale")]),
            0.0,
            "nothing from the earlier run is read"
        );
        assert_eq!(metrics.sum("heartbeat_messages_duplicated_total", &[]), 0.0);
        assert_eq!(metrics.sum("heartbeat_messages_lost_total", &[]), 0.0);
        // No spike: every end-to-end sample is a real, short round trip.
        let count = metrics.sum("heartbeat_end_to_end_latency_seconds_count", &[]);
        let fast = metrics.sum(
            "heartbeat_end_to_end_latency_seconds_bucket",
            &[("le", "0.25")],
        );
        assert_eq!(fast, count, "{}", metrics.text);
        // Consumed never exceeds what this instance produced: the neighbour's are not counted.
        assert!(
            metrics.sum("heartbeat_messages_consumed_total", &[])
                <= metrics.sum("heartbeat_messages_produced_total", &[]) + 2.0
        );
    }
    assert!(first.stop().await);
    assert!(second.stop().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_that_cannot_be_created_is_explained_then_picked_up() {
    let _serial = serial().await;
    // The mock cluster does not serve CreateTopics: creation fails as it would without rights.
    let mock = mock_cluster(1, TOPIC, 0);
    let running = Running::start(test_config(
        &mock.bootstrap_servers(),
        "wanted-topic",
        "check.topic.timeout.seconds = 1",
    ))
    .await;
    let start = Instant::now();
    let reason = loop {
        let (status, body, _) = get(running.address, "/ready").await;
        assert_eq!(status, 503);
        if body.contains("creating it failed") {
            break body;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "never explained: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        reason.contains("`wanted-topic`") && reason.contains("CREATE"),
        "{reason}"
    );
    let checks = running
        .metrics()
        .await
        .sum("heartbeat_connection_checks_total", &[]);
    running
        .wait_for("connectivity checks go on", Duration::from_secs(10), |m| {
            m.sum("heartbeat_connection_checks_total", &[]) >= checks + 2.0
        })
        .await;
    mock.create_topic("wanted-topic", 1, 1).unwrap();
    running.wait_for_heartbeats(3.0).await;
    let start = Instant::now();
    while get(running.address, "/ready").await.0 != 200 {
        assert!(start.elapsed() < Duration::from_secs(10), "never ready");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(running.stop().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_produces_are_counted_apart_from_timeouts_and_logged_once() {
    let _serial = serial().await;
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
    let mock = mock_cluster(1, TOPIC, 1);
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), &test_ini(&mock.bootstrap_servers(), TOPIC, ""));
    let mut process = Process::start(&["--config", path.to_str().unwrap()], &[]);
    let address = process.address();
    process.wait_for_line("reading heartbeat partitions", Duration::from_secs(20));
    wait_for_scrape(
        address,
        "heartbeats flowing",
        Duration::from_secs(20),
        |m| m.sum("heartbeat_messages_consumed_total", &[]) >= 3.0,
    )
    .await;

    // Each refusal makes librdkafka refuse sends locally until the producer's client next
    // reads the topic's metadata (the metadata task makes its requests on that client, every
    // 0.5 s in tests): four broker refusals make a spell of at least four failures.
    let denied = vec![RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED; 4];
    mock.request_errors(RDKafkaApiKey::Produce, &denied);
    let start = Instant::now();
    let metrics = loop {
        let metrics = Metrics::parse(&get(address, "/metrics").await.1);
        if metrics.sum(
            "heartbeat_produce_failures_total",
            &[("reason", "authorization_failed")],
        ) >= 4.0
        {
            break metrics;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no rejections counted:\n{}",
            metrics.text
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        metrics.sum(
            "heartbeat_produce_failures_total",
            &[("reason", "timed_out")]
        ),
        0.0
    );
    // After the injected errors run out, heartbeats flow again.
    let consumed = metrics.sum("heartbeat_messages_consumed_total", &[]);
    let start = Instant::now();
    while Metrics::parse(&get(address, "/metrics").await.1)
        .sum("heartbeat_messages_consumed_total", &[])
        < consumed + 3.0
    {
        assert!(start.elapsed() < Duration::from_secs(20), "never recovered");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (_, code) = process.terminate();
    assert_eq!(code, Some(0));
    let log = process.rest_of_log();
    let said = log
        .lines()
        .filter(|line| line.contains("heartbeat not delivered"))
        .count();
    assert_eq!(
        said, 1,
        "one line for one failing spell, not one per heartbeat:\n{log}"
    );
    let ended = log
        .lines()
        .filter(|line| line.contains("are delivered again") && line.contains("not delivered)"))
        .count();
    assert_eq!(ended, 1, "one line when the spell ends:\n{log}");
    let authorization_lines = log
        .lines()
        .filter(|line| line.to_lowercase().contains("authorization"))
        .count();
    assert!(authorization_lines <= 3, "log flood:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_broker_is_measured_accurately_on_its_partitions_only() {
    let _serial = serial().await;
    let mock = mock_cluster(3, TOPIC, 3);
    let text = test_ini(
        &mock.bootstrap_servers(),
        TOPIC,
        "latency.window.seconds = 2",
    );
    let config = cc_heartbeat::config::Config::from_ini(
        &text,
        std::path::Path::new("t.ini"),
        std::iter::empty(),
    )
    .unwrap();
    let running = Running::start(config).await;
    running.wait_for_heartbeats(9.0).await;
    let p50 = |m: &Metrics, name: &str, partition: &str| {
        m.sum(name, &[("partition", partition), ("quantile", "0.5")])
    };
    // Samples of partition 0 acknowledged so far; the window (2 s) holds the last 10.
    let samples = |m: &Metrics| {
        m.sum(
            "heartbeat_produce_latency_seconds_count",
            &[("partition", "0")],
        )
    };
    // Waits until the window holds only samples sent after `since`: 13 more acknowledged (the
    // first few may have been sent before it).
    let window_refilled = |since: Metrics| {
        let running = &running;
        async move {
            running
                .wait_for("the window refilled", Duration::from_secs(30), |m| {
                    samples(m) >= samples(&since) + 13.0
                })
                .await
        }
    };
    // The latency without injected delay, measured here and now: what the delay adds to.
    let start = running.metrics().await;
    let calm = window_refilled(start).await;
    let baseline = p50(&calm, "heartbeat_produce_latency_recent_seconds", "0");
    assert!(baseline > 0.0 && baseline < 0.05, "baseline p50 {baseline}");
    let healthy_baseline =
        |partition: &str| p50(&calm, "heartbeat_produce_latency_recent_seconds", partition);
    // Broker 1 leads partition 0.
    for delay_ms in [5u64, 20, 50, 120, 250] {
        let delay = Duration::from_millis(delay_ms);
        let before = running.metrics().await;
        mock.broker_round_trip_time(1, delay).unwrap();
        // Let the window fill with samples taken under this delay only.
        let metrics = window_refilled(before).await;
        let expected = baseline + delay.as_secs_f64();
        let tolerance = 0.002 + 0.03 * expected;
        let produce = p50(&metrics, "heartbeat_produce_latency_recent_seconds", "0");
        let end_to_end = p50(&metrics, "heartbeat_end_to_end_latency_recent_seconds", "0");
        eprintln!("delay {delay_ms} ms: produce p50 {produce:.4}, e2e p50 {end_to_end:.4}");
        assert!(
            (produce - expected).abs() <= tolerance,
            "produce p50 {produce} for {delay_ms} ms"
        );
        // End to end, the heartbeat also rides a fetch, delayed too: depending on where the
        // consumer's fetch cycle stands it pays the delay once to a few times more.
        assert!(
            end_to_end >= expected - tolerance && end_to_end <= 4.0 * expected + 4.0 * tolerance,
            "e2e p50 {end_to_end} for {delay_ms} ms"
        );
        // The client's own round-trip time of broker 1 sees the delay too (over the last
        // statistics interval, so only once it has filled). It is taken on the connection, so
        // it holds the delay but not the baseline's time in the client's queues, which a
        // loaded machine lengthens.
        let rtt = metrics.sum(
            "heartbeat_client_broker_rtt_seconds",
            &[("broker", "1"), ("quantile", "0.5")],
        );
        assert!(
            rtt >= delay.as_secs_f64() * 0.9,
            "client rtt {rtt} for {delay_ms} ms"
        );
        for healthy in ["1", "2"] {
            let produce = p50(
                &metrics,
                "heartbeat_produce_latency_recent_seconds",
                healthy,
            );
            let usual = healthy_baseline(healthy);
            assert!(
                produce <= 3.0 * usual + 0.002,
                "partition {healthy} produce p50 {produce} with broker 1 slow, {usual} before"
            );
        }
    }
    assert!(running.stop().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentication_failure_is_named_retried_and_not_fatal() {
    let _serial = serial().await;
    let mock = mock_cluster(1, TOPIC, 1);
    let sasl = test_ini(&mock.bootstrap_servers(), TOPIC, "").replace(
        "[producer]",
        "security.protocol = SASL_PLAINTEXT\nsasl.mechanisms = PLAIN\nsasl.username = u\nsasl.password = p\n[producer]",
    );
    let config = cc_heartbeat::config::Config::from_ini(
        &sasl,
        std::path::Path::new("t.ini"),
        std::iter::empty(),
    )
    .unwrap();
    let started = Instant::now();
    let running = Running::start(config).await;
    running
        .wait_for_ready("named SASL", Duration::from_secs(20), |status, reason| {
            status == 503 && reason.contains("SASL")
        })
        .await;
    // Retried, with backoff: a refresh per period (0.5 s), not a tight loop.
    let metrics = running
        .wait_for("metadata retried", Duration::from_secs(20), |m| {
            m.sum("heartbeat_metadata_refresh_failures_total", &[]) >= 2.0
        })
        .await;
    let elapsed = started.elapsed().as_secs_f64();
    assert_eq!(metrics.sum("heartbeat_up", &[]), 0.0);
    let failures = metrics.sum("heartbeat_metadata_refresh_failures_total", &[]);
    assert!(
        failures <= elapsed / 0.5 + 2.0,
        "{failures} metadata failures in {elapsed:.1} s"
    );
    assert!(running.stop().await, "stops cleanly");

    // With the configuration right, the same cluster works.
    let running = Running::start(test_config(&mock.bootstrap_servers(), TOPIC, "")).await;
    running.wait_for_heartbeats(3.0).await;
    assert!(running.stop().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_slow_connections_hold_nothing_and_metrics_keeps_answering() {
    use std::io::{Read, Write};
    let _serial = serial().await;
    let mock = mock_cluster(1, TOPIC, 1);
    let running = Running::start(test_config(&mock.bootstrap_servers(), TOPIC, "")).await;
    running.wait_for_heartbeats(1.0).await;
    // 250 connections that never say a word, and 250 that stop half-way through their headers.
    let mut held = Vec::new();
    for index in 0..500 {
        let mut stream = std::net::TcpStream::connect(running.address).unwrap();
        if index % 2 == 1 {
            stream
                .write_all(b"GET /metrics HTTP/1.1\r\nHost: slow\r\n")
                .unwrap();
        }
        held.push(stream);
    }
    let started = Instant::now();
    let (status, body, _) = get(running.address, "/metrics").await;
    assert_eq!(status, 200);
    assert!(body.ends_with("# EOF\n"));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "/metrics waited behind idle connections for {:?}",
        started.elapsed()
    );
    // Past the header-read timeout, the server closes every one of them.
    let still_open = tokio::task::spawn_blocking(move || {
        // One deadline for all: a regression fails in 30 s, not 30 s per connection.
        let deadline = Instant::now() + Duration::from_secs(30);
        held.into_iter()
            .filter(|mut stream| {
                let left = deadline.saturating_duration_since(Instant::now());
                stream
                    .set_read_timeout(Some(left.max(Duration::from_millis(10))))
                    .unwrap();
                let mut buffer = [0u8; 256];
                loop {
                    match stream.read(&mut buffer) {
                        Ok(0) => return false,
                        Ok(_) => {}
                        Err(error) => {
                            return matches!(
                                error.kind(),
                                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                            )
                        }
                    }
                }
            })
            .count()
    })
    .await
    .unwrap();
    assert_eq!(
        still_open, 0,
        "connections left open past the header-read timeout"
    );
    assert!(running.stop().await);
}

/// The librdkafka threads of this process (each client's and the mock cluster's), by name.
fn kafka_threads() -> Vec<String> {
    let mut names = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        if let Ok(name) = std::fs::read_to_string(task.path().join("comm")) {
            if name.starts_with("rdk:") {
                names.push(name.trim().to_string());
            }
        }
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_waiting_for_a_coordinator_holds_nothing_once_stopped() {
    let _serial = serial().await;
    let before = kafka_threads();
    let mock = mock_cluster(3, TOPIC, 3);
    // A consumer closing gives a commit that waits for a coordinator this long (librdkafka's
    // rule), shorter here than its 45 s default.
    let ini = test_ini(
        &mock.bootstrap_servers(),
        TOPIC,
        "probe.commit.period.seconds = 1",
    )
    .replace("[consumer]\n", "[consumer]\nsession.timeout.ms = 6000\n");
    let config = cc_heartbeat::config::Config::from_ini(
        &ini,
        std::path::Path::new("test.ini"),
        std::iter::empty(),
    )
    .unwrap();
    let running = Running::start(config).await;
    running
        .wait_for("a commit", Duration::from_secs(20), |m| {
            m.sum("heartbeat_offset_commits_total", &[]) >= 1.0
        })
        .await;
    // The cluster gone for good.
    drop(mock);
    // No coordinator to answer: a commit waits, and is counted as timed out.
    running
        .wait_for("a commit timed out", Duration::from_secs(20), |m| {
            m.sum(
                "heartbeat_offset_commit_failures_total",
                &[("reason", "timed_out")],
            ) >= 1.0
        })
        .await;
    assert!(running.stop().await);
    // Stopped, the exporter's clients go, threads and all, once the commit still waiting for
    // the coordinator is given up with the session timeout. (A synchronous commit held a
    // thread, and the consumer, which could then never close: for as long as the cluster was
    // away, and for ever once it was gone.)
    let stopped = Instant::now();
    while kafka_threads().len() > before.len() {
        assert!(
            stopped.elapsed() < Duration::from_secs(6 + 10),
            "librdkafka threads left: {:?}, before the exporter: {before:?}",
            kafka_threads()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
