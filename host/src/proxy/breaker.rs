//! A circuit breaker for one proxy service.
//!
//! While a service's proxies keep failing, every call would wait for a
//! connection attempt (or several, with retries) before it fails. After
//! [`BreakerConfig::failures`] failed calls in a row the breaker opens: calls
//! fail at once, without any network traffic. After
//! [`BreakerConfig::cooldown`] it lets one call through (half-open): if that
//! probe succeeds the breaker closes, if it fails the breaker opens again for
//! another cool-down.

use std::time::Duration;

use tokio::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Failed calls in a row that open the breaker.
    pub failures: u32,
    /// How long an open breaker refuses calls before letting a probe through.
    pub cooldown: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig { failures: 5, cooldown: Duration::from_secs(30) }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BreakerState {
    /// Calls go through.
    Closed,
    /// Calls fail at once until the cool-down is over.
    Open,
    /// One probe call is under way (or may start); the others fail at once.
    HalfOpen,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half-open",
        }
    }
}

/// Why a call was not let through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// Failed calls in a row when the breaker opened.
    pub failures: u32,
    /// Until the next probe may go.
    pub retry_in: Duration,
}

#[derive(Debug)]
pub struct Breaker {
    config: BreakerConfig,
    failures_in_a_row: u32,
    /// When the breaker last opened; `None` while closed.
    opened_at: Option<Instant>,
    probing: bool,
}

impl Breaker {
    pub fn new(config: BreakerConfig) -> Breaker {
        Breaker {
            config: BreakerConfig { failures: config.failures.max(1), ..config },
            failures_in_a_row: 0,
            opened_at: None,
            probing: false,
        }
    }

    pub fn state(&self, now: Instant) -> BreakerState {
        match self.opened_at {
            None => BreakerState::Closed,
            Some(_) if self.probing => BreakerState::HalfOpen,
            Some(opened) if now >= opened + self.config.cooldown => BreakerState::HalfOpen,
            Some(_) => BreakerState::Open,
        }
    }

    pub fn failures_in_a_row(&self) -> u32 {
        self.failures_in_a_row
    }

    /// Whether a call may go now. A call let through while half-open is the
    /// probe: it must end in [`Self::succeeded`] or [`Self::failed`].
    pub fn try_pass(&mut self, now: Instant) -> Result<(), Refusal> {
        let Some(opened) = self.opened_at else { return Ok(()) };
        let reopen = opened + self.config.cooldown;
        if now >= reopen && !self.probing {
            self.probing = true;
            return Ok(());
        }
        Err(Refusal { failures: self.failures_in_a_row, retry_in: reopen.saturating_duration_since(now) })
    }

    pub fn succeeded(&mut self) {
        self.failures_in_a_row = 0;
        self.opened_at = None;
        self.probing = false;
    }

    pub fn failed(&mut self, now: Instant) {
        self.failures_in_a_row = self.failures_in_a_row.saturating_add(1);
        if self.probing || self.failures_in_a_row >= self.config.failures {
            self.opened_at = Some(now);
        }
        self.probing = false;
    }

    /// A probe that ended without telling whether the service works (the
    /// caller gave up): the next call may probe again.
    pub fn probe_abandoned(&mut self) {
        self.probing = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> Breaker {
        Breaker::new(BreakerConfig { failures: 3, cooldown: Duration::from_secs(10) })
    }

    #[test]
    fn opens_after_the_configured_failures_in_a_row() {
        let now = Instant::now();
        let mut b = breaker();
        b.failed(now);
        b.failed(now);
        assert_eq!(b.state(now), BreakerState::Closed);
        assert!(b.try_pass(now).is_ok());
        b.failed(now);
        assert_eq!(b.state(now), BreakerState::Open);
        let refusal = b.try_pass(now + Duration::from_secs(4)).unwrap_err();
        assert_eq!(refusal, Refusal { failures: 3, retry_in: Duration::from_secs(6) });
    }

    #[test]
    fn a_success_resets_the_count() {
        let now = Instant::now();
        let mut b = breaker();
        b.failed(now);
        b.failed(now);
        b.succeeded();
        b.failed(now);
        b.failed(now);
        assert_eq!(b.state(now), BreakerState::Closed);
    }

    #[test]
    fn one_probe_after_the_cooldown_closes_it_on_success() {
        let now = Instant::now();
        let mut b = breaker();
        (0..3).for_each(|_| b.failed(now));
        let later = now + Duration::from_secs(10);
        assert_eq!(b.state(later), BreakerState::HalfOpen);
        assert!(b.try_pass(later).is_ok(), "the probe goes");
        assert!(b.try_pass(later).is_err(), "others wait for the probe");
        b.succeeded();
        assert_eq!(b.state(later), BreakerState::Closed);
        assert!(b.try_pass(later).is_ok());
    }

    #[test]
    fn a_failed_probe_opens_it_for_another_cooldown() {
        let now = Instant::now();
        let mut b = breaker();
        (0..3).for_each(|_| b.failed(now));
        let later = now + Duration::from_secs(11);
        b.try_pass(later).unwrap();
        b.failed(later);
        assert_eq!(b.state(later), BreakerState::Open);
        assert_eq!(b.try_pass(later + Duration::from_secs(1)).unwrap_err().retry_in, Duration::from_secs(9));
        let abandoned_at = later + Duration::from_secs(10);
        b.try_pass(abandoned_at).unwrap();
        b.probe_abandoned();
        assert!(b.try_pass(abandoned_at).is_ok(), "an abandoned probe lets the next call probe");
    }
}
