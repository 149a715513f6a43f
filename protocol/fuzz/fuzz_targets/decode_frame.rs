//! Fuzz the frame decoders: any bytes must give a value or a typed error,
//! never a panic. Run: `cd protocol && cargo +nightly fuzz run decode_frame`
//! (or with stable `cargo fuzz` where `RUSTC_BOOTSTRAP=1` is acceptable).
#![no_main]

use libfuzzer_sys::fuzz_target;
use o2c_protocol::{Ack, Batch, Envelope, RawBatch, StatusUpdate};

fuzz_target!(|data: &[u8]| {
    if let Ok(raw) = RawBatch::decode(data) {
        for e in &raw.events {
            let _ = Envelope::decode(e.get().as_bytes());
        }
    }
    if let Ok(b) = Batch::decode(data) {
        // Whatever decodes must re-encode and decode to the same value.
        let again = Batch::decode(&b.encode().expect("encode")).expect("re-decode");
        assert_eq!(again, b);
    }
    let _ = Ack::decode(data);
    let _ = StatusUpdate::decode(data);
});
