#[kafka_rpc::service]
pub trait Sum {
    const LIMIT: i64;
    async fn add(&self, a: i64, b: i64) -> i64;
}

fn main() {}
