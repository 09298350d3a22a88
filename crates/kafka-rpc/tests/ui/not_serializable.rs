pub struct Opaque;

#[kafka_rpc::service]
pub trait Store {
    async fn put(&self, value: Opaque) -> u64;
}

fn main() {}
