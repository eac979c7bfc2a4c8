//! A replicator of the tests' own, as a replication pipeline's worker is (a consumer and a
//! producer): copies a topic of one cluster to the same partitions of a topic of another,
//! pauses, and re-sends, as MirrorMaker 2 does after a restart. For librdkafka's mock
//! clusters, which no real replication tool can read.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

/// Copies every record of `topic` on `from` to the same partition of `to_topic` on `to`,
/// from the end, while not paused; `resend` re-sends the last five copied of each partition.
pub struct Replicator {
    /// While set, nothing is copied: the source's records wait, unread.
    pub paused: Arc<AtomicBool>,
    /// Set, the last five copied of each partition are copied again, once.
    pub resend: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    /// How many records were copied.
    pub copied: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Replicator {
    /// Copies `partitions` partitions of `topic` on `from` to `to_topic` on `to`.
    pub fn start(from: &str, topic: &str, partitions: i32, to: &str, to_topic: &str) -> Replicator {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", from)
            .set("group.id", "test-replicator")
            .set("enable.auto.commit", "false")
            .set("fetch.wait.max.ms", "5")
            .create()
            .unwrap();
        let mut assignment = TopicPartitionList::new();
        for partition in 0..partitions {
            // The end as it is now, not `Offset::End`: librdkafka resolves that when it
            // first fetches, which under load came after the exporter's first heartbeats,
            // never copied, so counted lost. What is written once `start` returns is copied.
            let (_, end) = consumer
                .fetch_watermarks(topic, partition, Duration::from_secs(10))
                .unwrap();
            assignment
                .add_partition_offset(topic, partition, Offset::Offset(end))
                .unwrap();
        }
        consumer.assign(&assignment).unwrap();
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", to)
            .set("linger.ms", "0")
            .create()
            .unwrap();
        let (paused, resend, stop, copied) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicUsize::new(0)),
        );
        let to_topic = to_topic.to_string();
        let thread = std::thread::spawn({
            let (paused, resend, stop, copied) =
                (paused.clone(), resend.clone(), stop.clone(), copied.clone());
            move || {
                let recent: Mutex<BTreeMap<i32, Vec<Vec<u8>>>> = Mutex::default();
                while !stop.load(Ordering::SeqCst) {
                    producer.poll(Duration::ZERO);
                    if resend.swap(false, Ordering::SeqCst) {
                        for (partition, payloads) in recent.lock().unwrap().iter() {
                            for payload in payloads {
                                let record: BaseRecord<'_, (), [u8]> = BaseRecord::to(&to_topic)
                                    .partition(*partition)
                                    .payload(payload);
                                let _ = producer.send(record);
                            }
                        }
                    }
                    if paused.load(Ordering::SeqCst) {
                        // The pipeline is down: the source's records wait, unread.
                        std::thread::sleep(Duration::from_millis(20));
                        continue;
                    }
                    let Some(Ok(message)) = consumer.poll(Duration::from_millis(50)) else {
                        continue;
                    };
                    let payload = message.payload().unwrap_or_default().to_vec();
                    let partition = message.partition();
                    let record: BaseRecord<'_, (), [u8]> = BaseRecord::to(&to_topic)
                        .partition(partition)
                        .payload(&payload);
                    if producer.send(record).is_ok() {
                        copied.fetch_add(1, Ordering::SeqCst);
                        let mut recent = recent.lock().unwrap();
                        let kept = recent.entry(partition).or_default();
                        kept.push(payload);
                        if kept.len() > 5 {
                            kept.remove(0);
                        }
                    }
                }
                let _ = producer.flush(Duration::from_secs(1));
            }
        });
        Replicator {
            paused,
            resend,
            stop,
            copied,
            thread: Some(thread),
        }
    }
}

impl Drop for Replicator {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
