#[kafka_rpc::service(topic = "sum")]
pub trait Sum {
    async fn add(&self, a: i64, b: i64) -> i64;
}

fn main() {}
