//! Cursor paging (`starting_after` / `ending_before`) beside `offset` on
//! every list: each object once and in order, pages that do not shift while
//! objects arrive (offset pages do), the newer page, and the errors.

use payd::app::Role;
use serde_json::{Value, json};

use crate::common::{Receiver, TestApp, eventually};

/// How many objects each list starts with: two full pages and a short one.
const MADE: usize = 5;

fn ids(body: &Value) -> Vec<String> {
    body["data"].as_array().unwrap().iter().map(|o| o["id"].as_str().unwrap().to_owned()).collect()
}

fn url(list: &str, params: &str) -> String {
    let sep = if list.contains('?') { '&' } else { '?' };
    format!("{list}{sep}{params}")
}

/// A page's ids, `has_more` and `total_count`.
async fn page(app: &TestApp, list: &str, params: &str) -> (Vec<String>, bool, i64) {
    let (status, body) = app.get(&url(list, params)).await;
    assert_eq!(status, 200, "{list} {params}: {body}");
    (ids(&body), body["has_more"].as_bool().unwrap(), body["total_count"].as_i64().unwrap())
}

async fn refused(app: &TestApp, list: &str, params: &str, param: &str) {
    let (status, body) = app.get(&url(list, params)).await;
    assert_eq!((status, body["error"]["param"].as_str()), (400, Some(param)), "{list} {params}: {body}");
}

/// `list` holds `made` (oldest first) and nothing else; `add` makes one more
/// object of it; `foreign` is an id of the list's kind that is not in it.
async fn pages_by_cursor(app: &TestApp, list: &str, made: &[String], add: impl AsyncFn() -> String, foreign: &str) {
    assert_eq!(made.len(), MADE);
    let newest: Vec<String> = made.iter().rev().cloned().collect();
    let total = MADE as i64;
    // Walk the whole list two at a time.
    let (mut seen, mut params) = (Vec::new(), "limit=2".to_owned());
    loop {
        let (ids, more, count) = page(app, list, &params).await;
        assert!(ids.len() <= 2 && count == total, "{list} {params}: {ids:?} of {count}");
        seen.extend(ids);
        assert!(seen.len() <= MADE, "{list}: {seen:?}");
        if !more {
            break;
        }
        params = format!("limit=2&starting_after={}", seen.last().unwrap());
    }
    assert_eq!(seen, newest, "{list}: every object once, newest first");
    assert_eq!(page(app, list, &format!("limit=2&starting_after={}", newest[4])).await, (vec![], false, total));

    // A new object arrives: cursor pages stay, offset pages shift.
    let (first, more, _) = page(app, list, "limit=2").await;
    assert_eq!((first.as_slice(), more), (&newest[..2], true));
    let new = add().await;
    let (next, more, count) = page(app, list, &format!("limit=2&starting_after={}", first[1])).await;
    assert_eq!(
        (next.as_slice(), more, count),
        (&newest[2..4], true, total + 1),
        "{list}: the cursor page did not shift"
    );
    let (shifted, _, _) = page(app, list, "limit=2&offset=2").await;
    assert_eq!(shifted, newest[1..3].to_vec(), "{list}: offset pages shift (and still work)");

    // The page just newer than a cursor, still newest first.
    let (back, more, _) = page(app, list, &format!("limit=2&ending_before={}", newest[2])).await;
    assert_eq!((back.as_slice(), more), (&newest[..2], true), "{list}: the new object is newer still");
    let (newer, more, _) = page(app, list, &format!("limit=2&ending_before={}", newest[0])).await;
    assert_eq!((newer, more), (vec![new.clone()], false), "{list}");
    let (newer, more, _) = page(app, list, &format!("limit=10&ending_before={}", newest[4])).await;
    assert_eq!(newer.len(), MADE, "{list}: {newer:?}");
    assert_eq!((newer[0].as_str(), &newer[1..], more), (new.as_str(), &newest[..4], false), "{list}");

    // A cursor with `offset`, two cursors, or a cursor not of this list.
    let (a, b) = (&newest[0], &newest[1]);
    refused(app, list, &format!("starting_after={a}&offset=0"), "starting_after").await;
    refused(app, list, &format!("ending_before={a}&offset=2"), "starting_after").await;
    refused(app, list, &format!("starting_after={a}&ending_before={b}"), "starting_after").await;
    refused(app, list, &format!("starting_after={foreign}"), "starting_after").await;
    refused(app, list, &format!("ending_before={foreign}"), "ending_before").await;
    refused(app, list, "starting_after=nonsense", "starting_after").await;
    refused(app, list, "ending_before=evt_0123", "ending_before").await;
}

fn id(body: &Value) -> String {
    body["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn payments_page_by_cursor() {
    let app = TestApp::spawn_with(&[Role::Api], &[]).await;
    let mut made = Vec::new();
    for amount in 1..=MADE as i64 {
        made.push(id(&app.create_payment("pm_test_success", 100 * amount).await));
    }
    let (_, other_key) = app.other_merchant().await;
    let body = json!({"amount": 100, "currency": "USD", "payment_method_id": "pm_test_success"});
    let (status, theirs) = app.call_as(&other_key, "POST", "/v1/payments", Some(body), &[]).await;
    assert_eq!(status, 201, "{theirs}");
    let add = async || id(&app.create_payment("pm_test_success", 999).await);
    pages_by_cursor(&app, "/v1/payments", &made, add, &id(&theirs)).await;
    app.stop().await;
}

#[tokio::test]
async fn payment_search_pages_by_cursor() {
    let app = TestApp::spawn_with(&[Role::Api], &[]).await;
    let create = async |customer: &str| {
        let body =
            json!({"amount": 100, "currency": "USD", "payment_method_id": "pm_test_success", "customer_id": customer});
        let (status, p) = app.post("/v1/payments", body).await;
        assert_eq!(status, 201, "{p}");
        id(&p)
    };
    let mut made = Vec::new();
    for _ in 0..MADE {
        made.push(create("cust_paging").await);
    }
    // Another payment of this merchant, not found by the search.
    create("cust_elsewhere").await;
    let (_, other_key) = app.other_merchant().await;
    let body = json!({"amount": 100, "currency": "USD", "payment_method_id": "pm_test_success"});
    let (_, theirs) = app.call_as(&other_key, "POST", "/v1/payments", Some(body), &[]).await;
    pages_by_cursor(
        &app,
        "/v1/payments/search?query=cust_paging",
        &made,
        async || create("cust_paging").await,
        &id(&theirs),
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn webhook_endpoints_and_deliveries_page_by_cursor() {
    let app = TestApp::spawn_with(&[Role::Api], &[]).await;
    let add_endpoint = async || app.add_endpoint("http://127.0.0.1:9/hook").await.0;
    let mut made = Vec::new();
    for _ in 0..MADE {
        made.push(add_endpoint().await);
    }
    let (_, other_key) = app.other_merchant().await;
    let body = json!({"url": "http://127.0.0.1:9/theirs", "enabled_events": ["*"]});
    let (status, theirs) = app.call_as(&other_key, "POST", "/v1/webhook_endpoints", Some(body), &[]).await;
    assert_eq!(status, 201, "{theirs}");
    pages_by_cursor(&app, "/v1/webhook_endpoints", &made, add_endpoint, &id(&theirs)).await;

    // Deliveries of the first endpoint: one per payment.created. A delivery
    // of another endpoint of the same merchant is not a cursor of this list.
    let endpoint = &made[0];
    // Delivery ids are not time-ordered: find each by its payment, in the
    // order the payments were made.
    let delivery = async |endpoint: &str, payment: &str| -> String {
        sqlx::query_scalar(
            "SELECT d.id FROM webhook_deliveries d JOIN events e ON e.id = d.event_id
             WHERE d.endpoint_id = $1 AND e.payment_id = $2",
        )
        .bind(endpoint)
        .bind(payment)
        .fetch_one(&app.pool)
        .await
        .unwrap()
    };
    let (mut deliveries, mut payments) = (Vec::new(), Vec::new());
    for amount in 1..=MADE as i64 {
        payments.push(id(&app.create_payment("pm_test_success", amount).await));
        deliveries.push(delivery(endpoint, payments.last().unwrap()).await);
    }
    let foreign = delivery(&made[1], &payments[0]).await;
    let list = format!("/v1/webhook_endpoints/{endpoint}/deliveries");
    let add = async || delivery(endpoint, &id(&app.create_payment("pm_test_success", 999).await)).await;
    pages_by_cursor(&app, &list, &deliveries, add, &foreign).await;
    app.stop().await;
}

#[tokio::test]
async fn payment_methods_page_by_cursor() {
    let app = TestApp::spawn_with(&[Role::Api], &[]).await;
    let add = async || app.payment_method("sandbox", "tok_success").await;
    let mut made = Vec::new();
    for _ in 0..MADE {
        made.push(add().await);
    }
    let (_, other_key) = app.other_merchant().await;
    let body = json!({"provider": "sandbox", "token": "tok_success"});
    let (status, theirs) = app.call_as(&other_key, "POST", "/v1/payment_methods", Some(body), &[]).await;
    assert_eq!(status, 201, "{theirs}");
    pages_by_cursor(&app, "/v1/payment_methods", &made, add, &id(&theirs)).await;
    // A method deleted since its page was read still pages on.
    let (status, _) = app.call("DELETE", &format!("/v1/payment_methods/{}", made[2]), None).await;
    assert_eq!(status, 200);
    let (next, _, _) = page(&app, "/v1/payment_methods", &format!("limit=2&starting_after={}", made[2])).await;
    assert_eq!(next, vec![made[1].clone(), made[0].clone()]);
    app.stop().await;
}

#[tokio::test]
async fn transactions_and_attempts_page_by_cursor() {
    let app = TestApp::spawn().await;
    let p = app.create_payment("pm_test_success", 1000).await;
    let pay = id(&p);
    app.wait_status(&pay, "succeeded").await;
    for _ in 0..2 {
        let (status, body) = app.post(&format!("/v1/payments/{pay}/refund"), json!({"amount": 100})).await;
        assert_eq!(status, 200, "{body}");
    }
    let list = format!("/v1/payments/{pay}/transactions");
    let (all, _, total) = page(&app, &list, "limit=10").await;
    assert_eq!(all.len() as i64, total);
    assert!(total >= 3, "{all:?}");
    let (rest, more, _) = page(&app, &list, &format!("limit=1&starting_after={}", all[0])).await;
    assert_eq!((rest.as_slice(), more), (&all[1..2], total > 2));
    let (back, more, _) = page(&app, &list, &format!("limit=5&ending_before={}", all[2])).await;
    assert_eq!((back.as_slice(), more), (&all[..2], false));
    // Another payment's transaction is not a cursor of this one's list.
    let other = id(&app.create_payment("pm_test_success", 500).await);
    let (theirs, _, _) = page(&app, &format!("/v1/payments/{other}/transactions"), "").await;
    refused(&app, &list, &format!("starting_after={}", theirs[0]), "starting_after").await;

    // Attempts, across payments and of one.
    app.wait_status(&other, "succeeded").await;
    let (attempts, _, total) = page(&app, "/v1/attempts", "limit=10").await;
    assert!(total >= 2, "{attempts:?}");
    let (rest, _, _) = page(&app, "/v1/attempts", &format!("limit=10&starting_after={}", attempts[0])).await;
    assert_eq!(rest, attempts[1..].to_vec());
    let (newer, more, _) = page(&app, "/v1/attempts", &format!("ending_before={}", attempts[1])).await;
    assert_eq!((newer, more), (vec![attempts[0].clone()], false));
    let of_payment = format!("/v1/payments/{pay}/attempts");
    let (mine, _, _) = page(&app, &of_payment, "").await;
    let (after, more, _) = page(&app, &of_payment, &format!("starting_after={}", mine[0])).await;
    assert_eq!((after.as_slice(), more), (&mine[1..], false));
    refused(&app, "/v1/attempts", "starting_after=att_00000000000000000000000000000000", "starting_after").await;
    refused(&app, "/v1/attempts", &format!("ending_before={pay}"), "ending_before").await;
    app.stop().await;
}

#[tokio::test]
async fn delivery_attempts_page_by_cursor() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    receiver.always(500);
    app.add_endpoint(&receiver.url).await;
    let pay = id(&app.create_payment("pm_test_decline", 100).await);
    let delivery: String = eventually("a delivery", std::time::Duration::from_secs(10), || async {
        sqlx::query_scalar(
            "SELECT d.id FROM webhook_deliveries d JOIN events e ON e.id = d.event_id
             WHERE e.payment_id = $1 AND e.type = 'payment.created'",
        )
        .bind(&pay)
        .fetch_optional(&app.pool)
        .await
        .unwrap()
    })
    .await;
    let list = format!("/v1/webhook_deliveries/{delivery}/attempts");
    let all = eventually("three attempts", std::time::Duration::from_secs(20), || async {
        let (ids, _, total) = page(&app, &list, "limit=10").await;
        (total >= 3).then_some(ids)
    })
    .await;
    let (rest, more, _) = page(&app, &list, &format!("limit=1&starting_after={}", all[0])).await;
    assert_eq!((rest.as_slice(), more), (&all[1..2], true));
    let (back, more, _) = page(&app, &list, &format!("limit=1&ending_before={}", all[2])).await;
    assert_eq!((back.as_slice(), more), (&all[1..2], true));
    let (newest, more, _) = page(&app, &list, &format!("ending_before={}", all[1])).await;
    assert_eq!((newest.as_slice(), more), (&all[..1], false));
    refused(&app, &list, "starting_after=wha_999999999", "starting_after").await;
    refused(&app, &list, "ending_before=wha_x1", "ending_before").await;
    refused(&app, &list, &format!("starting_after={}&offset=1", all[0]), "starting_after").await;
    app.stop().await;
}
