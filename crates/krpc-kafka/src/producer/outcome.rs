//! A batch's outcome, shared by the [`Delivery`](super::Delivery) of each of its records: one
//! allocation per batch, and the deliveries waiting for it woken after its lock is released.
//!
//! Written here rather than taken from a library, measured:
//! - `futures::future::Shared` over one oneshot per batch wakes its listeners while holding
//!   the lock each listener's next poll takes. A caller woken on another thread found it taken
//!   and slept again: a futex sleep and wake on every acknowledgement (strace of `wire-bench
//!   roundtrip`).
//! - A tokio oneshot per record avoids that, but costs an allocation and a wake per record:
//!   produce CPU per record rose by a quarter in wire-bench's batches of 1,000.
//! - tokio's `Notify` wakes outside its lock, but each waiting future would have to be boxed
//!   (it is `!Unpin`): an allocation per record again.

use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll, Waker};

/// The value and who waits for it.
struct Shared<T> {
    /// `Some(value)` once resolved; `None` when the resolver was dropped unresolved.
    value: OnceLock<Option<T>>,
    /// The waker of each listener that found no value, at the listener's slot (`None` once
    /// that listener is gone).
    waiting: Mutex<Vec<Option<Waker>>>,
}

impl<T> Shared<T> {
    fn waiting(&self) -> MutexGuard<'_, Vec<Option<Waker>>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets the value (unless set) and wakes every listener, outside the lock.
    fn set(&self, value: Option<T>) {
        drop(self.set_later(value));
    }

    /// Sets the value (unless set); returns the listeners to wake.
    fn set_later(&self, value: Option<T>) -> Wake {
        if self.value.set(value).is_err() {
            return Wake(Vec::new());
        }
        Wake(std::mem::take(&mut *self.waiting()))
    }
}

/// The listeners of an outcome just resolved, woken when this is dropped: the resolving side
/// finishes its other work first. A task woken on another thread is often placed on the
/// waking thread's CPU, and then waits for it to go idle: on a round trip's critical path,
/// the work after a wake counts as much as the work before it.
#[must_use = "dropping it wakes the listeners: drop it where they should be woken"]
pub(super) struct Wake(Vec<Option<Waker>>);

impl Wake {
    /// Adds `other`'s listeners to these (woken together).
    pub(super) fn merge(&mut self, mut other: Wake) {
        self.0.append(&mut other.0);
    }
}

impl Drop for Wake {
    fn drop(&mut self) {
        for waker in std::mem::take(&mut self.0).into_iter().flatten() {
            waker.wake();
        }
    }
}

/// The side that resolves the outcome, held by the batch. Dropped unresolved (a batch dropped
/// by a forced close), every listener gets `None`.
pub(super) struct Resolver<T>(Arc<Shared<T>>);

impl<T> Resolver<T> {
    pub(super) fn new() -> Self {
        Self(Arc::new(Shared {
            value: OnceLock::new(),
            waiting: Mutex::new(Vec::new()),
        }))
    }

    /// A new listener to this outcome.
    pub(super) fn listen(&self) -> Listener<T> {
        Listener {
            shared: self.0.clone(),
            slot: None,
        }
    }

    /// Gives every listener `value`.
    pub(super) fn resolve(self, value: T) {
        self.0.set(Some(value));
    }

    /// Gives every listener `value`, to be woken when the returned [`Wake`] is dropped (a
    /// listener that polls before sees the value).
    pub(super) fn resolve_later(self, value: T) -> Wake {
        self.0.set_later(Some(value))
    }
}

impl<T> Drop for Resolver<T> {
    fn drop(&mut self) {
        // A no-op after `resolve`.
        self.0.set(None);
    }
}

/// One listener to an outcome: polled, it gives a clone of the value.
pub(super) struct Listener<T> {
    shared: Arc<Shared<T>>,
    /// Where this listener's waker is in the waiting list, once it waited.
    slot: Option<usize>,
}

impl<T: Clone> Listener<T> {
    /// `Ready(Some(value))` once resolved, `Ready(None)` if the resolver was dropped
    /// unresolved, else `Pending` (woken when either happens).
    pub(super) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        if let Some(value) = self.shared.value.get() {
            return Poll::Ready(value.clone());
        }
        let mut waiting = self.shared.waiting();
        // Set between the first look and the lock: the list was (or is being) emptied.
        if let Some(value) = self.shared.value.get() {
            return Poll::Ready(value.clone());
        }
        match self.slot {
            Some(i) if i < waiting.len() => match &mut waiting[i] {
                Some(w) if w.will_wake(cx.waker()) => {}
                w => *w = Some(cx.waker().clone()),
            },
            _ => {
                waiting.push(Some(cx.waker().clone()));
                self.slot = Some(waiting.len() - 1);
            }
        }
        Poll::Pending
    }
}

impl<T> Drop for Listener<T> {
    fn drop(&mut self) {
        // A listener gone is not woken (its task may wait for something else now).
        if let Some(i) = self.slot {
            if self.shared.value.get().is_none() {
                if let Some(w) = self.shared.waiting().get_mut(i) {
                    *w = None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn counting() -> (Arc<Count>, Waker) {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        (count.clone(), Waker::from(count))
    }

    /// Every listener gets the value; each one that waited is woken once, however often it
    /// was polled before; a listener dropped while waiting is not woken.
    #[test]
    fn every_listener_gets_the_value_and_each_waiting_one_is_woken_once() {
        let resolver = Resolver::new();
        let (mut a, mut b, mut gone, mut late) = (
            resolver.listen(),
            resolver.listen(),
            resolver.listen(),
            resolver.listen(),
        );
        let (a_count, a_waker) = counting();
        let (b_count, b_waker) = counting();
        let (gone_count, gone_waker) = counting();
        for _ in 0..3 {
            assert!(a.poll(&mut Context::from_waker(&a_waker)).is_pending());
        }
        assert!(b.poll(&mut Context::from_waker(&b_waker)).is_pending());
        assert!(gone
            .poll(&mut Context::from_waker(&gone_waker))
            .is_pending());
        drop(gone);
        resolver.resolve(7);
        assert_eq!(a_count.0.load(Ordering::SeqCst), 1);
        assert_eq!(b_count.0.load(Ordering::SeqCst), 1);
        assert_eq!(gone_count.0.load(Ordering::SeqCst), 0);
        let (_, waker) = counting();
        let mut cx = Context::from_waker(&waker);
        assert_eq!(a.poll(&mut cx), Poll::Ready(Some(7)));
        assert_eq!(b.poll(&mut cx), Poll::Ready(Some(7)));
        assert_eq!(late.poll(&mut cx), Poll::Ready(Some(7)));
    }

    /// `resolve_later`: the value is there at once for any poll, the waiting listeners are
    /// woken only when the `Wake` goes (merged ones together), and once.
    #[test]
    fn resolve_later_wakes_when_its_wake_is_dropped() {
        let (first, second) = (Resolver::new(), Resolver::new());
        let (mut a, mut b) = (first.listen(), second.listen());
        let (a_count, a_waker) = counting();
        let (b_count, b_waker) = counting();
        assert!(a.poll(&mut Context::from_waker(&a_waker)).is_pending());
        assert!(b.poll(&mut Context::from_waker(&b_waker)).is_pending());
        let mut wake: super::Wake = first.resolve_later(1);
        wake.merge(second.resolve_later(2));
        assert_eq!(a_count.0.load(Ordering::SeqCst), 0, "not woken yet");
        assert_eq!(b_count.0.load(Ordering::SeqCst), 0, "not woken yet");
        assert_eq!(
            a.poll(&mut Context::from_waker(&a_waker)),
            Poll::Ready(Some(1))
        );
        drop(wake);
        assert_eq!(a_count.0.load(Ordering::SeqCst), 1);
        assert_eq!(b_count.0.load(Ordering::SeqCst), 1);
        assert_eq!(
            b.poll(&mut Context::from_waker(&b_waker)),
            Poll::Ready(Some(2))
        );
    }

    /// A resolver dropped unresolved gives every listener `None`, and wakes those waiting.
    #[test]
    fn a_resolver_dropped_unresolved_gives_none() {
        let resolver = Resolver::<u8>::new();
        let mut waiting = resolver.listen();
        let (count, waker) = counting();
        assert!(waiting.poll(&mut Context::from_waker(&waker)).is_pending());
        drop(resolver);
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert_eq!(
            waiting.poll(&mut Context::from_waker(&waker)),
            Poll::Ready(None)
        );
    }

    /// A listener on another thread is woken by a resolve racing its poll: never left
    /// waiting with the value set.
    #[test]
    fn a_resolve_racing_a_poll_is_never_missed() {
        for _ in 0..1000 {
            let resolver = Resolver::new();
            let mut listener = resolver.listen();
            let (count, waker) = counting();
            let resolving = std::thread::spawn(move || resolver.resolve(1u8));
            let first = listener.poll(&mut Context::from_waker(&waker));
            resolving.join().unwrap();
            if first.is_pending() {
                assert_eq!(count.0.load(Ordering::SeqCst), 1, "woken after waiting");
            }
            assert_eq!(
                listener.poll(&mut Context::from_waker(&waker)),
                Poll::Ready(Some(1))
            );
        }
    }
}
