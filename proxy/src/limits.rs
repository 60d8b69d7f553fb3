//! Per-key limits: a token bucket for how often commands start, and a cap on
//! how many run at once.
//!
//! Counted by a string key; the server uses the service name with the key's
//! fingerprint. Only keys that passed authentication ever get here, so the
//! maps stay as small as the authorized keys files.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::policy::Refusal;

/// The limits of one service, applied to each of its keys separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyLimits {
    pub rate_per_minute: u32,
    pub burst: u32,
    pub max_sessions: u32,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

#[derive(Debug, Default)]
struct State {
    buckets: HashMap<String, Bucket>,
    running: HashMap<String, u32>,
}

/// Shared by all connections of one server.
#[derive(Debug, Clone, Default)]
pub struct Limiter {
    state: Arc<Mutex<State>>,
}

/// One running command; dropping it frees its place.
#[derive(Debug)]
pub struct Permit {
    state: Arc<Mutex<State>>,
    key: String,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut state = self.state.lock().unwrap();
        if let Some(count) = state.running.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                state.running.remove(&self.key);
            }
        }
    }
}

impl Limiter {
    pub fn new() -> Limiter {
        Limiter::default()
    }

    /// Takes a token and a session place for `key`, or says why not.
    pub fn acquire(&self, key: &str, limits: KeyLimits) -> Result<Permit, Refusal> {
        self.acquire_at(key, limits, Instant::now())
    }

    /// [`Limiter::acquire`] at a given time, for tests.
    pub fn acquire_at(&self, key: &str, limits: KeyLimits, now: Instant) -> Result<Permit, Refusal> {
        let mut state = self.state.lock().unwrap();
        // The session cap is checked first, so that a refused command does
        // not also cost a token.
        if state.running.get(key).copied().unwrap_or(0) >= limits.max_sessions {
            return Err(Refusal::TooManySessions(limits.max_sessions));
        }
        let burst = f64::from(limits.burst);
        let bucket = state.buckets.entry(key.to_owned()).or_insert(Bucket { tokens: burst, updated: now });
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * f64::from(limits.rate_per_minute) / 60.0).min(burst);
        bucket.updated = bucket.updated.max(now);
        if bucket.tokens < 1.0 {
            return Err(Refusal::RateLimited);
        }
        bucket.tokens -= 1.0;
        *state.running.entry(key.to_owned()).or_insert(0) += 1;
        Ok(Permit { state: self.state.clone(), key: key.to_owned() })
    }

    /// Commands running for `key`.
    pub fn running(&self, key: &str) -> u32 {
        self.state.lock().unwrap().running.get(key).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const LIMITS: KeyLimits = KeyLimits { rate_per_minute: 60, burst: 3, max_sessions: 2 };

    #[test]
    fn burst_then_refill() {
        let limiter = Limiter::new();
        let t0 = Instant::now();
        for _ in 0..3 {
            drop(limiter.acquire_at("k", LIMITS, t0).unwrap());
        }
        assert_eq!(limiter.acquire_at("k", LIMITS, t0).unwrap_err(), Refusal::RateLimited);
        // 60 per minute: one token a second.
        assert_eq!(limiter.acquire_at("k", LIMITS, t0 + Duration::from_millis(500)).unwrap_err(), Refusal::RateLimited);
        drop(limiter.acquire_at("k", LIMITS, t0 + Duration::from_millis(1500)).unwrap());
        // The bucket never holds more than the burst.
        let later = t0 + Duration::from_secs(3600);
        for _ in 0..3 {
            drop(limiter.acquire_at("k", LIMITS, later).unwrap());
        }
        assert_eq!(limiter.acquire_at("k", LIMITS, later).unwrap_err(), Refusal::RateLimited);
    }

    #[test]
    fn keys_are_limited_separately() {
        let limiter = Limiter::new();
        let t0 = Instant::now();
        for _ in 0..3 {
            drop(limiter.acquire_at("a", LIMITS, t0).unwrap());
        }
        assert!(limiter.acquire_at("a", LIMITS, t0).is_err());
        assert!(limiter.acquire_at("b", LIMITS, t0).is_ok());
    }

    #[test]
    fn session_cap_is_released_on_drop() {
        let limiter = Limiter::new();
        let t0 = Instant::now();
        let many = KeyLimits { burst: 100, ..LIMITS };
        let first = limiter.acquire_at("k", many, t0).unwrap();
        let _second = limiter.acquire_at("k", many, t0).unwrap();
        assert_eq!(limiter.acquire_at("k", many, t0).unwrap_err(), Refusal::TooManySessions(2));
        assert_eq!(limiter.running("k"), 2);
        drop(first);
        assert_eq!(limiter.running("k"), 1);
        assert!(limiter.acquire_at("k", many, t0).is_ok());
    }

    #[test]
    fn a_refused_session_costs_no_token() {
        let limiter = Limiter::new();
        let t0 = Instant::now();
        let one = KeyLimits { rate_per_minute: 1, burst: 2, max_sessions: 1 };
        let running = limiter.acquire_at("k", one, t0).unwrap();
        for _ in 0..5 {
            assert_eq!(limiter.acquire_at("k", one, t0).unwrap_err(), Refusal::TooManySessions(1));
        }
        drop(running);
        assert!(limiter.acquire_at("k", one, t0).is_ok());
    }
}
