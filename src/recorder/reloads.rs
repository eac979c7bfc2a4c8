//! Configuration reloads, counted by outcome: one count per cluster that lives across its
//! generations (a fresh start of the tasks does not forget the reloads before it).

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use crate::metrics::Families;
use crate::recorder::stores::Stores;

/// A configuration reload reached the cluster: `applied` (new credentials went to the
/// running clients), `unchanged`, or `failed` (refused; the running configuration stays).
#[derive(Debug)]
pub(crate) struct ConfigReloaded(pub(crate) &'static str);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

/// `heartbeat_config_reloads_total{outcome}`, kept by the cluster's monitor for each
/// generation's record.
#[derive(Debug)]
pub(crate) struct Reloads {
    reloads: Family<OutcomeLabels, Counter>,
}

impl Reloads {
    const OUTCOMES: [&'static str; 3] = ["applied", "unchanged", "failed"];

    /// Every outcome at zero.
    pub(crate) fn new() -> Arc<Self> {
        let reloads = Reloads {
            reloads: Family::default(),
        };
        for outcome in Self::OUTCOMES {
            drop(reloads.reloads.get_or_create(&OutcomeLabels { outcome }));
        }
        Arc::new(reloads)
    }

    pub(super) fn reloaded(&self, _stores: &Stores<'_>, reloaded: ConfigReloaded) {
        self.reloads
            .get_or_create(&OutcomeLabels {
                outcome: reloaded.0,
            })
            .inc();
    }
}

impl Families for Reloads {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "config_reloads",
            "Configuration reloads (SIGHUP, or a changed credentials file), by outcome: new credentials applied to the running clients, nothing to apply, or refused (the running configuration stays)",
            self.reloads.clone(),
        );
    }
}
