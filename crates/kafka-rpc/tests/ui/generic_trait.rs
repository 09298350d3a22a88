#[kafka_rpc::service]
pub trait Store<T> {
    async fn get(&self, key: String) -> u64;
}

fn main() {}
