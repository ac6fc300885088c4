//! An endpoint's flow control, on the engine's clock: how many requests may be in flight (a
//! congestion window under `max_in_flight`), how long the endpoint rests after a 429 or 503,
//! and its `max_rps` pace. No IO and no waiting here: the endpoint worker asks, and waits
//! for what it is told.

use governor::clock::Clock as _;
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchyard_core::time::Clock;

/// The longest pause a 429 or 503 without `Retry-After` causes.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// The longest pause a receiver's `Retry-After` can impose on its endpoint.
const MAX_PAUSE: Duration = Duration::from_secs(3600);

/// How many requests may be in flight now, and until when the endpoint rests. Times are the
/// engine clock's milliseconds.
#[derive(Debug)]
pub(crate) struct Flow {
    in_flight: u32,
    /// The congestion window: at most `max_in_flight`, halved on every 429/503, grown by one
    /// per window of successes (additive increase, multiplicative decrease).
    window: f64,
    paused_until: Option<i64>,
    /// Pauses in a row without `Retry-After`: each doubles the last.
    backoff: u32,
}

/// What an attempt tells flow control.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signal {
    Answered,
    /// 429 or 503, with the receiver's `Retry-After` if it sent one.
    Throttled(Option<Duration>),
}

impl Signal {
    /// What a response with `status` (none: no answer) and `Retry-After` tells flow control.
    pub(crate) fn of(status: Option<u16>, retry_after_s: Option<u64>) -> Signal {
        match status {
            Some(429 | 503) => Signal::Throttled(retry_after_s.map(Duration::from_secs)),
            _ => Signal::Answered,
        }
    }
}

/// Whether a request may start now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Gate {
    /// Yes: it counts as in flight until [`Flow::finished`] or [`Flow::left`].
    Open,
    /// The window is full: wait for a request to finish.
    Full,
    /// The endpoint rests until then.
    PausedUntil(i64),
}

impl Default for Flow {
    fn default() -> Flow {
        Flow {
            in_flight: 0,
            window: f64::MAX,
            paused_until: None,
            backoff: 0,
        }
    }
}

impl Flow {
    /// Requests in flight.
    pub(crate) fn in_flight(&self) -> u32 {
        self.in_flight
    }

    /// Asks to start a request at `now` to an endpoint allowing `max` in flight.
    pub(crate) fn enter(&mut self, now: i64, max: u32) -> Gate {
        let max = max.max(1);
        self.window = self.window.min(max as f64);
        match self.paused_until {
            Some(t) if t > now => Gate::PausedUntil(t),
            _ if self.in_flight >= (self.window as u32).max(1) => Gate::Full,
            _ => {
                self.paused_until = None;
                self.in_flight += 1;
                Gate::Open
            }
        }
    }

    /// A request [`Flow::enter`] let in did not start after all (shutdown).
    pub(crate) fn left(&mut self) {
        self.in_flight = self.in_flight.saturating_sub(1);
    }

    /// A request finished at `now` with `signal`, to an endpoint allowing `max` in flight.
    pub(crate) fn finished(&mut self, signal: Signal, now: i64, max: u32) {
        self.in_flight = self.in_flight.saturating_sub(1);
        match signal {
            Signal::Answered => {
                self.backoff = 0;
                self.window = (self.window + 1.0 / self.window.max(1.0)).min(max.max(1) as f64);
            }
            Signal::Throttled(retry_after) => {
                self.window = (self.window / 2.0).max(1.0);
                let pause = retry_after.map(|r| r.min(MAX_PAUSE)).unwrap_or_else(|| {
                    self.backoff = (self.backoff + 1).min(7);
                    (Duration::from_millis(500) * 2u32.pow(self.backoff - 1)).min(MAX_BACKOFF)
                });
                let until = now.saturating_add(i64::try_from(pause.as_millis()).unwrap_or(0));
                self.paused_until = Some(self.paused_until.map_or(until, |p| p.max(until)));
            }
        }
    }
}

/// The engine's clock made steady for flow control: it moves forward as the engine's clock
/// does and never back. A step back of the wall clock (an NTP correction) holds it still for
/// that reading instead of for the step's length, so no pause and no `max_rps` turn waits out
/// a clock correction.
#[derive(Debug)]
pub(crate) struct Steady {
    clock: Arc<dyn Clock>,
    /// The engine clock's last reading, and the steady time then.
    state: Mutex<(i64, i64)>,
}

impl Steady {
    pub(crate) fn new(clock: Arc<dyn Clock>) -> Steady {
        let now = clock.now_ms();
        Steady {
            clock,
            state: Mutex::new((now, now)),
        }
    }
}

impl Clock for Steady {
    fn now_ms(&self) -> i64 {
        let reading = self.clock.now_ms();
        let Ok(mut s) = self.state.lock() else {
            return reading;
        };
        let step = reading.saturating_sub(s.0).max(0);
        *s = (reading, s.1.saturating_add(step));
        s.1
    }
}

/// The engine's clock as the rate limiter's: milliseconds since the epoch as a duration.
#[derive(Debug, Clone)]
struct LimiterClock(Arc<dyn Clock>);

impl governor::clock::Clock for LimiterClock {
    type Instant = Duration;

    fn now(&self) -> Duration {
        Duration::from_millis(u64::try_from(self.0.now_ms()).unwrap_or(0))
    }
}

/// An endpoint's `max_rps`: at most that many requests start per second of the engine's
/// clock, evenly spaced (no burst).
pub(crate) struct Pace {
    rps: u32,
    clock: LimiterClock,
    limiter: RateLimiter<NotKeyed, InMemoryState, LimiterClock, NoOpMiddleware<Duration>>,
}

impl Pace {
    pub(crate) fn new(rps: NonZeroU32, clock: Arc<dyn Clock>) -> Pace {
        let clock = LimiterClock(clock);
        let quota = Quota::per_second(rps).allow_burst(NonZeroU32::MIN);
        Pace {
            rps: rps.get(),
            limiter: RateLimiter::direct_with_clock(quota, clock.clone()),
            clock,
        }
    }

    /// The rate it paces to.
    pub(crate) fn rps(&self) -> u32 {
        self.rps
    }

    /// Takes a turn now if there is one (`None`), or says how long until the next.
    pub(crate) fn turn(&self) -> Option<Duration> {
        match self.limiter.check() {
            Ok(()) => None,
            Err(not_until) => Some(not_until.wait_time_from(self.clock.now())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_core::time::ManualClock;

    #[test]
    fn the_window_halves_on_throttling_and_grows_back_by_one_per_window() {
        let mut f = Flow::default();
        for _ in 0..4 {
            assert_eq!(f.enter(0, 4), Gate::Open);
        }
        assert_eq!(f.enter(0, 4), Gate::Full);
        f.finished(Signal::Throttled(None), 0, 4);
        assert_eq!(f.window, 2.0);
        // Three are still in flight: over the halved window even after the pause.
        assert_eq!(f.enter(500, 4), Gate::Full);
        for _ in 0..3 {
            f.finished(Signal::Answered, 500, 4);
        }
        assert_eq!(f.in_flight(), 0);
        assert!(f.window > 3.0 && f.window < 4.0, "{}", f.window);
        // Capped at max.
        for _ in 0..20 {
            assert_eq!(f.enter(500, 4), Gate::Open);
            f.finished(Signal::Answered, 500, 4);
        }
        assert_eq!(f.window, 4.0);
    }

    #[test]
    fn a_throttled_endpoint_rests_by_the_given_clock_and_backs_off_doubling() {
        let mut f = Flow::default();
        assert_eq!(f.enter(1_000, 8), Gate::Open);
        f.finished(Signal::Throttled(None), 1_000, 8);
        assert_eq!(f.enter(1_200, 8), Gate::PausedUntil(1_500));
        assert_eq!(f.enter(1_500, 8), Gate::Open);
        f.finished(Signal::Throttled(None), 1_500, 8);
        assert_eq!(f.enter(1_600, 8), Gate::PausedUntil(2_500), "doubled");
        assert_eq!(f.enter(2_500, 8), Gate::Open);
        f.finished(Signal::Answered, 2_500, 8);
        assert_eq!(f.enter(2_500, 8), Gate::Open);
        f.finished(Signal::Throttled(None), 2_500, 8);
        assert_eq!(
            f.enter(2_500, 8),
            Gate::PausedUntil(3_000),
            "a success resets it"
        );
    }

    #[test]
    fn retry_after_sets_the_pause_within_an_hour() {
        let mut f = Flow::default();
        assert_eq!(f.enter(0, 1), Gate::Open);
        f.finished(Signal::of(Some(429), Some(30)), 0, 1);
        assert_eq!(f.enter(0, 1), Gate::PausedUntil(30_000));
        assert_eq!(f.enter(30_000, 1), Gate::Open);
        f.finished(Signal::of(Some(503), Some(86_400)), 30_000, 1);
        assert_eq!(f.enter(30_000, 1), Gate::PausedUntil(30_000 + 3_600_000));
        assert_eq!(Signal::of(Some(500), Some(5)), Signal::Answered);
        assert_eq!(Signal::of(None, None), Signal::Answered);
    }

    #[test]
    fn a_request_that_left_frees_its_place_without_growing_the_window() {
        let mut f = Flow::default();
        assert_eq!(f.enter(0, 1), Gate::Open);
        assert_eq!(f.enter(0, 1), Gate::Full);
        f.left();
        assert_eq!(f.in_flight(), 0);
        assert_eq!(f.window, 1.0);
        assert_eq!(f.enter(0, 1), Gate::Open);
    }

    #[test]
    fn a_step_back_of_the_clock_holds_flow_control_still_instead_of_for_the_step() {
        let clock = Arc::new(ManualClock::new(1_000_000));
        let steady = Arc::new(Steady::new(clock.clone()));
        let mut f = Flow::default();
        assert_eq!(f.enter(steady.now_ms(), 1), Gate::Open);
        f.finished(Signal::of(Some(429), Some(1)), steady.now_ms(), 1);
        // The wall clock is corrected an hour back: the pause still ends a second later.
        clock.advance(-3_600_000);
        assert_eq!(steady.now_ms(), 1_000_000);
        clock.advance(1_000);
        assert_eq!(f.enter(steady.now_ms(), 1), Gate::Open);
        // So does a max_rps turn.
        let pace = Pace::new(NonZeroU32::new(4).expect("nonzero"), steady.clone());
        assert_eq!(pace.turn(), None);
        clock.advance(-3_600_000);
        assert_eq!(pace.turn(), Some(Duration::from_millis(250)));
        clock.advance(250);
        assert_eq!(pace.turn(), None);
    }

    #[test]
    fn the_pace_follows_the_engines_clock() {
        let clock = Arc::new(ManualClock::new(1_000_000));
        let pace = Pace::new(NonZeroU32::new(4).expect("nonzero"), clock.clone());
        assert_eq!(pace.rps(), 4);
        assert_eq!(pace.turn(), None);
        assert_eq!(pace.turn(), Some(Duration::from_millis(250)));
        clock.advance(100);
        assert_eq!(pace.turn(), Some(Duration::from_millis(150)));
        clock.advance(150);
        assert_eq!(pace.turn(), None);
        // No burst after a quiet second: one turn, then the spacing again.
        clock.advance(1_000);
        assert_eq!(pace.turn(), None);
        assert!(pace.turn().is_some());
    }
}
