//! Where a reader that starts at the end of partitions starts: their log end offsets, asked
//! in one request.

use std::time::Duration;

use rdkafka::consumer::{Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

/// A partition and its log end offset, or why it could not be read.
pub(crate) type EndOffset = (i32, Result<i64, KafkaError>);

/// The log end offset of each partition, asked in one request (a timestamp of "end" means
/// latest). Blocking.
pub(crate) fn end_offsets<C: ConsumerContext + 'static>(
    consumer: &StreamConsumer<C>,
    topic: &str,
    partitions: &[i32],
    timeout: Duration,
) -> Result<Vec<EndOffset>, KafkaError> {
    let mut request = TopicPartitionList::new();
    for partition in partitions {
        request.add_partition_offset(topic, *partition, Offset::End)?;
    }
    let answer = consumer.offsets_for_times(request, timeout)?;
    Ok(answer
        .elements()
        .iter()
        .map(|element| {
            let end = element.error().and_then(|()| match element.offset() {
                Offset::Offset(offset) => Ok(offset),
                other => Err(KafkaError::OffsetFetch(RDKafkaErrorCode::InvalidArgument))
                    .inspect_err(|_| {
                        tracing::debug!(
                            partition = element.partition(),
                            "unexpected end offset {other:?}"
                        )
                    }),
            });
            (element.partition(), end)
        })
        .collect())
}
