//! Any bytes on the heartbeat topic: decoding never panics, and what it takes for a heartbeat
//! is one (written again, it reads back the same).
#![no_main]

use cc_heartbeat::{decode, Decoded};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Decoded::Heartbeat(message) = decode(Some(data)) else {
        return;
    };
    let Decoded::Heartbeat(again) = decode(Some(&message.encode())) else {
        panic!("a decoded heartbeat, written again, is no longer one: {message:?}");
    };
    // `timestamp`, the Python tool's field, is not read for anything; serde_json's float
    // parsing may round a long literal differently the second time, by an ulp.
    let close = again.timestamp == message.timestamp
        || (again.timestamp - message.timestamp).abs() <= message.timestamp.abs() * 1e-15;
    assert!(close, "{message:?} became {again:?}");
    assert_eq!(
        (
            again.cc_heartbeat,
            &again.instance,
            again.partition,
            again.sequence,
            again.sent_at_us
        ),
        (
            message.cc_heartbeat,
            &message.instance,
            message.partition,
            message.sequence,
            message.sent_at_us
        ),
    );
});
