//! Key management (contract §11): create, list, revoke over the API and the
//! command line; a revoked key answers 401 on every api process within a
//! second; a key cannot revoke itself.

use std::time::{Duration, Instant};

use payd::app::Role;
use serde_json::json;

use crate::common::{TestApp, WAIT, eventually, payd, run_json};

#[tokio::test]
async fn keys_are_created_listed_and_revoked_everywhere_within_a_second() {
    let app = TestApp::spawn_with(&[Role::Api], &[]).await;
    let (status, key) = app.post("/v1/api_keys", json!({"kind": "secret", "name": "billing service"})).await;
    assert_eq!(status, 201, "{key}");
    let secret = key["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("sk_test_"), "{key}");
    assert_eq!(
        (key["object"].as_str(), key["kind"].as_str(), key["livemode"].as_bool()),
        (Some("api_key"), Some("secret"), Some(false))
    );
    assert_eq!(key["last4"].as_str(), Some(&secret[secret.len() - 4..]));
    assert_eq!(key["name"], "billing service");
    let id = key["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("key_"));

    // Listed without its secret.
    let (_, list) = app.get("/v1/api_keys").await;
    let listed = list["data"].as_array().unwrap().iter().find(|k| k["id"] == id.as_str()).cloned().expect("listed");
    assert!(listed.get("secret").is_none(), "{listed}");
    assert!(!list.to_string().contains(&secret));

    // A publishable key cannot manage keys; bad kinds are refused.
    let (status, pk) = app.post("/v1/api_keys", json!({"kind": "publishable"})).await;
    assert_eq!(status, 201);
    let pk_secret = pk["secret"].as_str().unwrap();
    assert!(pk_secret.starts_with("pk_test_"));
    let (status, _) = app.call_as(pk_secret, "GET", "/v1/api_keys", None, &[]).await;
    assert_eq!(status, 403);
    let (status, err) = app.post("/v1/api_keys", json!({"kind": "ops"})).await;
    assert_eq!((status, err["error"]["param"].as_str()), (400, Some("kind")), "{err}");

    // The new key works on this process and on a second api process (a
    // process of its own: its key cache is not this one's).
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let listen = format!("127.0.0.1:{port}");
    let _second =
        crate::common::spawn(&mut payd(&app, &["serve", "--role", "api"], &[("PAYD_HTTP__LISTEN", listen.as_str())]));
    let second_base = format!("http://{listen}");
    eventually("the second api process to listen", WAIT, || async {
        app.http.get(format!("{second_base}/health/live")).send().await.ok().filter(|r| r.status() == 200)
    })
    .await;
    let get = |base: String, key: String| {
        let http = app.http.clone();
        async move { http.get(format!("{base}/v1/payments")).bearer_auth(key).send().await.unwrap().status().as_u16() }
    };
    assert_eq!(get(app.base.clone(), secret.clone()).await, 200);
    assert_eq!(get(second_base.clone(), secret.clone()).await, 200, "cached on the second process now");

    // It cannot revoke itself.
    let (status, err) = app.call_as(&secret, "DELETE", &format!("/v1/api_keys/{id}"), None, &[]).await;
    assert_eq!((status, err["error"]["param"].as_str()), (400, Some("id")), "{err}");

    // Revoked with another key: 401 on both processes within a second.
    let revoked_at = Instant::now();
    let (status, body) = app.call("DELETE", &format!("/v1/api_keys/{id}"), None).await;
    assert_eq!((status, body), (200, json!({"id": id, "object": "api_key", "revoked": true})));
    assert_eq!(get(app.base.clone(), secret.clone()).await, 401, "at once where it was revoked");
    loop {
        let status = get(second_base.clone(), secret.clone()).await;
        if status == 401 {
            break;
        }
        assert_eq!(status, 200);
        assert!(revoked_at.elapsed() < Duration::from_secs(1), "the second process still takes the revoked key");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, _) = app.call("DELETE", &format!("/v1/api_keys/{id}"), None).await;
    assert_eq!(status, 404, "revoked already");

    // Another merchant's key is not found; operators revoke any key.
    let (_, other) = app.other_merchant().await;
    let (_, theirs) = app.call_as(&other, "POST", "/v1/api_keys", Some(json!({"kind": "secret"})), &[]).await;
    let their_id = theirs["id"].as_str().unwrap();
    let (status, _) = app.call("DELETE", &format!("/v1/api_keys/{their_id}"), None).await;
    assert_eq!(status, 404);
    let out = run_json(&app, &["keys", "revoke", their_id]);
    assert_eq!(out, json!({"id": their_id, "object": "api_key", "revoked": true}));
    let their_secret = theirs["secret"].as_str().unwrap();
    let deadline = Instant::now() + Duration::from_secs(1);
    while get(app.base.clone(), their_secret.to_owned()).await != 401 {
        assert!(Instant::now() < deadline, "a key revoked from the command line still works");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.stop().await;
}
