//! ApiVersions negotiation: for each API, the highest version both sides support.

use kafka_protocol::messages::{ApiKey, ApiVersionsResponse};
use kafka_protocol::protocol::Request;

use crate::error::{Error, Result};

/// The highest API key the version table keeps (Kafka's keys reach about 90 in 4.x; a broker
/// that announced a key above this would be announcing one no request of this crate has).
pub const MAX_API_KEY: usize = 1024;

/// Highest version this crate uses for an API, below the `kafka-protocol` maximum where a
/// gotcha applies: Produce and Fetch v13+ address topics by id only (KAFKA-NOTES).
pub fn our_max<R: Request>() -> i16 {
    let crate_max = R::VERSIONS.max;
    match ApiKey::try_from(R::KEY) {
        Ok(ApiKey::Produce) | Ok(ApiKey::Fetch) => crate_max.min(12),
        _ => crate_max,
    }
}

/// The versions a broker announced, per API key.
#[derive(Debug, Clone, Default)]
pub struct VersionTable {
    /// Indexed by API key (they are small and dense: 0 to about 90 today); `None` for a key
    /// the broker did not announce. Looked up on every request: an index, not a hash.
    ranges: Vec<Option<(i16, i16)>>,
}

impl VersionTable {
    /// Builds the table from an ApiVersions response. A key outside 0..=[`MAX_API_KEY`] (none
    /// is assigned) is left out: no request of this crate can use it.
    pub fn from_response(resp: &ApiVersionsResponse) -> Self {
        let mut ranges = Vec::new();
        for k in &resp.api_keys {
            let Ok(i) = usize::try_from(k.api_key) else {
                continue;
            };
            if i > MAX_API_KEY {
                continue;
            }
            if ranges.len() <= i {
                ranges.resize(i + 1, None);
            }
            ranges[i] = Some((k.min_version, k.max_version));
        }
        Self { ranges }
    }

    /// The version to use for request type `R` with this broker.
    pub fn pick<R: Request>(&self, broker: &str) -> Result<i16> {
        let ours_min = R::VERSIONS.min;
        let ours_max = our_max::<R>();
        let api = crate::messages::api_key::<R>();
        let announced = usize::try_from(R::KEY)
            .ok()
            .and_then(|i| self.ranges.get(i).copied().flatten());
        let Some((broker_min, broker_max)) = announced else {
            return Err(Error::NoVersionMatch {
                broker: broker.to_string(),
                api: crate::ApiKey::of(api),
                broker_min: -1,
                broker_max: -1,
                ours_min,
                ours_max,
            });
        };
        let v = broker_max.min(ours_max);
        if v < broker_min.max(ours_min) {
            return Err(Error::NoVersionMatch {
                broker: broker.to_string(),
                api: crate::ApiKey::of(api),
                broker_min,
                broker_max,
                ours_min,
                ours_max,
            });
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::api_versions_response::ApiVersion;
    use kafka_protocol::messages::{FetchRequest, MetadataRequest, ProduceRequest};

    fn table(entries: &[(ApiKey, i16, i16)]) -> VersionTable {
        let resp = ApiVersionsResponse::default().with_api_keys(
            entries
                .iter()
                .map(|(k, lo, hi)| {
                    ApiVersion::default()
                        .with_api_key(*k as i16)
                        .with_min_version(*lo)
                        .with_max_version(*hi)
                })
                .collect(),
        );
        VersionTable::from_response(&resp)
    }

    #[test]
    fn picks_highest_common_version_and_caps_produce_and_fetch() {
        let t = table(&[
            (ApiKey::Produce, 0, 13),
            (ApiKey::Fetch, 4, 17),
            (ApiKey::Metadata, 0, 5),
        ]);
        assert_eq!(t.pick::<ProduceRequest>("b").unwrap(), 12);
        assert_eq!(t.pick::<FetchRequest>("b").unwrap(), 12);
        assert_eq!(t.pick::<MetadataRequest>("b").unwrap(), 5);
    }

    #[test]
    fn no_overlap_or_missing_api_is_a_typed_error() {
        let t = table(&[(ApiKey::Metadata, 100, 200)]);
        assert!(matches!(
            t.pick::<MetadataRequest>("b"),
            Err(Error::NoVersionMatch {
                broker_min: 100,
                ..
            })
        ));
        assert!(matches!(
            t.pick::<FetchRequest>("b"),
            Err(Error::NoVersionMatch { broker_min: -1, .. })
        ));
    }
}
