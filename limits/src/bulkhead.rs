//! Each adapter has a concurrency cap: past it an exchange waits at most the queue deadline
//! for a slot, and no more than `cap` exchanges wait at once; otherwise it is refused at once
//! (503 with `Retry-After`). A slow backend holds its own slots only, never another
//! contract's.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The bulkhead of one adapter.
#[derive(Debug)]
pub struct Bulkhead {
    slots: Arc<Semaphore>,
    cap: usize,
    waiting: AtomicUsize,
    queue_deadline: Duration,
}

/// No slot within the queue deadline, or the queue is full.
#[derive(Debug, PartialEq, Eq)]
pub struct Full;

struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Bulkhead {
    /// At most `cap` at once, each waiting at most `queue_deadline` for a slot.
    pub fn new(cap: usize, queue_deadline: Duration) -> Self {
        let cap = cap.max(1);
        Bulkhead {
            slots: Arc::new(Semaphore::new(cap)),
            cap,
            waiting: AtomicUsize::new(0),
            queue_deadline,
        }
    }

    /// A slot, held until the permit is dropped.
    pub async fn enter(&self) -> Result<OwnedSemaphorePermit, Full> {
        if let Ok(permit) = self.slots.clone().try_acquire_owned() {
            return Ok(permit);
        }
        if self.waiting.fetch_add(1, Ordering::Relaxed) >= self.cap {
            self.waiting.fetch_sub(1, Ordering::Relaxed);
            return Err(Full);
        }
        let _waiting = Waiting(&self.waiting);
        match tokio::time::timeout(self.queue_deadline, self.slots.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(Full),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn past_the_cap_an_exchange_waits_at_most_the_queue_deadline() {
        let b = Bulkhead::new(2, Duration::from_millis(50));
        let _one = b.enter().await.unwrap();
        let two = b.enter().await.unwrap();
        let started = tokio::time::Instant::now();
        assert_eq!(b.enter().await.err(), Some(Full));
        assert!(started.elapsed() >= Duration::from_millis(50));
        drop(two);
        assert!(b.enter().await.is_ok());
    }

    #[tokio::test]
    async fn the_queue_is_bounded_too() {
        let b = Arc::new(Bulkhead::new(1, Duration::from_secs(5)));
        let _held = b.enter().await.unwrap();
        // One may wait (cap 1)...
        let waiter = tokio::spawn({
            let b = b.clone();
            async move { b.enter().await.map(|_| ()) }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        // ...the next is refused at once rather than queued.
        let started = tokio::time::Instant::now();
        assert_eq!(b.enter().await.err(), Some(Full));
        assert!(started.elapsed() < Duration::from_millis(100));
        waiter.abort();
    }
}
