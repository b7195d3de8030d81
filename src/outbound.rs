//! One signed webhook `POST` (contract §6, §11): the client that checks
//! every address it connects to, the Standard Webhooks headers, and an
//! answer read only so far. The dispatcher sends deliveries with it and the
//! test send (contract §13) its example events, so both behave alike.

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, HeaderMap, RETRY_AFTER, USER_AGENT};

use crate::{target, webhooks as signing};

/// Bytes of a receiver's response body kept in the delivery log.
pub const RESPONSE_BODY_MAX: usize = 1024;
/// Most of a receiver's answer payd reads (contract §11): what lies beyond
/// is left unread and the connection dropped, however much is sent.
pub const RESPONSE_READ_MAX: usize = 64 * 1024;
/// The `error` of a send that got no answer in time.
pub const TIMEOUT: &str = "timeout";
/// The start of the `error` of a send that could not reach the endpoint.
pub const CONNECTION_ERROR: &str = "connection error";

/// How a `POST` ended.
#[derive(Clone, Debug, Default)]
pub struct Posted {
    /// The HTTP status, if the endpoint answered.
    pub status_code: Option<u16>,
    /// Why it is not a 2xx.
    pub error: Option<String>,
    /// The start of the answer ([`RESPONSE_BODY_MAX`] bytes).
    pub response_body: Option<String>,
    /// `Retry-After`, in seconds.
    pub retry_after: Option<Duration>,
}

impl Posted {
    fn failed(error: impl Into<String>) -> Self {
        Self { error: Some(error.into()), ..Self::default() }
    }

    /// True for a 2xx.
    pub fn delivered(&self) -> bool {
        self.status_code.is_some_and(|s| (200..300).contains(&s))
    }
}

/// What is signed and sent.
pub struct Message<'a> {
    /// The endpoint's URL.
    pub url: &'a str,
    /// Live endpoints take `https` only.
    pub livemode: bool,
    /// The endpoint's secret (`whsec_…`), and the previous one while it is
    /// still valid.
    pub secret: &'a str,
    pub previous_secret: Option<&'a str>,
    /// `webhook-id`: the event id.
    pub id: &'a str,
    pub body: String,
}

/// A client for webhook endpoints.
#[derive(Clone)]
pub struct Outbound {
    client: reqwest::Client,
    allow_private: bool,
}

impl Outbound {
    /// Requests time out after `timeout` and never follow redirects; unless
    /// `allow_private`, only public addresses are reached.
    pub fn new(timeout: Duration, allow_private: bool) -> reqwest::Result<Self> {
        let builder = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .redirect(reqwest::redirect::Policy::none());
        let client = target::client(builder, Arc::new(target::SystemLookup), allow_private).build()?;
        Ok(Self { client, allow_private })
    }

    /// Signs and sends `m`; never an error: a failure is in [`Posted::error`].
    pub async fn post(&self, m: Message<'_>) -> Posted {
        let url = match target::parse_url(m.url, m.livemode) {
            Ok(u) => u,
            Err(e) => return Posted::failed(e.to_string()),
        };
        // DNS may have changed since the endpoint was created: a name is
        // checked by the client's resolver as it connects, a literal here.
        if let Err(e) = target::check_literal(&url, self.allow_private) {
            return Posted::failed(e.to_string());
        }
        let timestamp = time::OffsetDateTime::now_utc().unix_timestamp();
        let Some(signature) =
            signing::signature_header(m.secret, m.previous_secret, m.id, timestamp, m.body.as_bytes())
        else {
            return Posted::failed("endpoint secret is malformed");
        };
        let response = self
            .client
            .post(url)
            .header(CONTENT_TYPE, "application/json")
            .header(USER_AGENT, concat!("payd/", env!("CARGO_PKG_VERSION")))
            .header("webhook-id", m.id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(m.body)
            .send()
            .await;
        let response = match response {
            Ok(r) => r,
            Err(e) if e.is_timeout() => return Posted::failed(TIMEOUT),
            Err(e) => return Posted::failed(format!("{CONNECTION_ERROR}: {}", error_chain(&e))),
        };
        let status = response.status().as_u16();
        let retry_after = retry_after(response.headers());
        let response_body = read_bounded(response).await;
        let error = (!(200..300).contains(&status)).then(|| format!("HTTP {status}"));
        Posted { status_code: Some(status), error, response_body, retry_after }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// The start of the answer's body, reading at most [`RESPONSE_READ_MAX`].
async fn read_bounded(mut response: reqwest::Response) -> Option<String> {
    let mut body = Vec::new();
    while body.len() < RESPONSE_READ_MAX {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk[..chunk.len().min(RESPONSE_READ_MAX - body.len())]),
            Ok(None) => break,
            Err(_) if !body.is_empty() => break,
            Err(_) => return None,
        }
    }
    Some(truncate(&body))
}

fn truncate(body: &[u8]) -> String {
    let cut = &body[..body.len().min(RESPONSE_BODY_MAX)];
    String::from_utf8_lossy(cut).into_owned()
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let secs: u64 = headers.get(RETRY_AFTER)?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_response_bodies_are_truncated() {
        assert_eq!(truncate(&[b'a'; 5000]).len(), RESPONSE_BODY_MAX);
        assert!(Posted { status_code: Some(204), ..Posted::default() }.delivered());
        assert!(!Posted::failed(TIMEOUT).delivered());
    }
}
