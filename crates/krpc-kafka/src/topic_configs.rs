//! Reading a topic's configs (DescribeConfigs, API 32): what retention a topic was created
//! with, as `kafka-configs.sh --describe` and the Java `Admin::describeConfigs` show it.

use std::collections::BTreeMap;

use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::{ApiKey, DescribeConfigsRequest};
use kafka_protocol::protocol::StrBytes;

use crate::client::KafkaClient;
use crate::error::{check_code, Result};

/// The `resource_type` of a topic in DescribeConfigs (Java's `ConfigResource.Type.TOPIC`).
const TOPIC_RESOURCE: i8 = 2;

/// One config of a topic as the broker reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicConfigEntry {
    /// The value; `None` for a sensitive config or one without a value.
    pub value: Option<String>,
    /// Whether the value is the broker's default rather than set on the topic
    /// (its `config_source` is not 1, TOPIC_CONFIG).
    pub is_default: bool,
}

impl KafkaClient {
    /// Every config of `topic` (DescribeConfigs, any version the broker offers), by name. Sent to
    /// any broker, as the Java admin client does for topic resources.
    ///
    /// # Errors
    /// The broker's error for the topic (UNKNOWN_TOPIC_OR_PARTITION, ...) with the topic named.
    pub async fn describe_topic_configs(
        &self,
        topic: &str,
    ) -> Result<BTreeMap<String, TopicConfigEntry>> {
        let conn = self.any_connection().await?;
        let req = DescribeConfigsRequest::default().with_resources(vec![
            DescribeConfigsResource::default()
                .with_resource_type(TOPIC_RESOURCE)
                .with_resource_name(StrBytes::from_string(topic.to_string()))
                .with_configuration_keys(None),
        ]);
        let resp = conn.send(&req).await?;
        let mut out = BTreeMap::new();
        for result in &resp.results {
            check_code(
                result.error_code,
                conn.broker(),
                ApiKey::DescribeConfigs,
                || {
                    let msg = result
                        .error_message
                        .as_ref()
                        .map(|m| format!(": {}", m.as_str()));
                    format!(" topic {topic}{}", msg.unwrap_or_default())
                },
            )?;
            for c in &result.configs {
                // config_source 1 is TOPIC_CONFIG (KIP-226); the kafka-protocol schema this
                // crate decodes with starts at v1, where config_source exists.
                let is_default = c.config_source != 1;
                out.insert(
                    c.name.to_string(),
                    TopicConfigEntry {
                        value: c.value.as_ref().map(|v| v.to_string()),
                        is_default,
                    },
                );
            }
        }
        Ok(out)
    }
}
