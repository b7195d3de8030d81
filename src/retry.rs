//! Retry schedules: an explicit list of delays (`1m,5m,30m,…`) with
//! proportional jitter, exposed as a [`backon`] backoff so the same schedule
//! drives persisted retries (payment attempts, webhook deliveries) and any
//! in-process `Retryable::retry`.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;

/// A list of delays, each varied by up to ±`jitter` (0.1 = ±10 %).
#[derive(Clone, Debug)]
pub struct Schedule {
    delays: Arc<[Duration]>,
    jitter: f64,
}

impl Schedule {
    /// A schedule; `jitter` is clamped to 0..=1.
    pub fn new(delays: &[Duration], jitter: f64) -> Self {
        Self { delays: delays.into(), jitter: jitter.clamp(0.0, 1.0) }
    }

    /// The undisturbed delay after failed attempt `failed` (1-based).
    pub fn step(&self, failed: usize) -> Option<Duration> {
        failed.checked_sub(1).and_then(|i| self.delays.get(i)).copied()
    }

    /// The jittered delay before the next attempt after failed attempt
    /// `failed` (1-based); `None` when the schedule is used up.
    pub fn delay_after(&self, failed: usize) -> Option<Duration> {
        self.step(failed).map(|d| self.jittered(d))
    }

    fn jittered(&self, d: Duration) -> Duration {
        if self.jitter == 0.0 {
            return d;
        }
        d.mul_f64(rand::rng().random_range(1.0 - self.jitter..=1.0 + self.jitter))
    }

    /// The schedule as a backon backoff (an iterator of jittered delays).
    pub fn backoff(&self) -> ScheduleBackoff {
        ScheduleBackoff { schedule: self.clone(), next: 0 }
    }
}

/// Iterates a [`Schedule`]'s jittered delays; a [`backon::Backoff`].
#[derive(Clone, Debug)]
pub struct ScheduleBackoff {
    schedule: Schedule,
    next: usize,
}

impl Iterator for ScheduleBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        self.next += 1;
        self.schedule.delay_after(self.next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use backon::Retryable;

    fn secs(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|s| Duration::from_secs(*s)).collect()
    }

    #[test]
    fn delays_stay_within_the_jitter() {
        let s = Schedule::new(&secs(&[60, 300]), 0.1);
        for _ in 0..200 {
            let d = s.delay_after(1).unwrap();
            assert!(d >= Duration::from_secs(54) && d <= Duration::from_secs(66), "{d:?}");
            let d = s.delay_after(2).unwrap();
            assert!(d >= Duration::from_secs(270) && d <= Duration::from_secs(330), "{d:?}");
        }
        assert_eq!(s.delay_after(3), None);
        assert_eq!(s.delay_after(0), None);
        assert_eq!(s.step(2), Some(Duration::from_secs(300)));
    }

    #[test]
    fn the_backoff_yields_each_step_once() {
        let s = Schedule::new(&secs(&[1, 2, 3]), 0.0);
        assert_eq!(s.backoff().collect::<Vec<_>>(), secs(&[1, 2, 3]));
    }

    #[tokio::test]
    async fn it_drives_backon_retries() {
        let s = Schedule::new(&[Duration::from_millis(1); 2], 0.2);
        let mut calls = 0;
        let result: Result<(), &str> = (|| {
            calls += 1;
            async { Err("still failing") }
        })
        .retry(s.backoff())
        .await;
        assert!(result.is_err());
        assert_eq!(calls, 3, "one call and two retries");
    }
}
