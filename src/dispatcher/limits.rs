//! How many sends each endpoint gets at once: a limit per endpoint that
//! adapts to how the endpoint answers (additive increase, multiplicative
//! decrease). It starts at `webhooks.endpoint_concurrency` and grows by one
//! each time the endpoint has answered as many sends as its limit while
//! keeping up, that is, about as fast as the fastest answer it gave lately
//! (more parallel sends that only queue at the receiver do not count). It
//! halves when the endpoint times out, cannot be reached, or answers 429 or
//! 5xx; never below 1 nor above `webhooks.endpoint_concurrency_max`. None
//! can take more than its own limit of the process's slots
//! (`webhooks.concurrency`), so a slow endpoint cannot hold up the others.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::domain::EndpointId;

/// Answers in a window of this many, whose fastest is the next baseline.
const WINDOW: u32 = 64;
/// Slack above the baseline that still counts as keeping up, whatever the
/// baseline: scheduling noise on a busy machine, not the receiver.
const SLACK: Duration = Duration::from_millis(25);
/// Endpoints remembered at most; idle ones at their starting limit go first.
const REMEMBERED: usize = 10_000;

/// How a send ended, as far as the limit is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Answer {
    /// A 2xx after this long.
    Delivered(Duration),
    /// Timed out, unreachable, 429 or 5xx: the endpoint is overloaded or down.
    Overloaded,
    /// Any other answer (a 4xx, a refused address): the limit stays.
    Other,
}

/// One endpoint's limit and what it has in flight.
#[derive(Clone, Debug)]
struct Endpoint {
    limit: usize,
    in_flight: usize,
    /// Quick answers since the limit last changed.
    streak: usize,
    /// The fastest answer of the last full window, and of the current one.
    baseline: Option<Duration>,
    window_min: Option<Duration>,
    window_len: u32,
}

impl Endpoint {
    fn new(limit: usize) -> Self {
        Self { limit, in_flight: 0, streak: 0, baseline: None, window_min: None, window_len: 0 }
    }

    fn answered(&mut self, answer: Answer, max: usize) {
        match answer {
            Answer::Overloaded => {
                self.limit = (self.limit / 2).max(1);
                self.streak = 0;
            }
            Answer::Other => {}
            Answer::Delivered(took) => {
                let baseline = *self.baseline.get_or_insert(took);
                if took <= (baseline * 2).max(baseline + SLACK) {
                    self.streak += 1;
                    if self.streak >= self.limit {
                        self.limit = (self.limit + 1).min(max);
                        self.streak = 0;
                    }
                } else {
                    // Slower than it can be: more sends would only queue.
                    self.streak = 0;
                }
                self.window_min = Some(self.window_min.map_or(took, |m| m.min(took)));
                self.window_len += 1;
                if self.window_len >= WINDOW {
                    self.baseline = self.window_min.take();
                    self.window_len = 0;
                }
            }
        }
    }
}

/// The limits of every endpoint this process sends to.
#[derive(Debug)]
pub(super) struct Limits {
    initial: usize,
    max: usize,
    endpoints: Mutex<HashMap<EndpointId, Endpoint>>,
}

impl Limits {
    /// Endpoints start at `initial` sends at once and grow up to `max`.
    pub(super) fn new(initial: usize, max: usize) -> Self {
        let initial = initial.max(1);
        Self { initial, max: max.max(initial), endpoints: Mutex::default() }
    }

    /// What an endpoint payd knows nothing of yet may have in flight.
    pub(super) fn initial(&self) -> usize {
        self.initial
    }

    /// Counts a send to `endpoint` unless it is at its limit.
    pub(super) fn enter(&self, endpoint: &EndpointId) -> bool {
        let mut map = self.endpoints.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= REMEMBERED && !map.contains_key(endpoint) {
            let initial = self.initial;
            map.retain(|_, e| e.in_flight > 0 || e.limit != initial);
        }
        let e = map.entry(endpoint.clone()).or_insert_with(|| Endpoint::new(self.initial));
        if e.in_flight >= e.limit {
            return false;
        }
        e.in_flight += 1;
        true
    }

    /// A send to `endpoint` ended with `answer`.
    pub(super) fn leave(&self, endpoint: &EndpointId, answer: Answer) {
        let mut map = self.endpoints.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = map.get_mut(endpoint) {
            e.in_flight = e.in_flight.saturating_sub(1);
            e.answered(answer, self.max);
        }
    }

    /// The endpoints whose room differs from [`Self::initial`], with the
    /// sends each may start now.
    pub(super) fn room(&self) -> Vec<(EndpointId, usize)> {
        let map = self.endpoints.lock().unwrap_or_else(|e| e.into_inner());
        map.iter()
            .map(|(id, e)| (id, e.limit.saturating_sub(e.in_flight)))
            .filter(|(_, free)| *free != self.initial)
            .map(|(id, free)| (id.clone(), free))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn limit_of(limits: &Limits, e: &EndpointId) -> usize {
        limits.endpoints.lock().unwrap()[e].limit
    }

    /// Sends one and answers it.
    fn round_trip(limits: &Limits, e: &EndpointId, answer: Answer) {
        assert!(limits.enter(e));
        limits.leave(e, answer);
    }

    #[test]
    fn an_endpoint_that_keeps_up_gets_more_up_to_the_maximum() {
        let (limits, e) = (Limits::new(4, 6), EndpointId::generate());
        for _ in 0..4 {
            round_trip(&limits, &e, Answer::Delivered(10 * MS));
        }
        assert_eq!(limit_of(&limits, &e), 5, "a limit's worth of quick answers adds one");
        for _ in 0..100 {
            round_trip(&limits, &e, Answer::Delivered(12 * MS));
        }
        assert_eq!(limit_of(&limits, &e), 6, "never above the maximum");
    }

    #[test]
    fn slow_answers_stop_the_growth_and_overload_halves() {
        let (limits, e) = (Limits::new(8, 64), EndpointId::generate());
        round_trip(&limits, &e, Answer::Delivered(10 * MS));
        for _ in 0..20 {
            // Alternating with slow ones, quick answers never make a streak.
            round_trip(&limits, &e, Answer::Delivered(10 * MS));
            round_trip(&limits, &e, Answer::Delivered(100 * MS));
        }
        assert_eq!(limit_of(&limits, &e), 8, "an endpoint that does not keep up does not grow");
        round_trip(&limits, &e, Answer::Overloaded);
        assert_eq!(limit_of(&limits, &e), 4);
        for _ in 0..5 {
            round_trip(&limits, &e, Answer::Overloaded);
        }
        assert_eq!(limit_of(&limits, &e), 1, "never below one");
        round_trip(&limits, &e, Answer::Other);
        assert_eq!(limit_of(&limits, &e), 1, "a 4xx changes nothing");
    }

    #[test]
    fn the_baseline_follows_the_endpoint_when_it_gets_slower_for_good() {
        let (limits, e) = (Limits::new(1, 4), EndpointId::generate());
        round_trip(&limits, &e, Answer::Delivered(MS));
        assert_eq!(limit_of(&limits, &e), 2);
        // Now it answers in 200 ms, steadily: at first that is not keeping
        // up with the 1 ms it gave, then, once a whole window without the
        // fast answer has passed, it is its normal pace.
        for _ in 0..(2 * WINDOW - 1) {
            round_trip(&limits, &e, Answer::Delivered(200 * MS));
        }
        assert_eq!(limit_of(&limits, &e), 2, "no growth while it is slower than it was");
        for _ in 0..10 {
            round_trip(&limits, &e, Answer::Delivered(200 * MS));
        }
        assert_eq!(limit_of(&limits, &e), 4, "at its own pace it keeps up again");
    }

    #[test]
    fn an_endpoint_at_its_limit_takes_no_more_and_room_lists_only_the_changed() {
        let (limits, e, other) = (Limits::new(2, 8), EndpointId::generate(), EndpointId::generate());
        assert!(limits.enter(&e) && limits.enter(&e));
        assert!(!limits.enter(&e), "at its limit");
        assert!(limits.enter(&other));
        let mut room = limits.room();
        room.sort();
        let mut want = vec![(e.clone(), 0), (other.clone(), 1)];
        want.sort();
        assert_eq!(room, want);
        limits.leave(&other, Answer::Other);
        assert!(limits.room().iter().all(|(id, _)| *id == e), "back at its starting room: not listed");
    }
}
