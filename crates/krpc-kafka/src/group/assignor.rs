//! Partition assignors the group leader runs: `range` and `roundrobin`, with the semantics of
//! the Java client's assignors of those names (members sorted by member id).

use std::collections::{BTreeMap, HashMap};

use super::payload::{Assignment, Subscription};

/// A partition assignment strategy, named in the JoinGroup protocols.
///
/// In a config file (feature `serde`): its protocol name, `range` or `roundrobin` (as Java's
/// `partition.assignment.strategy` lists them, by class there).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "lowercase")
)]
pub enum Assignor {
    /// Per topic, contiguous ranges of partitions to members in member-id order.
    Range,
    /// All subscribed partitions dealt to members in turn.
    RoundRobin,
}

impl Assignor {
    /// The protocol name every Kafka client uses for this strategy.
    pub fn name(self) -> &'static str {
        match self {
            Assignor::Range => "range",
            Assignor::RoundRobin => "roundrobin",
        }
    }

    /// The assignor called `name`, if we have it.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "range" => Some(Assignor::Range),
            "roundrobin" => Some(Assignor::RoundRobin),
            _ => None,
        }
    }

    /// Assigns the partitions (`partition_counts` per topic) among `members`.
    /// Every member appears in the result, possibly with nothing.
    #[cfg_attr(feature = "unstable-internals", visibility::make(pub))]
    pub(crate) fn assign(
        self,
        members: &BTreeMap<String, Subscription>,
        partition_counts: &HashMap<String, i32>,
    ) -> BTreeMap<String, Assignment> {
        let mut out: BTreeMap<String, Assignment> = members
            .keys()
            .map(|m| (m.clone(), Assignment::new()))
            .collect();
        let mut topics: Vec<&String> = partition_counts.keys().collect();
        topics.sort();
        let subscribed =
            |member: &str, topic: &str| members[member].topics.iter().any(|t| t == topic);
        match self {
            Assignor::Range => {
                for topic in topics {
                    let consumers: Vec<&String> =
                        members.keys().filter(|m| subscribed(m, topic)).collect();
                    if consumers.is_empty() {
                        continue;
                    }
                    let n = partition_counts[topic].max(0) as usize;
                    let (per, extra) = (n / consumers.len(), n % consumers.len());
                    for (i, member) in consumers.iter().enumerate() {
                        let start = i * per + i.min(extra);
                        let len = per + usize::from(i < extra);
                        if len > 0 {
                            let parts = (start..start + len).map(|p| p as i32).collect();
                            out.get_mut(*member)
                                .expect("member")
                                .insert(topic.clone(), parts);
                        }
                    }
                }
            }
            Assignor::RoundRobin => {
                let all: Vec<&String> = members.keys().collect();
                let mut turn = 0usize;
                for topic in topics {
                    for p in 0..partition_counts[topic].max(0) {
                        // The next member in the circle that subscribes to this topic.
                        for _ in 0..all.len() {
                            let member = all[turn % all.len()];
                            turn += 1;
                            if subscribed(member, topic) {
                                out.get_mut(member)
                                    .expect("member")
                                    .entry(topic.clone())
                                    .or_default()
                                    .push(p);
                                break;
                            }
                        }
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(n: usize, topics: &[&str]) -> BTreeMap<String, Subscription> {
        (0..n)
            .map(|i| {
                (
                    format!("m{i}"),
                    Subscription {
                        topics: topics.iter().map(|t| t.to_string()).collect(),
                        user_data: None,
                    },
                )
            })
            .collect()
    }

    fn check_cover(result: &BTreeMap<String, Assignment>, counts: &HashMap<String, i32>) {
        let mut seen = std::collections::HashSet::new();
        for a in result.values() {
            for (t, ps) in a {
                for p in ps {
                    assert!(seen.insert((t.clone(), *p)), "{t}/{p} assigned twice");
                }
            }
        }
        let total: i32 = counts.values().sum();
        assert_eq!(seen.len() as i32, total, "every partition assigned");
    }

    #[test]
    fn range_matches_the_java_layout() {
        let counts = HashMap::from([("t".to_string(), 7)]);
        let r = Assignor::Range.assign(&members(3, &["t"]), &counts);
        assert_eq!(r["m0"]["t"], vec![0, 1, 2]);
        assert_eq!(r["m1"]["t"], vec![3, 4]);
        assert_eq!(r["m2"]["t"], vec![5, 6]);
        check_cover(&r, &counts);
    }

    #[test]
    fn roundrobin_deals_in_turn_and_both_cover_everything() {
        let counts = HashMap::from([("a".to_string(), 6), ("b".to_string(), 5)]);
        let r = Assignor::RoundRobin.assign(&members(3, &["a", "b"]), &counts);
        assert_eq!(r["m0"]["a"], vec![0, 3]);
        assert_eq!(r["m1"]["a"], vec![1, 4]);
        check_cover(&r, &counts);
        for n in 1..8 {
            check_cover(
                &Assignor::Range.assign(&members(n, &["a", "b"]), &counts),
                &counts,
            );
            check_cover(
                &Assignor::RoundRobin.assign(&members(n, &["a", "b"]), &counts),
                &counts,
            );
        }
    }

    #[test]
    fn members_get_only_topics_they_subscribe_to() {
        let mut m = members(1, &["a"]);
        m.insert(
            "z".into(),
            Subscription {
                topics: vec!["b".into()],
                user_data: None,
            },
        );
        let counts = HashMap::from([("a".to_string(), 2), ("b".to_string(), 2)]);
        for assignor in [Assignor::Range, Assignor::RoundRobin] {
            let r = assignor.assign(&m, &counts);
            assert_eq!(r["m0"].keys().collect::<Vec<_>>(), vec!["a"]);
            assert_eq!(r["z"].keys().collect::<Vec<_>>(), vec!["b"]);
        }
    }
}
