//! Writing completion records, coalesced: per partition of the completions topic at most one
//! completion produce is in flight; the completions that finish while it is (other requests of
//! the same request partition) wait and go out together, as one coalesced record
//! ([`Completion::coalesce`]), when it returns. This is group commit: an idle server writes
//! each completion at once, alone, in the single layout; a busy one writes one record per
//! partition per produce round trip however many requests that round answered, so the broker
//! stores (and the dedup window later reads) one record where it stored dozens.
//!
//! A completion is still acknowledged before its request counts as done (commit after
//! completion, wire/WIRE.md section 8): the request task awaits the result of the record that
//! carries it. A failure fails every completion of that record, as it did one.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock};

use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use krpc_kafka::ProducerRecord;
use tokio::sync::{mpsc, oneshot};

use super::dispatch::Outbox;
use crate::envelope::Completion;

/// Largest coalesced record written, in bytes of entries: a round's completions beyond it go
/// in further records of the same produce. Far below Apache Kafka's default
/// `max.message.bytes` (1 MiB) and the producer's `max.request.size` (1 MiB), so a coalesced
/// record is never refused where its completions one by one would have been accepted.
pub const MAX_COALESCED_BYTES: usize = 256 * 1024;

type Done = oneshot::Sender<Result<(), krpc_kafka::Error>>;

struct Pending {
    partition: i32,
    record: ProducerRecord,
    done: Done,
}

/// The completion writer of one server (see the module docs).
pub(crate) struct CompletionWriter {
    outbox: Arc<dyn Outbox>,
    topic: Arc<str>,
    coalesce: bool,
    /// The writing task, started by the first completion (so the writer can be made outside
    /// a runtime); it ends when the writer is dropped and what it holds is written.
    queue: OnceLock<mpsc::UnboundedSender<Pending>>,
}

impl CompletionWriter {
    /// Writes to `topic` through `outbox`; `coalesce: false` writes every completion as a
    /// record of its own, at once (the layout every version-1 reader understands).
    pub fn new(outbox: Arc<dyn Outbox>, topic: &str, coalesce: bool) -> Self {
        Self {
            outbox,
            topic: topic.into(),
            coalesce,
            queue: OnceLock::new(),
        }
    }

    /// Writes `record` (a [`Completion::to_record`]) to `partition`; the future resolves once
    /// the record carrying it is acknowledged. The record is handed over now, so the future
    /// holds only the wait (a server answering thousands of calls holds thousands of them).
    pub fn write(
        &self,
        partition: i32,
        record: ProducerRecord,
    ) -> BoxFuture<'static, Result<(), krpc_kafka::Error>> {
        if !self.coalesce {
            return self.outbox.send(&self.topic, partition, record);
        }
        let queue = self.queue.get_or_init(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(run(self.outbox.clone(), self.topic.clone(), rx));
            tx
        });
        let (done, result) = oneshot::channel();
        let gone = || krpc_kafka::Error::Closed("the server's completion writer");
        let queued = queue.send(Pending {
            partition,
            record,
            done,
        });
        if queued.is_err() {
            return Box::pin(std::future::ready(Err(gone())));
        }
        Box::pin(async move { result.await.unwrap_or_else(|_| Err(gone())) })
    }
}

/// The writing task: starts a partition's next write when its previous one returns, with
/// everything that queued for it meanwhile.
async fn run(
    outbox: Arc<dyn Outbox>,
    topic: Arc<str>,
    mut incoming: mpsc::UnboundedReceiver<Pending>,
) {
    let mut waiting: HashMap<i32, Vec<Pending>> = HashMap::new();
    let mut busy: HashSet<i32> = HashSet::new();
    let mut writes: FuturesUnordered<BoxFuture<'static, i32>> = FuturesUnordered::new();
    let mut open = true;
    loop {
        tokio::select! {
            pending = incoming.recv(), if open => match pending {
                Some(p) if busy.contains(&p.partition) => {
                    waiting.entry(p.partition).or_default().push(p);
                }
                Some(p) => {
                    busy.insert(p.partition);
                    writes.push(write(outbox.clone(), topic.clone(), p.partition, vec![p]));
                }
                None => open = false,
            },
            Some(partition) = writes.next(), if !writes.is_empty() => {
                match waiting.remove(&partition) {
                    Some(next) => writes.push(write(outbox.clone(), topic.clone(), partition, next)),
                    None => {
                        busy.remove(&partition);
                    }
                }
            }
            else => break,
        }
    }
}

/// Writes `batch` (all of one partition) as coalesced records of at most
/// [`MAX_COALESCED_BYTES`] each, all sent at once, and tells each completion its record's
/// result. Resolves to the partition.
fn write(
    outbox: Arc<dyn Outbox>,
    topic: Arc<str>,
    partition: i32,
    batch: Vec<Pending>,
) -> BoxFuture<'static, i32> {
    Box::pin(async move {
        let mut records = Vec::new();
        let mut waiters: Vec<Vec<Done>> = Vec::new();
        let (mut chunk, mut chunk_done, mut bytes) = (Vec::new(), Vec::new(), 0);
        for p in batch {
            let size = Completion::entry_bytes(&p.record);
            if !chunk.is_empty() && bytes + size > MAX_COALESCED_BYTES {
                records.push(Completion::coalesce(std::mem::take(&mut chunk)));
                waiters.push(std::mem::take(&mut chunk_done));
                bytes = 0;
            }
            bytes += size;
            chunk.push(p.record);
            chunk_done.push(p.done);
        }
        records.push(Completion::coalesce(chunk));
        waiters.push(chunk_done);
        let sends = records
            .into_iter()
            .map(|record| outbox.send(&topic, partition, record));
        let results = futures::future::join_all(sends).await;
        for (result, waiters) in results.into_iter().zip(waiters) {
            for done in waiters {
                // A request task that went away (the server stopping) no longer waits.
                let _ = done.send(result.clone());
            }
        }
        partition
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use super::*;
    use crate::envelope::{Reply, RequestId};
    use crate::status::StatusCode;

    /// An outbox that holds every send until opened up to it, recording what it was given.
    struct Gate {
        sent: Mutex<Vec<(i32, ProducerRecord)>>,
        /// Sends with an index below this are answered.
        open: tokio::sync::watch::Sender<usize>,
        fail: bool,
    }

    impl Gate {
        fn new(fail: bool) -> Arc<Self> {
            Arc::new(Self {
                sent: Mutex::default(),
                open: tokio::sync::watch::channel(0).0,
                fail,
            })
        }

        fn open(&self, n: usize) {
            self.open.send_replace(n);
        }
    }

    impl Outbox for Arc<Gate> {
        fn send(
            &self,
            _topic: &str,
            partition: i32,
            record: ProducerRecord,
        ) -> BoxFuture<'static, Result<(), krpc_kafka::Error>> {
            let mut sent = self.sent.lock().unwrap();
            let index = sent.len();
            sent.push((partition, record));
            let (mut open, fail) = (self.open.subscribe(), self.fail);
            Box::pin(async move {
                let _ = open.wait_for(|n| *n > index).await;
                if fail {
                    Err(krpc_kafka::Error::InvalidArgument("refused".into()))
                } else {
                    Ok(())
                }
            })
        }
    }

    fn completion(id: u8) -> ProducerRecord {
        Completion {
            reply: Reply {
                id: RequestId([id; 16]),
                status: StatusCode::Ok,
                message: String::new(),
                server_id: "s".into(),
                handler_us: 1,
                queue_ms: 0,
                payload: vec![id; 8].into(),
                key_id: None,
            },
            reply_to: None,
            request_offset: Some(i64::from(id)),
        }
        .to_record()
    }

    async fn sent_count(gate: &Gate, n: usize) {
        tokio::time::timeout(Duration::from_secs(10), async {
            while gate.sent.lock().unwrap().len() < n {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the sends were made");
    }

    fn count(r: &ProducerRecord) -> usize {
        r.headers
            .iter()
            .find(|h| h.key == crate::envelope::COMPLETIONS)
            .map_or(1, |h| {
                u32::from_be_bytes(h.value.as_deref().unwrap().try_into().unwrap()) as usize
            })
    }

    /// A writer over `gate`, coalescing or not.
    fn writer(gate: &Arc<Gate>, coalesce: bool) -> Arc<CompletionWriter> {
        Arc::new(CompletionWriter::new(
            Arc::new(gate.clone()),
            "krpc.S.completed",
            coalesce,
        ))
    }

    /// Writes completion `id` to `partition` in a task of its own.
    fn spawn_write(
        writer: &Arc<CompletionWriter>,
        partition: i32,
        id: u8,
    ) -> tokio::task::JoinHandle<Result<(), krpc_kafka::Error>> {
        let w = writer.clone();
        tokio::spawn(async move { w.write(partition, completion(id)).await })
    }

    #[tokio::test]
    async fn completions_finishing_during_a_write_go_out_together_in_one_record() {
        let gate = Gate::new(false);
        let writer = writer(&gate, true);
        // The first completion of partition 0 goes out at once, alone.
        let first = spawn_write(&writer, 0, 0);
        sent_count(&gate, 1).await;
        // Five more of partition 0 and one of partition 1 while it is in flight: partition 1
        // does not wait for partition 0.
        let mut later = Vec::new();
        for id in 1..=5 {
            later.push(spawn_write(&writer, 0, id));
        }
        let other = spawn_write(&writer, 1, 9);
        sent_count(&gate, 2).await;
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
        assert_eq!(gate.sent.lock().unwrap().len(), 2, "partition 0 waits");
        // Answering the first write sends the five as one coalesced record.
        gate.open(2);
        first.await.unwrap().expect("first written");
        other.await.unwrap().expect("other written");
        sent_count(&gate, 3).await;
        gate.open(3);
        for l in later {
            l.await.unwrap().expect("written");
        }
        let sent = gate.sent.lock().unwrap();
        let counts: Vec<(i32, usize)> = sent.iter().map(|(p, r)| (*p, count(r))).collect();
        assert_eq!(counts, vec![(0, 1), (1, 1), (0, 5)]);
    }

    #[tokio::test]
    async fn a_failed_write_fails_every_completion_it_carried() {
        let gate = Gate::new(true);
        let writer = writer(&gate, true);
        let first = spawn_write(&writer, 0, 0);
        sent_count(&gate, 1).await;
        let mut later = Vec::new();
        for id in 1..=3 {
            later.push(spawn_write(&writer, 0, id));
        }
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
        gate.open(1);
        assert!(first.await.unwrap().is_err());
        sent_count(&gate, 2).await;
        assert_eq!(count(&gate.sent.lock().unwrap()[1].1), 3);
        gate.open(2);
        for l in later {
            assert!(
                l.await.unwrap().is_err(),
                "each completion hears the failure"
            );
        }
    }

    #[tokio::test]
    async fn without_coalescing_every_completion_is_its_own_record_at_once() {
        let gate = Gate::new(false);
        let writer = writer(&gate, false);
        let mut all = Vec::new();
        for id in 0..4 {
            all.push(spawn_write(&writer, 0, id));
        }
        sent_count(&gate, 4).await;
        gate.open(4);
        for a in all {
            a.await.unwrap().expect("written");
        }
        assert!(gate.sent.lock().unwrap().iter().all(|(_, r)| count(r) == 1));
    }

    #[tokio::test]
    async fn a_large_round_is_cut_into_records_under_the_size_limit() {
        let gate = Gate::new(false);
        let big = |id: u8| {
            let mut r = completion(id);
            r.value = Some(vec![id; 100 * 1024].into());
            let (done, _) = oneshot::channel();
            Pending {
                partition: 0,
                record: r,
                done,
            }
        };
        let outbox: Arc<dyn Outbox> = Arc::new(gate.clone());
        gate.open(3);
        write(outbox, "t".into(), 0, (0..5).map(big).collect()).await;
        let sent = gate.sent.lock().unwrap();
        let counts: Vec<usize> = sent.iter().map(|(_, r)| count(r)).collect();
        assert_eq!(counts, vec![2, 2, 1]);
        assert!(sent
            .iter()
            .all(|(_, r)| r.value.as_ref().unwrap().len() <= MAX_COALESCED_BYTES));
    }
}
