//! Uses the core from a `#![no_std]` crate: the token, a handshake and a
//! sealed packet, so the code paths are really linked in; and the embedded
//! member (`kairos-embedded`, on embassy-net), whose dependencies must not
//! bring `std` in either.
#![no_std]

use core::panic::PanicInfo;

use kairos_core::crypto::DefaultProvider;
use kairos_core::identity::Identity;
use kairos_core::session::{Local, Tunnel, TunnelConfig};
use kairos_core::time::{Duration, Instant};
use kairos_core::token::NetworkToken;

/// A counter-based generator: enough to exercise the code, not for keys.
struct CountingRng(u64);

impl rand_core::RngCore for CountingRng {
    fn next_u32(&mut self) -> u32 {
        self.next_u64() as u32
    }
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1);
        self.0
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for b in dest {
            *b = self.next_u64() as u8;
        }
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl rand_core::CryptoRng for CountingRng {}

/// The embedded member's core state in bytes, and one packet through its
/// overlay pipe: links `kairos-embedded` (embassy-net, smoltcp) in.
#[no_mangle]
pub extern "C" fn kairos_nostd_embedded(len: usize) -> usize {
    let pipe = kairos_embedded::pipe::Pipe::new();
    let packet = [0u8; 64];
    let queued = pipe.push_to_stack(&packet[..len.min(64)]);
    kairos_embedded::budget::Budget::measure().core_state + usize::from(queued)
}

/// Generates a token, handshakes two tunnels in memory and seals a packet;
/// returns the sealed length (0 on any failure).
#[no_mangle]
pub extern "C" fn kairos_nostd_smoke(seed: u64) -> usize {
    let mut rng = CountingRng(seed);
    let token = NetworkToken::generate(&mut rng);
    let keys = token.keys();
    let a_id = Identity::generate(&mut rng);
    let b_id = Identity::generate(&mut rng);
    let mut a = Local::new(&a_id, &keys, Duration::from_secs(1));
    let mut b = Local::new(&b_id, &keys, Duration::from_secs(1));
    let (Ok(mut ta), Ok(mut tb)) = (
        Tunnel::<DefaultProvider>::new(&a, b_id.static_public(), TunnelConfig::default()),
        Tunnel::<DefaultProvider>::new(&b, a_id.static_public(), TunnelConfig::default()),
    ) else {
        return 0;
    };
    let now = Instant::from_secs(1);
    let from = core::net::SocketAddr::from(([127, 0, 0, 1], 1));
    let mut buf = [0u8; 256];
    ta.connect();
    let Some(n) = ta.poll_transmit(now, &mut a, &mut rng, &mut buf) else {
        return 0;
    };
    let mut reply = [0u8; 256];
    let m = match tb.handle_datagram(now, &mut b, &mut rng, from, &mut buf[..n]) {
        Ok(kairos_core::session::Received::Reply(r)) => {
            reply[..r.len()].copy_from_slice(r);
            r.len()
        }
        _ => return 0,
    };
    if ta
        .handle_datagram(now, &mut a, &mut rng, from, &mut reply[..m])
        .is_err()
    {
        return 0;
    }
    let mut pkt = [0x45u8; 64 + 32];
    match ta.encapsulate(now, &mut pkt, 64) {
        Ok(sealed) => sealed.len(),
        Err(_) => 0,
    }
}

#[panic_handler]
fn panic(_: &PanicInfo) -> ! {
    loop {}
}
