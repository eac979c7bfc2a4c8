//! cc-heartbeat: an end-to-end health-check exporter for Apache Kafka and Confluent Cloud.
//!
//! Independent tasks per cluster report what they observe to their cluster's recorder, which
//! keeps the metrics the HTTP server exposes as OpenMetrics and everything else a reader asks.
//!
//! # Layout
//!
//! One line per module, each with one job. A module uses only those listed below it.
//!
//! - [`reload`]: the configuration read again on SIGHUP or a changed credentials file, its
//!   credentials given to the running clients;
//! - [`app`]: every cluster's monitor and the HTTP server, started and stopped together;
//! - [`bundle`]: `cc-heartbeat bundle`: a support bundle, secrets masked, names hashed on
//!   request;
//! - [`check`]: `cc-heartbeat check`: every check of a cluster once, with what to fix;
//! - `monitor`: one cluster: its clients and its tasks;
//! - [`demo`]: the embedded cluster of demo mode, and its HTTP control;
//! - [`http`]: `/metrics`, `/healthz`, `/ready`, the status page and `/api/status`, and the
//!   health-check client;
//! - `tasks`: one folder per task of a cluster, each given what it uses (its settings, the
//!   recorder, its clients): `metadata`, `connectivity` (the per-broker DNS, TCP and TLS
//!   check), `heartbeat` (producer, consumer, commit and transaction probes), `topic`, `scan`
//!   (cluster overview, consumer groups, lag), `schema_registry`, `oauth` (sign-in), `mirror`
//!   (a replica's reader of its source's heartbeats);
//! - `shared`: what one generation of a cluster's tasks is started with, and what the
//!   server, `check` and the bundle read of it;
//! - `recorder`: one record per cluster generation of what its tasks observed (typed
//!   observations): the only writer of its metric families (registered once), of what a
//!   person reads (status page, check, bundle), of readiness, of the rights refused, and of
//!   the log's spells;
//! - [`kafka`]: librdkafka plumbing: client settings and log routing, admin calls
//!   rust-rdkafka lacks, the client's statistics;
//! - `tracker`: which heartbeats are in flight and what became of each (read back, failed,
//!   lost, duplicated, late), for the end-to-end consumer and a replica's mirror reader;
//! - `message`: the heartbeat payload: what the producer writes, and what a reader makes of
//!   what it reads;
//! - [`cluster`]: what metadata said of a cluster, and its place in replication pipelines;
//! - `metrics`: the per-cluster set of metric families, shared label and latency types,
//!   encoding; it knows no task;
//! - [`logging`]: log set-up and the throttle for repeated messages;
//! - [`config`]: the INI file and environment, validated, each key declared once;
//! - [`output`]: what the command line prints, ending quietly on a closed pipe;
//! - `outbound`: the HTTP client of the services outside Kafka (Schema Registry, identity
//!   provider): its TLS trust, its transport failures told apart;
//! - [`clock`] and `sync`: Unix time, and locks that survive a panicking holder.

pub mod reload;

pub mod app;
pub mod bundle;
pub mod check;
mod monitor;

pub mod demo;
pub mod http;

mod tasks;

mod shared;

mod recorder;

pub mod kafka;

mod tracker;

mod message;

pub mod cluster;

mod metrics;

pub mod logging;

pub mod config;

pub mod output;

mod outbound;

pub mod clock;
mod sync;

/// The heartbeat payload, for tools and tests that write or read the heartbeat topic.
pub use message::HeartbeatMessage;

#[doc(hidden)]
pub use message::{decode, Decoded};
/// The readers of outside input, for the fuzz targets (`fuzz/`): the heartbeat topic's payload
/// decoder, and the merge of the clusters' expositions.
#[doc(hidden)]
pub use metrics::merge_families;
