//! Deliveries and attempts: one event on its way to one target, each request made for it and
//! what it did, as the engine reports it and the store keeps it.

use crate::event::Event;
use crate::subscription::Target;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    Pending,
    Delivered,
    Failed,
    /// The head of an ordering key that failed on an endpoint with `on_head_failure: block`:
    /// its key waits until it is retried by hand.
    Blocked,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::Blocked => "blocked",
        }
    }
    pub fn parse(s: &str) -> Option<DeliveryStatus> {
        match s {
            "pending" => Some(DeliveryStatus::Pending),
            "delivered" => Some(DeliveryStatus::Delivered),
            "failed" => Some(DeliveryStatus::Failed),
            "blocked" => Some(DeliveryStatus::Blocked),
            _ => None,
        }
    }
}

/// One event on its way to one endpoint (or executor).
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub id: crate::ids::DeliveryId,
    pub org_id: crate::ids::OrgId,
    pub event_id: crate::ids::EventId,
    pub target: Target,
    pub subscription_id: Option<crate::ids::SubscriptionId>,
    pub status: DeliveryStatus,
    pub attempts: u32,
    /// When the next attempt is due. `None` on a pending delivery: it is being attempted now
    /// (`in_flight`), or it waits for the delivery before it with the same ordering key.
    pub next_attempt_at: Option<i64>,
    /// Claimed by a node and being attempted.
    pub in_flight: bool,
    /// For an ordered endpoint: the key this delivery is ordered by.
    pub ordering_key: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// The most of a response body an attempt keeps, and of its error's text.
pub const ATTEMPT_TEXT_KEPT: usize = 4096;

/// One HTTP request made for a delivery (or one run of an event hook), and what came back.
/// Made by [`Attempt::new`], which holds its rules; the store rebuilds one it saved with
/// [`Attempt::stored`].
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    pub id: crate::ids::AttemptId,
    pub delivery_id: crate::ids::DeliveryId,
    pub at: i64,
    status_code: Option<u16>,
    duration_ms: f64,
    error: Option<String>,
    response_body: Option<String>,
    /// What held the attempt back once it was due (flow control), e.g. `120 ms: max_rps`.
    pub waited: Option<String>,
    /// For a failed attempt that will be retried: why the next one waits as long as it does.
    pub retry_reason: Option<String>,
    /// The request's headers as sent, in order, with credentials and signatures redacted
    /// (attempts that sent no HTTP request have none).
    pub request_headers: Option<Vec<(String, String)>>,
    /// The node that made the attempt, as the store recorded it (`None` before it is recorded,
    /// and for attempts recorded before nodes were).
    pub node: Option<String>,
}

/// What one attempt saw, for [`Attempt::new`] to check.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Seen {
    /// When it started (ms since the epoch).
    pub at: i64,
    /// The receiver's status, if it answered.
    pub status_code: Option<u16>,
    pub duration_ms: f64,
    /// Why it failed, if it did.
    pub error: Option<String>,
    pub response_body: Option<String>,
    pub request_headers: Option<Vec<(String, String)>>,
}

/// An attempt as the store saved it (its rules were checked when it was made).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredAttempt {
    pub id: crate::ids::AttemptId,
    pub delivery_id: crate::ids::DeliveryId,
    pub at: i64,
    pub status_code: Option<u16>,
    pub duration_ms: f64,
    pub error: Option<String>,
    pub response_body: Option<String>,
    pub waited: Option<String>,
    pub retry_reason: Option<String>,
    pub request_headers: Option<Vec<(String, String)>>,
    pub node: Option<String>,
}

impl Attempt {
    /// A new attempt of `delivery`, from what it saw. Its rules: a status is HTTP's (three
    /// digits, 100–999); a duration is a finite number of milliseconds, not negative; the
    /// response body and the error keep their first [`ATTEMPT_TEXT_KEPT`] bytes (cut at a
    /// character's boundary).
    pub fn new(
        delivery: &crate::ids::DeliveryId,
        seen: Seen,
    ) -> Result<Attempt, crate::error::CoreError> {
        use crate::error::CoreError;
        if let Some(code) = seen.status_code
            && !(100..=999).contains(&code)
        {
            return Err(CoreError::invalid(format!(
                "an attempt's status must be HTTP's (100 to 999), not {code}"
            )));
        }
        if !seen.duration_ms.is_finite() || seen.duration_ms < 0.0 {
            return Err(CoreError::invalid(format!(
                "an attempt's duration must be a number of milliseconds, not {}",
                seen.duration_ms
            )));
        }
        Ok(Attempt {
            id: crate::ids::AttemptId::generate(),
            delivery_id: delivery.clone(),
            at: seen.at,
            status_code: seen.status_code,
            duration_ms: seen.duration_ms,
            error: seen.error.map(kept),
            response_body: seen.response_body.map(kept),
            waited: None,
            retry_reason: None,
            request_headers: seen.request_headers,
            node: None,
        })
    }

    /// An attempt of `delivery` at `at` that got no answer, for `why` (kept within
    /// [`ATTEMPT_TEXT_KEPT`]). Always within the rules.
    pub fn without_answer(delivery: &crate::ids::DeliveryId, at: i64, why: String) -> Attempt {
        Attempt {
            id: crate::ids::AttemptId::generate(),
            delivery_id: delivery.clone(),
            at,
            status_code: None,
            duration_ms: 0.0,
            error: Some(kept(why)),
            response_body: None,
            waited: None,
            retry_reason: None,
            request_headers: None,
            node: None,
        }
    }

    /// An attempt as the store saved it.
    pub fn stored(a: StoredAttempt) -> Attempt {
        Attempt {
            id: a.id,
            delivery_id: a.delivery_id,
            at: a.at,
            status_code: a.status_code,
            duration_ms: a.duration_ms,
            error: a.error,
            response_body: a.response_body,
            waited: a.waited,
            retry_reason: a.retry_reason,
            request_headers: a.request_headers,
            node: a.node,
        }
    }

    /// The receiver's status, if it answered.
    pub fn status_code(&self) -> Option<u16> {
        self.status_code
    }

    pub fn duration_ms(&self) -> f64 {
        self.duration_ms
    }

    /// Why it failed (`None`: it did not).
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    /// The response body's first [`ATTEMPT_TEXT_KEPT`] bytes.
    pub fn response_body(&self) -> Option<&str> {
        self.response_body.as_deref()
    }
}

/// `text` cut to its first [`ATTEMPT_TEXT_KEPT`] bytes, at a character's boundary.
fn kept(mut text: String) -> String {
    if text.len() > ATTEMPT_TEXT_KEPT {
        let mut end = ATTEMPT_TEXT_KEPT;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// What happened to an attempt, and so what the delivery becomes.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Delivered,
    /// Try again at this time (ms).
    Retry {
        at: i64,
    },
    /// No more attempts.
    Failed,
}

/// An attempt's result as the delivery engine reports it to the store.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptResult {
    /// The delivery's organization: every write the result causes is scoped to it.
    pub org_id: crate::ids::OrgId,
    /// The endpoint the attempt went to (`None` for event hooks).
    pub endpoint_id: Option<crate::ids::EndpointId>,
    pub delivery_id: crate::ids::DeliveryId,
    pub attempt: Attempt,
    pub outcome: Outcome,
    /// Disable the endpoint for this reason (e.g. 410 Gone).
    pub disable_endpoint: Option<String>,
}

/// An endpoint that an attempt disabled, with its organization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisabledEndpoint {
    pub org_id: crate::ids::OrgId,
    pub endpoint_id: crate::ids::EndpointId,
}

/// An endpoint named with its organization.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EndpointRef {
    pub org_id: crate::ids::OrgId,
    pub endpoint_id: crate::ids::EndpointId,
}

/// A delivery that is due, with what the engine needs to make the attempt.
#[derive(Debug, Clone)]
pub struct DueDelivery {
    pub delivery_id: crate::ids::DeliveryId,
    pub org_id: crate::ids::OrgId,
    pub target: Target,
    pub attempts: u32,
    pub event: std::sync::Arc<Event>,
    /// Until when this node's claim holds (ms); after it, another claim may take the delivery.
    pub lease_until: i64,
    /// How long its first attempt waited behind the head of its ordering key (ms), if it did.
    pub ordering_wait_ms: Option<i64>,
    /// The `sync` subscription that made it, when it was made just now by a publish that
    /// attempts it itself, once, while its caller waits. A claim from the store is never sync:
    /// a sync delivery whose publish did not record it (a crash) is delivered like any other.
    pub sync: Option<crate::ids::SubscriptionId>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::DeliveryId;

    fn seen() -> Seen {
        Seen {
            at: 1,
            status_code: Some(200),
            duration_ms: 3.5,
            ..Seen::default()
        }
    }

    #[test]
    fn an_attempt_is_made_by_its_rules() {
        let d = DeliveryId::stored("d".into());
        let a = Attempt::new(&d, seen()).expect("valid");
        assert_eq!(
            (a.status_code(), a.duration_ms(), a.error()),
            (Some(200), 3.5, None)
        );
        for bad in [
            Seen {
                status_code: Some(42),
                ..seen()
            },
            Seen {
                status_code: Some(1000),
                ..seen()
            },
            Seen {
                duration_ms: -1.0,
                ..seen()
            },
            Seen {
                duration_ms: f64::NAN,
                ..seen()
            },
        ] {
            let refused = Attempt::new(&d, bad.clone()).expect_err("refused");
            assert!(
                refused.to_string().contains("attempt"),
                "{bad:?}: {refused}"
            );
        }
        let no_answer = Seen {
            status_code: None,
            error: Some("connection refused".into()),
            ..seen()
        };
        assert_eq!(
            Attempt::new(&d, no_answer).expect("valid").error(),
            Some("connection refused")
        );
        // An event hook's run has no status, and a successful one no error.
        let run = Seen {
            status_code: None,
            ..seen()
        };
        assert!(Attempt::new(&d, run).is_ok());
    }

    #[test]
    fn an_attempt_keeps_the_first_4_kib_of_its_texts_at_a_character_boundary() {
        let d = DeliveryId::stored("d".into());
        // 'é' is two bytes: 4095 bytes of 'a' and then 'é' cross the limit mid-character.
        let long = format!(
            "{}é{}",
            "a".repeat(ATTEMPT_TEXT_KEPT - 1),
            "b".repeat(10_000)
        );
        let a = Attempt::new(
            &d,
            Seen {
                status_code: Some(500),
                error: Some(long.clone()),
                response_body: Some(long),
                ..seen()
            },
        )
        .expect("valid");
        assert_eq!(a.response_body().map(str::len), Some(ATTEMPT_TEXT_KEPT - 1));
        assert_eq!(a.error().map(str::len), Some(ATTEMPT_TEXT_KEPT - 1));
        let short = Attempt::new(
            &d,
            Seen {
                response_body: Some("ok".into()),
                ..seen()
            },
        )
        .expect("valid");
        assert_eq!(short.response_body(), Some("ok"));
    }
}
