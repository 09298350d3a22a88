//! Which offset each partition may commit: everything below the oldest request still in flight.
//! Requests of one partition run concurrently, so completion order is not offset order; only
//! the contiguous completed prefix is ever committed.

use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Per-partition bookkeeping of dispatched and completed requests.
#[derive(Debug, Default)]
pub struct Progress {
    partitions: BTreeMap<(String, i32), Partition>,
}

#[derive(Debug, Default)]
struct Partition {
    in_flight: BTreeSet<i64>,
    /// One past the highest offset dispatched.
    next: i64,
    /// The offset last committed.
    committed: i64,
}

impl Progress {
    /// A request at `offset` was dispatched (offsets arrive in order per partition).
    pub fn started(&mut self, topic: &str, partition: i32, offset: i64) {
        let p = self
            .partitions
            .entry((topic.to_string(), partition))
            .or_insert_with(|| Partition {
                in_flight: BTreeSet::new(),
                next: offset,
                committed: offset,
            });
        p.in_flight.insert(offset);
        p.next = p.next.max(offset + 1);
    }

    /// The request at `offset` is done (replied to, or answered by a status).
    pub fn finished(&mut self, topic: &str, partition: i32, offset: i64) {
        if let Some(p) = self.partitions.get_mut(&(topic.to_string(), partition)) {
            p.in_flight.remove(&offset);
        }
    }

    /// Requests still running in `partition` (or in all partitions for `None`).
    pub fn in_flight(&self, partition: Option<(&str, i32)>) -> usize {
        match partition {
            Some((t, p)) => self
                .partitions
                .get(&(t.to_string(), p))
                .map_or(0, |x| x.in_flight.len()),
            None => self.partitions.values().map(|x| x.in_flight.len()).sum(),
        }
    }

    /// The offsets to commit now (only partitions whose committable offset moved).
    pub fn to_commit(&self) -> HashMap<String, HashMap<i32, i64>> {
        let mut out: HashMap<String, HashMap<i32, i64>> = HashMap::new();
        for ((t, p), part) in &self.partitions {
            let upto = part.in_flight.first().copied().unwrap_or(part.next);
            if upto > part.committed {
                out.entry(t.clone()).or_default().insert(*p, upto);
            }
        }
        out
    }

    /// Records that `offsets` were committed.
    pub fn committed(&mut self, offsets: &HashMap<String, HashMap<i32, i64>>) {
        for (t, parts) in offsets {
            for (p, o) in parts {
                if let Some(part) = self.partitions.get_mut(&(t.clone(), *p)) {
                    part.committed = part.committed.max(*o);
                }
            }
        }
    }

    /// Forgets a partition that is no longer ours.
    pub fn forget(&mut self, topic: &str, partition: i32) {
        self.partitions.remove(&(topic.to_string(), partition));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_contiguous_completed_prefix_is_committed() {
        let mut p = Progress::default();
        for o in 10..15 {
            p.started("t", 0, o);
        }
        assert!(p.to_commit().is_empty(), "nothing finished yet");
        p.finished("t", 0, 12);
        p.finished("t", 0, 13);
        assert!(p.to_commit().is_empty(), "10 still runs");
        p.finished("t", 0, 10);
        assert_eq!(p.to_commit()["t"][&0], 11, "11 still runs");
        p.finished("t", 0, 11);
        assert_eq!(p.to_commit()["t"][&0], 14);
        p.finished("t", 0, 14);
        let c = p.to_commit();
        assert_eq!(c["t"][&0], 15);
        p.committed(&c);
        assert!(p.to_commit().is_empty(), "nothing new since the commit");
        assert_eq!(p.in_flight(None), 0);
    }
}
