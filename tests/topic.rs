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
    tokio::time::sleep(Duration::from_secs(2)).await;
    let metrics = running.metrics().await;
    assert_eq!(
        metrics.sum("heartbeat_topic_partitions", &[]),
        0.0,
        "{}",
        metrics.text
    );
    assert_eq!(metrics.sum("heartbeat_messages_produced_total", &[]), 0.0);
    let (status, body, _) = get(running.address, "/ready").await;
    assert_eq!(status, 503);
    assert!(
        body.contains("must-not-be-created does not exist")
            || body.contains("`must-not-be-created` does not exist"),
        "{body}"
    );
    assert!(running.stop().await);
}
