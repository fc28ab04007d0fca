//! Waiting for a statement's answer awake. SQLite answers from its own thread: an answer that
//! finds its task asleep is a wake from outside the runtime, and tokio wakes a parked worker
//! for it as a searcher, which on finding the task wakes the other worker too. On one
//! connection, where every task waits on the one statement in flight, that became a mode
//! lasting seconds in which both workers slept and woke once per statement, at a fifth of
//! the rate (CONTRIBUTING.md, "Run longer, it has two modes"). Polling the answer for a few
//! tens of microseconds before sleeping keeps the task running when it comes.
//!
//! A spin is worth it only while the worker has nothing else to do and the database's threads
//! are not short of a core: so only while this statement is the only one in flight on its
//! `Db` and no task waits in the runtime's global queue. With four connections busy, spinning
//! on every statement cut SQLite's `SELECT 1` at 128 tasks to a quarter (two cores, four
//! SQLite threads).

use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// One `Db`'s statements in flight, and how long one alone may spin for its answer
/// ([`PoolConfig::answer_spin`](super::PoolConfig::answer_spin)).
#[derive(Debug)]
pub(crate) struct AnswerSpin {
    window: Duration,
    /// Statements being awaited through [`AnswerSpin::answer`] (counted only with a window).
    in_flight: AtomicU32,
}

/// Takes a statement off the count however its future ends (answered, failed, dropped).
struct Counted<'a>(&'a AtomicU32);

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl AnswerSpin {
    pub(crate) fn new(window: Duration) -> Self {
        assert!(
            window <= super::MAX_ANSWER_SPIN,
            "connect_with bounds the spin"
        );
        Self {
            window,
            in_flight: AtomicU32::new(0),
        }
    }

    /// Awaits `io`. At its first poll, while it is the only statement in flight and no task
    /// waits in the runtime's global queue, polls it again until it is ready or the window has
    /// passed. The first poll sends the statement; the re-polls only look for the answer, each
    /// with the task's own waker, so an answer after the spin still wakes the task.
    pub(crate) async fn answer<F: Future>(&self, io: F) -> F::Output {
        if self.window.is_zero() {
            return io.await;
        }
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        let _counted = Counted(&self.in_flight);
        let mut io = std::pin::pin!(io);
        let runtime = tokio::runtime::Handle::try_current().map(|h| h.metrics());
        let alone = || {
            self.in_flight.load(Ordering::Relaxed) == 1
                && !runtime.as_ref().is_ok_and(|m| m.global_queue_depth() > 0)
        };
        let mut first = true;
        std::future::poll_fn(|cx| {
            if !std::mem::take(&mut first) {
                return io.as_mut().poll(cx);
            }
            let deadline = Instant::now() + self.window;
            loop {
                let polled = io.as_mut().poll(cx);
                if polled.is_ready() || !alone() || Instant::now() >= deadline {
                    return polled;
                }
                std::hint::spin_loop();
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use std::task::Poll;

    /// Ready once `at` has passed, as an answer on a channel would be: each poll leaves its
    /// waker, and one thread wakes the latest at `at`. Or at its `ready_at_poll`-th poll,
    /// whatever the time: what the machine's load cannot move. Counts its polls.
    struct ReadyAfter {
        at: Instant,
        ready_at_poll: u32,
        polls: Arc<AtomicU32>,
        waker: Arc<Mutex<Option<std::task::Waker>>>,
        answering: bool,
    }

    impl Future for ReadyAfter {
        type Output = u32;
        fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<u32> {
            let polls = self.polls.fetch_add(1, Ordering::Relaxed) + 1;
            if polls >= self.ready_at_poll || Instant::now() >= self.at {
                return Poll::Ready(polls);
            }
            *self.waker.lock().expect("test waker") = Some(cx.waker().clone());
            if !std::mem::replace(&mut self.answering, true) {
                let (waker, at) = (Arc::clone(&self.waker), self.at);
                std::thread::spawn(move || {
                    std::thread::sleep(at.saturating_duration_since(Instant::now()));
                    if let Some(waker) = waker.lock().expect("test waker").take() {
                        waker.wake();
                    }
                });
            }
            Poll::Pending
        }
    }

    fn ready_after(wait: Duration) -> ReadyAfter {
        ReadyAfter {
            at: Instant::now() + wait,
            ready_at_poll: u32::MAX,
            polls: Default::default(),
            waker: Default::default(),
            answering: false,
        }
    }

    /// What `answer` gave at its first poll.
    fn first_poll(spin: Duration, io: ReadyAfter) -> Poll<u32> {
        let spin = AnswerSpin::new(spin);
        let mut spun = std::pin::pin!(spin.answer(io));
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        spun.as_mut().poll(&mut cx)
    }

    #[test]
    fn an_answer_within_the_spin_is_taken_without_sleeping() {
        let answer = ReadyAfter {
            ready_at_poll: 3,
            ..ready_after(Duration::from_secs(10))
        };
        let Poll::Ready(polls) = first_poll(MAX_SPIN_FOR_TEST, answer) else {
            panic!("an answer at the third poll, within the spin: ready at the first poll");
        };
        assert_eq!(polls, 3, "re-polled until the answer came");
    }

    #[test]
    fn past_the_spin_the_task_sleeps_and_the_answer_wakes_it() {
        let spin = Duration::from_micros(20);
        let began = Instant::now();
        let io = ready_after(Duration::from_millis(50));
        assert!(first_poll(spin, io).is_pending(), "no answer within 20 us");
        assert!(
            began.elapsed() < Duration::from_millis(40),
            "gave up after the spin"
        );
        assert_eq!(
            first_poll(Duration::ZERO, ready_after(Duration::from_millis(50))),
            Poll::Pending
        );
        // Asleep, it is woken by the answer it was waiting for.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        let spin = AnswerSpin::new(spin);
        let answered = rt.block_on(async {
            let io = spin.answer(ready_after(Duration::from_millis(20)));
            tokio::time::timeout(Duration::from_secs(5), io).await
        });
        assert!(answered.is_ok(), "the answer's wake was not lost");
    }

    #[test]
    fn a_task_waiting_in_the_runtime_ends_the_spin() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let _inside = rt.enter();
        let io = ready_after(Duration::from_millis(50));
        let polls = Arc::clone(&io.polls);
        assert!(first_poll(MAX_SPIN_FOR_TEST, io).is_pending());
        assert!(
            polls.load(Ordering::Relaxed) > 1,
            "no task waiting: it spun"
        );
        // Spawned outside `block_on`: it waits in the runtime's global queue.
        drop(rt.spawn(async {}));
        let io = ready_after(Duration::from_millis(50));
        let polls = Arc::clone(&io.polls);
        assert!(first_poll(MAX_SPIN_FOR_TEST, io).is_pending());
        assert_eq!(
            polls.load(Ordering::Relaxed),
            1,
            "a task waiting: one poll, no spin"
        );
    }

    const MAX_SPIN_FOR_TEST: Duration = super::super::MAX_ANSWER_SPIN;

    #[test]
    fn no_spin_polls_once() {
        assert_eq!(
            first_poll(Duration::ZERO, ready_after(Duration::ZERO)),
            Poll::Ready(1)
        );
    }

    /// A cut starts its statement with exactly one poll, spin or not (`fault::DbAwait`), so
    /// a cut falls at the same point on every run.
    #[test]
    fn a_cut_polls_once_however_long_the_spin() {
        let (faults, spin) = (
            super::super::fault::Faults::default(),
            AnswerSpin::new(MAX_SPIN_FOR_TEST),
        );
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        for cut in [false, true] {
            if cut {
                faults.arm_cut(0);
            }
            let io = ready_after(Duration::from_millis(50));
            let polls = Arc::clone(&io.polls);
            let mut run = std::pin::pin!(faults.next_await(Some(&spin)).run(io));
            assert!(run.as_mut().poll(&mut cx).is_pending());
            let polls = polls.load(Ordering::Relaxed);
            match cut {
                false => assert!(polls > 1, "uncut: it spun"),
                true => assert_eq!(polls, 1, "the cut: one poll"),
            }
        }
    }

    #[test]
    fn another_statement_in_flight_ends_the_spin() {
        let spin = AnswerSpin::new(MAX_SPIN_FOR_TEST);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let far = || ready_after(Duration::from_millis(50));
        let (first, second) = (far(), far());
        let (first_polls, second_polls) = (Arc::clone(&first.polls), Arc::clone(&second.polls));
        {
            let mut first = std::pin::pin!(spin.answer(first));
            assert!(first.as_mut().poll(&mut cx).is_pending());
            assert!(
                first_polls.load(Ordering::Relaxed) > 1,
                "alone in flight: it spun"
            );
            let mut second = std::pin::pin!(spin.answer(second));
            assert!(second.as_mut().poll(&mut cx).is_pending());
            assert_eq!(
                second_polls.load(Ordering::Relaxed),
                1,
                "two in flight: no spin"
            );
        }
        // However they end (here: dropped unanswered), they leave the count.
        assert_eq!(spin.in_flight.load(Ordering::Relaxed), 0);
        let third = far();
        let third_polls = Arc::clone(&third.polls);
        assert!(
            std::pin::pin!(spin.answer(third))
                .as_mut()
                .poll(&mut cx)
                .is_pending()
        );
        assert!(
            third_polls.load(Ordering::Relaxed) > 1,
            "alone again: it spun"
        );
    }
}
