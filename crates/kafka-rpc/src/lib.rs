//! kafka-rpc: remote procedure calls over Apache Kafka (the RPC layer; it never builds a Kafka
//! frame itself, everything Kafka goes through `kafka-wire`).

pub use kafka_wire;
