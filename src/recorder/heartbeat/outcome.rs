//! What can become of a heartbeat, as the heartbeat series label it: why the producer could
//! not deliver one (the `reason` of `heartbeat_produce_failures_total`), and why a record read
//! from the topic was not measured (the `kind` of `heartbeat_messages_skipped_total`). The
//! heartbeat's tasks tell them apart; a new one is a new variant here.

/// Why a heartbeat was not delivered; the `reason` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProduceFailure {
    /// No acknowledgement within `message.timeout.ms`, or a request timed out.
    TimedOut,
    /// librdkafka's queue is full (the cluster has not taken what was sent).
    QueueFull,
    /// The account may not write to the topic (an ACL).
    AuthorizationFailed,
    /// The partition (or topic) is unknown to the broker or the client.
    UnknownPartition,
    /// The broker written to does not lead the partition (an election is under way).
    NotLeader,
    /// Fewer replicas are in sync than the topic's `min.insync.replicas`: the leader refuses
    /// `acks=all` writes (before appending them, or after, which the producer retries too).
    NotEnoughReplicas,
    /// The broker refused it for another reason.
    Rejected,
    /// The client failed for another reason.
    Other,
}

impl ProduceFailure {
    /// Every reason; each partition's series start at zero with all of them, so `rate()` and
    /// `increase()` see the first failure of any kind.
    pub(crate) const ALL: [ProduceFailure; 8] = [
        ProduceFailure::TimedOut,
        ProduceFailure::QueueFull,
        ProduceFailure::AuthorizationFailed,
        ProduceFailure::UnknownPartition,
        ProduceFailure::NotLeader,
        ProduceFailure::NotEnoughReplicas,
        ProduceFailure::Rejected,
        ProduceFailure::Other,
    ];

    /// What the status page, `/ready` and `check` say of it: the label, explained where the
    /// label alone would leave an on-call engineer guessing.
    pub(crate) fn why(self) -> &'static str {
        match self {
            ProduceFailure::NotEnoughReplicas => {
                "not_enough_replicas (fewer replicas in sync than the topic's min.insync.replicas: the leader refuses acks=all writes)"
            }
            other => other.as_str(),
        }
    }

    /// The `reason` label.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ProduceFailure::TimedOut => "timed_out",
            ProduceFailure::QueueFull => "queue_full",
            ProduceFailure::AuthorizationFailed => "authorization_failed",
            ProduceFailure::UnknownPartition => "unknown_partition",
            ProduceFailure::NotLeader => "not_leader",
            ProduceFailure::NotEnoughReplicas => "not_enough_replicas",
            ProduceFailure::Rejected => "rejected",
            ProduceFailure::Other => "other",
        }
    }
}

/// Why a record on the heartbeat topic was not measured; the `kind` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SkipKind {
    /// A heartbeat of another running cc-heartbeat instance.
    OtherInstance,
    /// A heartbeat sent before this process started (an earlier run).
    Stale,
    /// The original Python tool's `{"timestamp": …}` payload.
    Legacy,
    /// No value.
    Empty,
    /// JSON of another shape.
    OtherJson,
    /// Not JSON.
    Undecodable,
    /// One of ours, read after it had been counted lost or failed.
    Late,
    /// One of ours with a sequence number we have no record of.
    UnknownSequence,
    /// One of ours found on a partition other than the one it was sent to.
    Misplaced,
}

impl SkipKind {
    pub(crate) const ALL: [SkipKind; 9] = [
        SkipKind::OtherInstance,
        SkipKind::Stale,
        SkipKind::Legacy,
        SkipKind::Empty,
        SkipKind::OtherJson,
        SkipKind::Undecodable,
        SkipKind::Late,
        SkipKind::UnknownSequence,
        SkipKind::Misplaced,
    ];

    /// The `kind` label.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            SkipKind::OtherInstance => "other_instance",
            SkipKind::Stale => "stale",
            SkipKind::Legacy => "legacy",
            SkipKind::Empty => "empty",
            SkipKind::OtherJson => "other_json",
            SkipKind::Undecodable => "undecodable",
            SkipKind::Late => "late",
            SkipKind::UnknownSequence => "unknown_sequence",
            SkipKind::Misplaced => "misplaced",
        }
    }
}
