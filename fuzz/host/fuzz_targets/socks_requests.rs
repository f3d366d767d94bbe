#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    kairos_host_fuzz::socks_requests::run(data);
});
