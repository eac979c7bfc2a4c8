//! The tasks that monitor one cluster, a folder each. Every task is a struct with `new` (which
//! creates its clients and its metric families, at zero where they count) and
//! `async fn run(self, cancel)`; it owns its loop, its state and its series, and forgets its
//! own series when a broker or partition goes. Tasks share only what [`crate::cluster`] holds.
//!
//! - [`metadata`]: the cluster's id, controller, brokers and the heartbeat topic's leaders,
//!   published for the others; every change counted;
//! - [`connectivity`]: a timed DNS, TCP and TLS check of every broker;
//! - [`heartbeat`]: one message per period to every partition, read back: loss and latency;
//! - [`topic`]: keeps the heartbeat topic in shape;
//! - [`scan`]: the whole cluster's topics and partitions, consumer groups and their lag;
//! - [`schema_registry`]: with a `[schema_registry]` section, a write and read probe of it;
//! - [`mirror`]: on a replica (`mirror.of`), its source's heartbeats read where the
//!   replication pipeline writes them;
//! - [`oauth`]: with OAuth sign-in, the clients' token from the identity provider, refreshed.

pub(crate) mod connectivity;
pub(crate) mod heartbeat;
pub(crate) mod metadata;
pub(crate) mod mirror;
pub(crate) mod oauth;
pub(crate) mod scan;
pub(crate) mod schema_registry;
pub(crate) mod topic;
