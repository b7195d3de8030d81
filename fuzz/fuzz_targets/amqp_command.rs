//! The AMQP command parser must turn any bytes into a command or a contract
//! error (4xx), never panic or claim an internal error.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err((status, message)) = payd::testing::parse_command(data) {
        assert!((400..500).contains(&status), "{status} {message}");
    }
});
