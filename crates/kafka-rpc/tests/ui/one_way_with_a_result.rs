#[kafka_rpc::service]
pub trait Sum {
    async fn add(&self, a: i64, b: i64) -> i64;
}

async fn send(client: SumClient) {
    // Only methods returning `()` can be sent one-way: a result would be lost.
    let _ = client.add(1, 2).one_way().await;
}

fn main() {}
