//! cc-heartbeat: an end-to-end health-check exporter for Apache Kafka and Confluent Cloud.
//!
//! Independent tasks per cluster feed one set of metrics that the HTTP server exposes:
//! - [`metadata`]: refreshes cluster metadata and publishes the shared [`cluster`] view;
//! - [`connectivity`]: timed connections to every broker (TCP, and TLS via [`tls_check`]);
//! - [`producer`]: one heartbeat per partition per period, acknowledgement latency;
//! - [`consumer`]: reads heartbeats back, end-to-end latency, lost/duplicate/skipped;
//! - [`topic`]: keeps the heartbeat topic in shape;
//! - [`scan`]: a slow look at the whole cluster (topics, partitions, their health);
//! - [`http`]: `/metrics`, `/healthz`, `/ready`.
//!
//! Around them: [`config`] (the INI file and environment), [`client`] (librdkafka settings and
//! log routing), [`client_stats`] (librdkafka's statistics), [`native_admin`] (admin calls
//! rust-rdkafka lacks), [`message`] (the payload), [`tracker`] (what is in flight), [`metrics`]
//! (every metric), [`recent`] (exact windowed quantiles), [`monitor`] (one cluster's tasks),
//! [`app`] (everything together), [`demo`] (the embedded cluster) and [`logging`].

pub mod app;
pub mod client;
pub mod client_stats;
pub mod cluster;
pub mod config;
pub mod connectivity;
pub mod consumer;
pub mod demo;
pub mod http;
pub mod lag;
pub mod logging;
pub mod message;
pub mod metadata;
pub mod metrics;
pub mod monitor;
pub mod native_admin;
pub mod producer;
pub mod recent;
pub mod scan;
pub mod tls_check;
pub mod topic;
pub mod tracker;
