#[kafka_rpc::service]
pub trait Store {
    async fn put<T: serde::Serialize>(&self, value: T) -> u64;
}

fn main() {}
