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
//!
//! And only while answers can come within the window. From a server across a network they
//! cannot, and every spin would only burn the client's CPU: after [`FAR_ANSWERS_BEFORE_REST`]
//! spins in a row whose answer came from far, the spin rests, and one statement in
//! [`REST_PROBE_EVERY`] spins to notice answers coming close again. A window that merely ran
//! out is no sign of distance: on two cores a local server often gets a CPU only when the
//! spin ends (resting on every such miss cut 128 tasks on one PostgreSQL connection to 0.6 of
//! one task, against 0.9 without the rest).

use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::task::Poll;
use std::time::{Duration, Instant};

/// An answer later than this many windows after its statement was sent came from far. The
/// answer to a spin that ran out while a local server waited for the CPU comes within a window
/// of the spin's end. With PostgreSQL's 100 µs window, far is later than 200 µs, as it was at 4
/// windows of the 50 µs it had before: a server a few hundred microseconds away still rests
/// the spin rather than cost a window of CPU per statement.
pub const FAR_ANSWER_WINDOWS: u32 = 2;
/// Spins in a row whose answer came from far, after which the spin rests.
pub const FAR_ANSWERS_BEFORE_REST: u32 = 16;
/// While the spin rests, one statement in this many that could spin does.
pub const REST_PROBE_EVERY: u32 = 64;

/// One `Db`'s statements in flight, and how long one alone may spin for its answer
/// ([`PoolConfig::answer_spin`](super::PoolConfig::answer_spin)).
#[derive(Debug)]
pub(crate) struct AnswerSpin {
    window: Duration,
    /// Statements being awaited through [`AnswerSpin::answer`] (counted only with a window).
    in_flight: AtomicU32,
    /// Spins in a row whose answer came from far (up to [`FAR_ANSWERS_BEFORE_REST`]); a spin
    /// cut short by another statement or a waiting task counts neither way, nor does a
    /// statement dropped unanswered.
    far_answers: AtomicU32,
    /// Statements that could have spun while the spin rested.
    rested: AtomicU32,
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
            far_answers: AtomicU32::new(0),
            rested: AtomicU32::new(0),
        }
    }

    /// Whether this statement skips its spin: the last spins' answers all came from far, and
    /// it is not the one in [`REST_PROBE_EVERY`] that tries again.
    fn resting(&self) -> bool {
        self.far_answers.load(Ordering::Relaxed) >= FAR_ANSWERS_BEFORE_REST
            && !(self.rested.fetch_add(1, Ordering::Relaxed) + 1).is_multiple_of(REST_PROBE_EVERY)
    }

    /// Counts a spun statement's answer, `after` its statement was sent.
    fn answered(&self, after: Duration) {
        let far_answers = self.far_answers.load(Ordering::Relaxed);
        if after > self.window * FAR_ANSWER_WINDOWS {
            if far_answers < FAR_ANSWERS_BEFORE_REST {
                self.far_answers.fetch_add(1, Ordering::Relaxed);
            }
        } else if far_answers != 0 {
            self.far_answers.store(0, Ordering::Relaxed);
        }
    }

    /// Awaits `io`. At its first poll, while it is the only statement in flight, no task
    /// waits in the runtime's global queue and the spin does not rest, polls it again until it
    /// is ready or the window has passed. The first poll sends the statement; the re-polls only
    /// look for the answer, each with the task's own waker, so an answer after the spin still
    /// wakes the task.
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
        // When the statement was sent, if its spin ran out: its answer is still to be counted.
        let mut spun_out: Option<Instant> = None;
        std::future::poll_fn(|cx| {
            if !std::mem::take(&mut first) {
                let polled = io.as_mut().poll(cx);
                if let (Poll::Ready(_), Some(sent)) = (&polled, spun_out) {
                    self.answered(sent.elapsed());
                }
                return polled;
            }
            let sent = Instant::now();
            let polled = io.as_mut().poll(cx);
            if polled.is_ready() || !alone() || self.resting() {
                return polled;
            }
            loop {
                std::hint::spin_loop();
                let polled = io.as_mut().poll(cx);
                if polled.is_ready() {
                    self.answered(sent.elapsed());
                    return polled;
                }
                if !alone() {
                    return polled;
                }
                if sent.elapsed() >= self.window {
                    spun_out = Some(sent);
                    return polled;
                }
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::{Arc, Mutex};

    /// Ready once `at` has passed, as an answer on a channel would be: each poll leaves its
    /// waker, and one thread wakes the latest at `at`. Or at its `ready_at_poll`-th poll,
    /// whatever the time: what the machine's load cannot move. Counts its polls.
    struct ReadyAfter {
        at: Instant,
        ready_at_poll: u32,
        polls: Arc<AtomicU32>,
        waker: Arc<Mutex<Option<std::task::Waker>>>,
        answering: bool,
        /// Set by the test: ready at the next poll.
        answer_now: Arc<AtomicBool>,
    }

    impl Future for ReadyAfter {
        type Output = u32;
        fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<u32> {
            let polls = self.polls.fetch_add(1, Ordering::Relaxed) + 1;
            if polls >= self.ready_at_poll
                || Instant::now() >= self.at
                || self.answer_now.load(Ordering::Relaxed)
            {
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
            answer_now: Default::default(),
        }
    }

    /// What `answer` gave at its first poll.
    fn first_poll(spin: Duration, io: ReadyAfter) -> Poll<u32> {
        first_poll_on(&AnswerSpin::new(spin), io)
    }

    fn first_poll_on(spin: &AnswerSpin, io: ReadyAfter) -> Poll<u32> {
        let mut spun = std::pin::pin!(spin.answer(io));
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        spun.as_mut().poll(&mut cx)
    }

    /// How many times `answer` polled, at its first poll, a statement then dropped unanswered
    /// (as a cancelled caller's is): 1 without a spin.
    fn polls_of_a_dropped_statement(spin: &AnswerSpin) -> u32 {
        let io = ReadyAfter {
            answering: true, // dropped unanswered: no thread to wake it
            ..ready_after(Duration::from_millis(50))
        };
        let polls = Arc::clone(&io.polls);
        assert!(first_poll_on(spin, io).is_pending());
        polls.load(Ordering::Relaxed)
    }

    /// Runs a statement whose spin runs out and whose answer comes `after` that: how many
    /// times its first poll polled it (1: no spin).
    fn answered_after_the_spin(spin: &AnswerSpin, after: Duration) -> u32 {
        let io = ReadyAfter {
            answering: true,
            ..ready_after(Duration::from_secs(10))
        };
        let (polls, answer_now) = (Arc::clone(&io.polls), Arc::clone(&io.answer_now));
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let mut statement = std::pin::pin!(spin.answer(io));
        assert!(statement.as_mut().poll(&mut cx).is_pending());
        let first_poll = polls.load(Ordering::Relaxed);
        std::thread::sleep(after);
        answer_now.store(true, Ordering::Relaxed);
        assert!(statement.as_mut().poll(&mut cx).is_ready());
        first_poll
    }

    #[test]
    fn the_spin_rests_while_answers_come_from_far() {
        let spin = AnswerSpin::new(MAX_SPIN_FOR_TEST);
        let far = MAX_SPIN_FOR_TEST * (FAR_ANSWER_WINDOWS + 20);
        let spun = |polls: u32| polls > 1;
        for answer in 1..FAR_ANSWERS_BEFORE_REST {
            assert!(
                spun(answered_after_the_spin(&spin, far)),
                "far answer {answer}"
            );
        }
        // An answer right after the spin ran out (a local server kept off the CPU by the spin)
        // is no sign of distance: the count starts again.
        assert!(spun(answered_after_the_spin(&spin, Duration::ZERO)));
        for answer in 1..=FAR_ANSWERS_BEFORE_REST {
            assert!(
                spun(answered_after_the_spin(&spin, far)),
                "far answer {answer}"
            );
        }
        for rested in 1..REST_PROBE_EVERY {
            assert_eq!(polls_of_a_dropped_statement(&spin), 1, "resting {rested}");
        }
        // One in REST_PROBE_EVERY tries; an answer within the window ends the rest.
        let near = ReadyAfter {
            ready_at_poll: 3,
            answering: true,
            ..ready_after(Duration::from_secs(10))
        };
        assert_eq!(first_poll_on(&spin, near), Poll::Ready(3), "the probe spun");
        assert!(spun(polls_of_a_dropped_statement(&spin)), "spinning again");
        // A spin cut short by another statement in flight counts neither way.
        let other = AnswerSpin::new(MAX_SPIN_FOR_TEST);
        other.in_flight.store(1, Ordering::Relaxed);
        assert_eq!(answered_after_the_spin(&other, far), 1);
        assert_eq!(other.far_answers.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn an_answer_within_the_spin_is_taken_without_sleeping() {
        let answer = ReadyAfter {
            ready_at_poll: 3,
            answering: true, // answered by its polls: no thread, whose start could use the spin
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
