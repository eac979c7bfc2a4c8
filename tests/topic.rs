//! Heartbeat topic management against tansu, a broker that really serves CreateTopics.

mod support;

use std::time::Duration;

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creates_the_missing_topic_and_starts_beating() {
    let tansu = Tansu::start();
    let running =
        Running::start(test_config(&tansu.bootstrap, "created-by-cc-heartbeat", "")).await;
    let metrics = running
        .wait_for(
            "topic created and heartbeats measured",
            Duration::from_secs(30),
            |m| m.sum("heartbeat_messages_consumed_total", &[]) >= 3.0,
        )
        .await;
    assert_eq!(
        metrics.sum("heartbeat_topic_partitions", &[]),
        1.0,
        "one partition per broker"
    );
    assert_eq!(metrics.sum("heartbeat_topic_ok", &[]), 1.0);
    assert_eq!(metrics.sum("heartbeat_messages_lost_total", &[]), 0.0);
    let (status, body, _) = get(running.address, "/ready").await;
    assert_eq!(status, 200, "{body}");
    assert!(running.stop().await);

    // Created with a 24-hour retention, as the broker itself reports.
    use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
    use rdkafka::client::DefaultClientContext;
    let client: AdminClient<DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &tansu.bootstrap)
        .create()
        .unwrap();
    let described = client
        .describe_configs(
            [&ResourceSpecifier::Topic("created-by-cc-heartbeat")],
            &AdminOptions::new().request_timeout(Some(Duration::from_secs(10))),
        )
        .await
        .unwrap();
    let resource = described
        .into_iter()
        .next()
        .unwrap()
        .expect("topic configs");
    let retention = resource
        .get("retention.ms")
        .and_then(|entry| entry.value.clone());
    assert_eq!(retention.as_deref(), Some("86400000"), "{resource:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_management_a_missing_topic_is_never_created() {
    let tansu = Tansu::start();
    let running = Running::start(test_config(
        &tansu.bootstrap,
        "must-not-be-created",
        "heartbeat.topic.manage = false",
    ))
    .await;
    running
        .wait_for("cluster reached", Duration::from_secs(20), |m| {
            m.sum("heartbeat_up", &[]) == 1.0
        })
        .await;
    running
        .wait_for_ready(
            "said the topic is missing",
            Duration::from_secs(20),
            |status, body| {
                status == 503
                    && (body.contains("must-not-be-created does not exist")
                        || body.contains("`must-not-be-created` does not exist"))
            },
        )
        .await;
    // Metadata read again and again since (2 s of refreshes at 0.5 s): still no topic.
    let refreshed = |m: &Metrics| m.sum("heartbeat_metadata_last_refresh_timestamp_seconds", &[]);
    let missing = running.metrics().await;
    let metrics = running
        .wait_for("metadata refreshed since", Duration::from_secs(20), |m| {
            refreshed(m) >= refreshed(&missing) + 2.0
        })
        .await;
    assert_eq!(
        metrics.sum("heartbeat_topic_partitions", &[]),
        0.0,
        "{}",
        metrics.text
    );
    assert_eq!(metrics.sum("heartbeat_messages_produced_total", &[]), 0.0);
    let (status, _, _) = get(running.address, "/ready").await;
    assert_eq!(status, 503);
    assert!(running.stop().await);
}

#[test]
fn describe_cluster_reports_brokers_where_served_and_fails_cleanly_where_not() {
    use cc_heartbeat::kafka::native_admin::describe_cluster;
    use rdkafka::admin::AdminClient;
    use rdkafka::client::DefaultClientContext;

    let tansu = Tansu::start();
    let client: AdminClient<DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &tansu.bootstrap)
        .create()
        .unwrap();
    let description = describe_cluster(client.inner(), Duration::from_secs(10))
        .expect("tansu serves DescribeCluster");
    assert!(description.cluster_id.is_some(), "{description:?}");
    assert_eq!(description.nodes.len(), 1, "{description:?}");
    let port: u16 = tansu.bootstrap.rsplit(':').next().unwrap().parse().unwrap();
    assert_eq!(description.nodes[0].port, port);

    // The mock cluster does not serve it: a clear error within the timeout, no hang.
    let mock = mock_cluster(1, "cc-heartbeat", 1);
    let client: AdminClient<DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", mock.bootstrap_servers())
        .create()
        .unwrap();
    let start = std::time::Instant::now();
    let error = describe_cluster(client.inner(), Duration::from_secs(1)).unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(5), "{error}");
    assert!(error.to_string().contains("DescribeCluster"), "{error}");
}
