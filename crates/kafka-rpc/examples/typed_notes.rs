//! A typed service with a struct argument, its own error enum and the request context: a
//! notebook that keeps notes per tenant (the tenant travels as caller metadata, not as an
//! argument). Server and client run in this one process.
//!
//! Run: `cargo run -p kafka-rpc --example typed_notes -- 127.0.0.1:9092`.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use kafka_rpc::krpc_kafka::{ClientConfig, KafkaClient};
use kafka_rpc::{ClientOptions, RequestContext, RpcClient, Server};
use serde::{Deserialize, Serialize};

/// A note: a struct argument travels as a msgpack map (field names on the wire).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Note {
    pub title: String,
    pub body: String,
}

/// What can go wrong, as the service's own type: the caller gets it back typed; a Python or
/// `krpc call` caller sees its `Display` text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum NotesError {
    /// The call carried no `tenant` metadata.
    NoTenant,
    /// No note of that title.
    NotFound { title: String },
    /// The body is over the limit.
    TooLong { limit: usize },
}

impl std::fmt::Display for NotesError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotesError::NoTenant => f.write_str("the call carries no tenant metadata"),
            NotesError::NotFound { title } => write!(f, "no note titled {title:?}"),
            NotesError::TooLong { limit } => write!(f, "a note holds at most {limit} bytes"),
        }
    }
}

impl std::error::Error for NotesError {}

/// The notebook service.
#[kafka_rpc::service(name = "notes")]
pub trait Notes {
    /// Stores `note` for the caller's tenant; returns how many notes the tenant has.
    async fn put(&self, ctx: &RequestContext, note: Note) -> Result<usize, NotesError>;
    /// The note titled `title`.
    async fn get(&self, ctx: &RequestContext, title: String) -> Result<Note, NotesError>;
}

#[derive(Default)]
struct Notebook {
    notes: Mutex<BTreeMap<(String, String), Note>>,
}

fn tenant(ctx: &RequestContext) -> Result<String, NotesError> {
    let tenant = ctx
        .metadata()
        .get_str("tenant")
        .ok_or(NotesError::NoTenant)?;
    Ok(tenant.to_string())
}

impl Notes for Notebook {
    async fn put(&self, ctx: &RequestContext, note: Note) -> Result<usize, NotesError> {
        const LIMIT: usize = 1024;
        if note.body.len() > LIMIT {
            return Err(NotesError::TooLong { limit: LIMIT });
        }
        let tenant = tenant(ctx)?;
        let mut notes = self.notes.lock().unwrap();
        notes.insert((tenant.clone(), note.title.clone()), note);
        Ok(notes.keys().filter(|(t, _)| *t == tenant).count())
    }

    async fn get(&self, ctx: &RequestContext, title: String) -> Result<Note, NotesError> {
        let key = (tenant(ctx)?, title);
        let found = self.notes.lock().unwrap().get(&key).cloned();
        found.ok_or(NotesError::NotFound { title: key.1 })
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let bootstrap = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9092".into());
    let kafka = KafkaClient::connect(ClientConfig::new(&bootstrap)).await?;
    let server = Server::new(kafka.clone(), NotesServer::<Notebook>::options())?
        .service(NotesServer::new(Notebook::default()));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));

    let client = RpcClient::connect(kafka, ClientOptions::default()).await?;
    let notes = NotesClient::new(client);
    let note = Note {
        title: "groceries".into(),
        body: "milk, eggs".into(),
    };
    // The server creates the service's topics as it starts: until then the call is refused
    // as an unknown service, so retry for a while.
    let mut count = None;
    for _ in 0..100 {
        match notes.put(note.clone()).metadata("tenant", "acme").await {
            Err(kafka_rpc::RpcError::UnknownService { .. }) => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            other => {
                count = Some(other??);
                break;
            }
        }
    }
    println!("acme has {count:?} note(s)");
    let got = notes
        .get("groceries".into())
        .metadata("tenant", "acme")
        .await??;
    println!("acme's groceries: {}", got.body);
    match notes
        .get("groceries".into())
        .metadata("tenant", "globex")
        .await?
    {
        Err(NotesError::NotFound { title }) => println!("globex has no note {title:?}"),
        other => println!("unexpected: {other:?}"),
    }
    match notes.get("groceries".into()).await? {
        Err(e) => println!("without a tenant: {e}"),
        Ok(n) => println!("unexpected: {n:?}"),
    }
    let _ = stop.send(());
    println!("stopped: {}", serving.await??);
    Ok(())
}
