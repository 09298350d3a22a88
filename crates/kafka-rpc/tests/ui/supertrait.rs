#[kafka_rpc::service]
pub trait Sum: Clone {
    async fn add(&self, a: i64, b: i64) -> i64;
}

fn main() {}
