//! The AMQP command parser must turn any bytes into a command or a contract
//! error (4xx), never panic or claim an internal error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use payd::service::payments::CreatePayment;
use payd::worker::intake::{parse_body, take_payment_id};

fuzz_target!(|data: &[u8]| {
    match parse_body(data) {
        Err(e) => assert!((400..500).contains(&e.status), "{e}"),
        Ok(cmd) => {
            let checked = match cmd.kind.as_str() {
                "payment.create" => CreatePayment::parse(serde_json::Value::Object(cmd.data)).map(|_| ()),
                _ => take_payment_id(cmd.data).map(|_| ()),
            };
            if let Err(e) = checked {
                assert!((400..500).contains(&e.status), "{e}");
            }
        }
    }
});
