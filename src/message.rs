//! The heartbeat payload: what the producer writes, and what the consumer makes of what it reads.
//!
//! A heartbeat is a small JSON object, so that anyone reading the topic with a console consumer
//! can tell what it is:
//! `{"cc_heartbeat":1,"instance":"…","partition":3,"sequence":42,"sent_at_us":…,"timestamp":…}`
//! (the transaction probe's add `"transactional":true`).
//! `timestamp` (float seconds) is the original Python tool's field, kept so its readers still
//! understand our messages. Latency is never computed from these wall-clock fields: the
//! producing instance keeps the monotonic send time of each message it has in flight.

use serde::{Deserialize, Serialize};

/// Version of the payload format, in the `cc_heartbeat` field.
pub const FORMAT_VERSION: u32 = 1;

/// One heartbeat as written to the topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeartbeatMessage {
    /// Format version; its presence marks the object as a cc-heartbeat message.
    pub cc_heartbeat: u32,
    /// Id of the running instance that produced it (new at every start).
    pub instance: String,
    /// Partition it was produced to.
    pub partition: i32,
    /// Per-partition sequence number within the instance, from 0.
    pub sequence: u64,
    /// Wall-clock send time, microseconds since the Unix epoch.
    pub sent_at_us: i64,
    /// Wall-clock send time in seconds, the original Python tool's field.
    pub timestamp: f64,
    /// Sent in a transaction by the transaction probe (its own sequence); absent otherwise.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub transactional: bool,
}

impl HeartbeatMessage {
    /// A message of this instance for `partition`, sent at `sent_at_us`.
    pub fn new(instance: &str, partition: i32, sequence: u64, sent_at_us: i64) -> Self {
        HeartbeatMessage {
            cc_heartbeat: FORMAT_VERSION,
            instance: instance.to_string(),
            partition,
            sequence,
            sent_at_us,
            timestamp: sent_at_us as f64 / 1e6,
            transactional: false,
        }
    }

    /// The bytes written to Kafka.
    pub fn encode(&self) -> Vec<u8> {
        // Serializing a struct of strings and numbers cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// What a record read from the heartbeat topic turned out to be.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    /// A cc-heartbeat message (of this or another instance).
    Heartbeat(HeartbeatMessage),
    /// The original Python tool's payload, `{"timestamp": <seconds>}`.
    Legacy,
    /// No value, or an empty one.
    Empty,
    /// Valid JSON of another shape.
    OtherJson,
    /// Not JSON at all (or not UTF-8).
    Undecodable,
}

/// Classifies a record value. Never panics, whatever the bytes.
pub fn decode(payload: Option<&[u8]>) -> Decoded {
    let Some(bytes) = payload.filter(|bytes| !bytes.is_empty()) else {
        return Decoded::Empty;
    };
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(bytes) else {
        return Decoded::Undecodable;
    };
    let Some(object) = value.as_object() else {
        return Decoded::OtherJson;
    };
    if object.contains_key("cc_heartbeat") {
        return match serde_json::from_value::<HeartbeatMessage>(value) {
            Ok(message) => Decoded::Heartbeat(message),
            Err(_) => Decoded::OtherJson,
        };
    }
    if object.len() == 1 && object.get("timestamp").is_some_and(|t| t.is_number()) {
        return Decoded::Legacy;
    }
    Decoded::OtherJson
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip() {
        let message = HeartbeatMessage::new("abc", 7, 42, 1_700_000_000_123_456);
        assert_eq!(
            decode(Some(&message.encode())),
            Decoded::Heartbeat(message.clone())
        );
        let json: serde_json::Value = serde_json::from_slice(&message.encode()).unwrap();
        assert_eq!(json["timestamp"].as_f64().unwrap(), 1_700_000_000.123456);
    }

    #[test]
    fn classifies_foreign_payloads() {
        assert_eq!(decode(None), Decoded::Empty);
        assert_eq!(decode(Some(b"")), Decoded::Empty);
        assert_eq!(decode(Some(b"\xff\x00garbage")), Decoded::Undecodable);
        assert_eq!(decode(Some(b"hello")), Decoded::Undecodable);
        assert_eq!(
            decode(Some(br#"{"timestamp": 1700000000.5}"#)),
            Decoded::Legacy
        );
        assert_eq!(decode(Some(br#"{"timestamp": "x"}"#)), Decoded::OtherJson);
        assert_eq!(decode(Some(br#"[1,2,3]"#)), Decoded::OtherJson);
        assert_eq!(decode(Some(br#"{"order": 12}"#)), Decoded::OtherJson);
        // Our marker but missing fields: another shape, not a heartbeat.
        assert_eq!(decode(Some(br#"{"cc_heartbeat": 1}"#)), Decoded::OtherJson);
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode(Some(&bytes));
        }

        #[test]
        fn decode_accepts_any_valid_heartbeat(
            instance in "[a-z0-9-]{0,40}",
            partition in 0i32..100_000,
            sequence in any::<u64>(),
            sent_at_us in 0i64..4_000_000_000_000_000,
        ) {
            let message = HeartbeatMessage::new(&instance, partition, sequence, sent_at_us);
            prop_assert_eq!(decode(Some(&message.encode())), Decoded::Heartbeat(message));
        }
    }
}
