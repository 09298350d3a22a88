//! The dedup window: per partition, the request ids seen recently and, once answered, their
//! replies. A redelivered request that completed gets its reply re-sent instead of running
//! again; one still running is not started twice. Bounded in size and age.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::envelope::{Completion, RequestId};

/// What the window knows of a request id.
#[derive(Debug, Clone)]
pub enum Seen {
    /// Never seen (or forgotten): run it.
    New,
    /// Running now (started from the record at this offset): do not start it again.
    Running(i64),
    /// Answered: re-send this.
    Done(Box<Completion>),
}

#[derive(Debug)]
enum Entry {
    Running(i64),
    Done(Box<Completion>),
}

/// One partition's window.
#[derive(Debug, Default)]
pub struct Window {
    entries: HashMap<RequestId, (Entry, Instant)>,
    order: VecDeque<(RequestId, Instant)>,
}

impl Window {
    /// Looks `id` up; a new id is recorded as running.
    pub fn check_and_start(
        &mut self,
        id: RequestId,
        offset: i64,
        limits: (usize, Duration),
    ) -> Seen {
        self.evict(limits);
        match self.entries.get(&id) {
            Some((Entry::Running(at), _)) => Seen::Running(*at),
            Some((Entry::Done(c), _)) => Seen::Done(c.clone()),
            None => {
                self.insert(id, Entry::Running(offset), Instant::now());
                Seen::New
            }
        }
    }

    /// Records `id` as answered with `completion` (`at`: when it was answered).
    pub fn complete(&mut self, completion: Completion, at: Instant, limits: (usize, Duration)) {
        let id = completion.reply.id;
        self.insert(id, Entry::Done(Box::new(completion)), at);
        self.evict(limits);
    }

    /// Ids remembered.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    fn insert(&mut self, id: RequestId, entry: Entry, at: Instant) {
        self.entries.insert(id, (entry, at));
        self.order.push_back((id, at));
    }

    fn evict(&mut self, (max_len, max_age): (usize, Duration)) {
        let now = Instant::now();
        while let Some(&(id, at)) = self.order.front() {
            // A slot is stale when its id was re-inserted later (running, then done).
            let live = self.entries.get(&id).is_some_and(|(_, t)| *t == at);
            if live && self.entries.len() <= max_len && now.saturating_duration_since(at) <= max_age
            {
                break;
            }
            self.order.pop_front();
            if live {
                self.entries.remove(&id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::Reply;
    use crate::status::StatusCode;

    fn done(id: RequestId) -> Completion {
        Completion {
            reply: Reply {
                id,
                status: StatusCode::Ok,
                message: String::new(),
                server_id: "s".into(),
                handler_us: 1,
                queue_ms: 0,
                payload: Default::default(),
                key_id: None,
            },
            reply_to: None,
            request_offset: None,
        }
    }

    #[test]
    fn running_and_done_requests_are_not_run_again() {
        let limits = (100, Duration::from_secs(60));
        let mut w = Window::default();
        let id = RequestId([1; 16]);
        assert!(matches!(w.check_and_start(id, 5, limits), Seen::New));
        assert!(matches!(w.check_and_start(id, 5, limits), Seen::Running(5)));
        w.complete(done(id), Instant::now(), limits);
        assert!(matches!(w.check_and_start(id, 5, limits), Seen::Done(_)));
    }

    #[test]
    fn the_window_is_bounded_in_size() {
        let limits = (10, Duration::from_secs(60));
        let mut w = Window::default();
        for i in 0..100u8 {
            let id = RequestId([i; 16]);
            w.check_and_start(id, 0, limits);
            w.complete(done(id), Instant::now(), limits);
        }
        assert!(w.len() <= 11, "{}", w.len());
        assert!(
            matches!(w.check_and_start(RequestId([0; 16]), 0, limits), Seen::New),
            "the oldest was forgotten"
        );
    }
}
