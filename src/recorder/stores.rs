//! What a part of the recorder writes besides its own series: the stores every reader asks.
//! Only the recorder holds them; each part is handed them with the observation it records.

use std::sync::Arc;

use tokio::sync::watch;

use crate::cluster::ClusterSnapshot;
use crate::recorder::observed::Observed;
use crate::recorder::status::Status;

/// The stores of one cluster's record.
pub(crate) struct Stores<'a> {
    /// The cluster's name, for the log.
    pub(crate) cluster: &'a str,
    pub(crate) status: &'a Status,
    pub(crate) observed: &'a Observed,
    pub(crate) view: &'a watch::Sender<Arc<ClusterSnapshot>>,
}

impl Stores<'_> {
    /// The latest metadata snapshot.
    pub(crate) fn snapshot(&self) -> Arc<ClusterSnapshot> {
        self.view.borrow().clone()
    }
}
