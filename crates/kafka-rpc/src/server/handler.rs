//! Handlers behind one signature: msgpack bytes in, msgpack bytes or a status out. Argument
//! decoding, handler errors and panics all become statuses here.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use futures::FutureExt;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::codec;
use crate::error::HandlerError;
use crate::status::StatusCode;

/// The future a type-erased handler returns.
pub type HandlerFuture = Pin<Box<dyn Future<Output = Result<Bytes, HandlerError>> + Send>>;

/// A type-erased handler.
pub type Handler = Arc<dyn Fn(Bytes) -> HandlerFuture + Send + Sync>;

fn decode_args<A: DeserializeOwned>(payload: &[u8]) -> Result<A, HandlerError> {
    codec::decode_args(payload).map_err(|e| {
        HandlerError::new(
            StatusCode::InvalidArgument,
            format!("the arguments do not match the method's parameters: {e}"),
        )
    })
}

fn encode_result<R: Serialize>(value: &R) -> Result<Bytes, HandlerError> {
    codec::encode(value).map_err(|e| {
        HandlerError::new(
            StatusCode::Internal,
            format!("cannot encode the result: {e}"),
        )
    })
}

/// The text of a panic payload.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a non-text panic payload".to_string()
    }
}

fn panicked(payload: &(dyn std::any::Any + Send)) -> HandlerError {
    HandlerError::new(
        StatusCode::Internal,
        format!("the handler panicked: {}", panic_message(payload)),
    )
}

/// Wraps an async handler taking `A` and returning `R`.
pub fn from_async<A, R, F, Fut>(f: F) -> Handler
where
    A: DeserializeOwned + Send + 'static,
    R: Serialize + Send + 'static,
    F: Fn(A) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<R, HandlerError>> + Send + 'static,
{
    let f = Arc::new(f);
    Arc::new(move |payload: Bytes| {
        let f = f.clone();
        Box::pin(async move {
            let args: A = decode_args(&payload)?;
            let value = AssertUnwindSafe(async move { f(args).await })
                .catch_unwind()
                .await
                .map_err(|p| panicked(&*p))??;
            encode_result(&value)
        })
    })
}

/// Wraps a blocking handler taking `A` and returning `R`; it runs on the blocking thread pool.
pub fn from_blocking<A, R, F>(f: F) -> Handler
where
    A: DeserializeOwned + Send + 'static,
    R: Serialize + Send + 'static,
    F: Fn(A) -> Result<R, HandlerError> + Send + Sync + 'static,
{
    let f = Arc::new(f);
    Arc::new(move |payload: Bytes| {
        let f = f.clone();
        Box::pin(async move {
            let args: A = decode_args(&payload)?;
            let value = tokio::task::spawn_blocking(move || f(args))
                .await
                .map_err(|e| match e.try_into_panic() {
                    Ok(p) => panicked(&*p),
                    Err(e) => HandlerError::new(
                        StatusCode::Internal,
                        format!("the handler was cancelled: {e}"),
                    ),
                })??;
            encode_result(&value)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(h: &Handler, payload: Bytes) -> Result<Bytes, HandlerError> {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(h(payload))
    }

    #[test]
    fn arguments_errors_and_panics_become_statuses() {
        let add = from_async(|(a, b): (i64, i64)| async move { Ok::<_, HandlerError>(a + b) });
        assert_eq!(
            codec::decode::<i64>(&run(&add, codec::encode(&(2, 3)).unwrap()).unwrap()).unwrap(),
            5
        );
        let bad = run(&add, codec::encode(&("x",)).unwrap()).unwrap_err();
        assert_eq!(bad.code, StatusCode::InvalidArgument);
        let garbage = run(&add, Bytes::from_static(&[0xc1])).unwrap_err();
        assert_eq!(garbage.code, StatusCode::InvalidArgument);

        let fails = from_async(|(): ()| async move { Err::<(), _>(HandlerError::from("boom")) });
        let e = run(&fails, codec::encode(&()).unwrap()).unwrap_err();
        assert_eq!((e.code, e.message.as_str()), (StatusCode::Unknown, "boom"));

        let panics = from_async(|(): ()| async move {
            if true {
                panic!("kaput");
            }
            Ok::<(), HandlerError>(())
        });
        let e = run(&panics, codec::encode(&()).unwrap()).unwrap_err();
        assert_eq!(e.code, StatusCode::Internal);
        assert!(e.message.contains("kaput"), "{}", e.message);
    }
}
