//! Writes the seed corpora under `corpus/<target>/`, or with `--check`
//! verifies that the committed ones are what this build would write.
//!
//! ```text
//! cargo +nightly run --example gen-corpus            # (re)write the seeds
//! cargo +nightly run --example gen-corpus -- --check # exit 1 if any is stale
//! ```
//!
//! Seeds are small real inputs: tokens of every kind, one of each wire
//! message, real handshakes and transport messages. Each seed is also run
//! through its target here, and the generator fails if a seed no longer
//! reaches what it was made for (say, the handshake seeds after a change of
//! the handshake): they would silently stop helping the fuzzer.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use kairos_core::offload::{GsoKind, VnetHdr, VNET_HDR_LEN};
use kairos_core::token::NetworkToken;
use kairos_core::wire::MessageType;
use kairos_core_fuzz::check::{feed, seal, tick, Outcome};
use kairos_core_fuzz::fixture::{Node, Role, Setup, START};
use kairos_core_fuzz::handshake_responder::{self as responder, op as hop, Raw};
use kairos_core_fuzz::input::{step_byte, Writer};
use kairos_core_fuzz::transport_decrypt::{self as transport, op as top};
use kairos_core_fuzz::{
    dns_query, ledger_messages, node_datagrams, offload, role_record, token_decode, wire_parsers, Stats,
};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

/// The RNG seed of the offline initiator that makes the raw handshake seeds:
/// not the in-target initiator's, so the two never make the same session.
const OFFLINE_SEED: u64 = 0x6b61_6972_6f73_00ff;

/// The seeds of one target: file name to bytes.
type Seeds = BTreeMap<&'static str, Vec<u8>>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [run, target, files @ ..] = &args[..] {
        if run == "--run" {
            return replay(target, files);
        }
    }
    let check = args.iter().any(|a| a == "--check");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let targets: [(&str, Seeds); 9] = [
        ("token_decode", token_seeds()),
        ("wire_parsers", wire_seeds()),
        ("handshake_responder", responder_seeds()),
        ("transport_decrypt", transport_seeds()),
        ("role_record", role_seeds()),
        ("ledger_messages", ledger_seeds()),
        ("node_datagrams", node_seeds()),
        ("dns_query", dns_seeds()),
        ("offload", offload_seeds()),
    ];
    let mut stale = Vec::new();
    let mut total = 0;
    for (target, seeds) in &targets {
        let dir = root.join(target);
        for (name, bytes) in seeds {
            total += bytes.len();
            let path = dir.join(name);
            if check {
                if std::fs::read(&path).ok().as_ref() != Some(bytes) {
                    stale.push(path);
                }
            } else {
                std::fs::create_dir_all(&dir).expect("create the corpus directory");
                std::fs::write(&path, bytes).expect("write a seed");
            }
        }
        println!("{target}: {} seeds", seeds.len());
    }
    println!("{total} bytes in all");
    if stale.is_empty() {
        ExitCode::SUCCESS
    } else {
        for p in stale {
            eprintln!("stale or missing: {}", p.display());
        }
        eprintln!("run `cargo +nightly run --example gen-corpus` in fuzz/ and commit the result");
        ExitCode::FAILURE
    }
}

/// `--run <target> <file>...`: runs the target's code on each file, without
/// libFuzzer (set `KAIROS_FUZZ_TRACE=1` to see every datagram).
fn replay(target: &str, files: &[String]) -> ExitCode {
    let run: fn(&[u8]) -> Stats = match target {
        "token_decode" => token_decode::run,
        "wire_parsers" => wire_parsers::run,
        "handshake_responder" => responder::run,
        "transport_decrypt" => transport::run,
        "role_record" => role_record::run,
        "ledger_messages" => ledger_messages::run,
        "node_datagrams" => node_datagrams::run,
        "dns_query" => dns_query::run,
        "offload" => offload::run,
        _ => {
            eprintln!("unknown target {target}");
            return ExitCode::FAILURE;
        }
    };
    for f in files {
        let data = std::fs::read(f).expect("read the input");
        println!("{f}: {:?}", run(&data));
    }
    ExitCode::SUCCESS
}

/// Checks that a seed reaches what it was made for (else leaves it in the
/// temp directory to look at with `--run`).
fn expect(name: &str, bytes: &[u8], stats: Stats, ok: impl FnOnce(&Stats) -> bool) {
    if !ok(&stats) {
        let path = std::env::temp_dir().join(name);
        std::fs::write(&path, bytes).expect("write the seed");
        panic!(
            "seed {name} no longer does what it was made for: {stats:?} (left in {})",
            path.display()
        );
    }
}

// --- token_decode -----------------------------------------------------------

const LEGACY_YAML: &str = "otp:
  dht:
    interval: 9000
    key: NTs3QhDq8v2SWQvbYxYzGUMKsmGUCxhGqI9BwIRvPDY
    length: 43
  crypto:
    interval: 9000
    key: kGmvVkN1Q5B0PpdiP8mJ8WQAsKhrQUzz3RwQRhGxRr0
    length: 43
room: 7jOmYpK0Ptc5m6FVq9dnBbnA3VgZp4Xe6BgYbJ1hSXt
rendezvous: Rn3YTMe4AvZa7vg2qLR2gZRLpW8ZS5w4j7TiMhPdWbn
mdns: bD6sE2PpHw8eLoaJQCI0NPBiUjaFnvMKZOgwhXXbKwN
max_message_size: 20971520
";

/// Quotes, comments, CRLF, a document marker and other indentation.
const LEGACY_YAML_QUIRKS: &str = "---\r\n# made by hand\r\notp:\r\n    crypto:   # four spaces\r\n        key: \"abc # not a comment\"\r\n    dht:\r\n        key: 'd''e'\r\n    list:\r\n      - a\r\n      - key: x\r\nnote: |\r\n  room: not-this\r\nflow: {room: nope}\r\nroom: 'r1'  # trailing\r\n\"mdns\": m\r\n";

fn token(seed: u64) -> NetworkToken {
    NetworkToken::generate(&mut ChaCha20Rng::seed_from_u64(seed))
}

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("an address")
}

/// A binary token body: version 1, a secret, then `fields`.
fn body(fields: &[u8]) -> Vec<u8> {
    let mut b = vec![0x01];
    b.extend_from_slice(&[0x5a; 32]);
    b.extend_from_slice(fields);
    b
}

fn token_seeds() -> Seeds {
    let plain = token(1);
    let hints = token(2)
        .with_bootstrap(addr("203.0.113.7:4242"))
        .and_then(|t| t.with_bootstrap(addr("[2001:db8::7]:51820")))
        .expect("routable endpoints")
        .with_overlay("10.1.0.0/24".parse().expect("a range"));
    let mut full = token(3).with_overlay("100.64.0.0/10".parse().expect("a range"));
    for i in 0..4u8 {
        full.add_bootstrap(SocketAddr::from(([192, 0, 2, i + 1], 4242 + u16::from(i))))
            .expect("room");
        full.add_bootstrap(addr(&format!("[2001:db8::{}]:51820", i + 1)))
            .expect("room");
    }
    let plain_text = plain.to_string();
    let legacy = STANDARD.encode(LEGACY_YAML);

    let mut fields = Vec::new();
    fields.extend_from_slice(&[0x01, 6, 198, 51, 100, 1, 0x10, 0x92]); // 198.51.100.1:4242
    fields.extend_from_slice(&[0x02, 18]);
    fields.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9, 0xca, 0x6c]);
    fields.extend_from_slice(&[0x03, 5, 10, 42, 0, 0, 16]); // 10.42.0.0/16
    fields.extend_from_slice(&[0x80, 3, 1, 2, 3]); // an optional field of a later release

    let mut seeds = Seeds::new();
    seeds.insert("v1_plain.txt", plain_text.clone().into_bytes());
    seeds.insert("v1_hints.txt", hints.to_string().into_bytes());
    seeds.insert("v1_full.txt", full.to_string().into_bytes());
    seeds.insert("v1_no_prefix.txt", plain_text.as_bytes()["kairos_".len()..].to_vec());
    let (a, b) = plain_text.split_at(30);
    seeds.insert("v1_wrapped.txt", format!("  {a}\n  {b}\r\n").into_bytes());
    seeds.insert("legacy_edgevpn.txt", legacy.clone().into_bytes());
    seeds.insert("legacy_unpadded.txt", legacy.trim_end_matches('=').as_bytes().to_vec());
    let mut bin = vec![token_decode::MODE_BINARY];
    bin.extend_from_slice(&body(&fields));
    seeds.insert("mode_binary_fields.bin", bin);
    let mut bin_std = vec![token_decode::MODE_BINARY_STD];
    bin_std.extend_from_slice(&body(&fields[..8]));
    seeds.insert("mode_binary_std.bin", bin_std);
    let mut bad = vec![token_decode::MODE_BINARY];
    bad.extend_from_slice(&body(&[0x03, 5, 10, 0, 0, 0, 33])); // prefix 33: a bad value
    seeds.insert("mode_binary_bad_overlay.bin", bad);
    let mut yaml = vec![token_decode::MODE_YAML];
    yaml.extend_from_slice(LEGACY_YAML.as_bytes());
    seeds.insert("mode_yaml_edgevpn.bin", yaml);
    let mut quirks = vec![token_decode::MODE_YAML];
    quirks.extend_from_slice(LEGACY_YAML_QUIRKS.as_bytes());
    seeds.insert("mode_yaml_quirks.bin", quirks);

    for (name, bytes) in &seeds {
        let stats = token_decode::run(bytes);
        if name.contains("bad") {
            expect(name, bytes, stats, |s| s.accepted == 0);
        } else {
            expect(name, bytes, stats, |s| s.accepted == 1);
        }
    }
    seeds
}

// --- real messages ----------------------------------------------------------

/// The datagrams of one real handshake and a few transport messages, between
/// an offline initiator and a responder.
struct Messages {
    initiation: Vec<u8>,
    response: Vec<u8>,
    cookie_reply: Vec<u8>,
    keepalive: Vec<u8>,
    ip: Vec<u8>,
    control: Vec<u8>,
}

fn offline_initiator(setup: Setup) -> Node {
    let mut i = Node::new(Role::Initiator, setup);
    i.rng = ChaCha20Rng::seed_from_u64(OFFLINE_SEED);
    i
}

/// A small IPv4 packet (version nibble 4) with a marker byte.
fn ipv4(marker: u8, len: usize) -> Vec<u8> {
    let mut p = vec![marker; len.max(20)];
    p[0] = 0x45;
    p
}

fn control(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut p = vec![kind];
    p.extend_from_slice(body);
    p
}

fn messages() -> Messages {
    let mut stats = Stats::default();
    let mut i = offline_initiator(Setup::default());
    let mut r = Node::new(Role::Responder, Setup::default());
    let now = START;
    i.tunnel.connect();
    let mut out = Vec::new();
    tick(&mut i, now, &mut out, &mut stats);
    let initiation = out.pop().expect("an initiation");
    let Outcome::Reply(response) = feed(&mut r, now, Role::Initiator.addr(), &initiation, &mut stats) else {
        panic!("no response");
    };
    assert_eq!(
        feed(&mut i, now, Role::Responder.addr(), &response, &mut stats),
        Outcome::Handshake
    );
    tick(&mut i, now, &mut out, &mut stats);
    let keepalive = out.pop().expect("a keepalive");
    let ip = seal(&mut i, now, &ipv4(7, 40)).expect("a session");
    let control = seal(&mut i, now, &control(0x06, b"probe")).expect("a session");

    // Under load, the responder answers with a cookie reply.
    let mut loaded = Node::new(Role::Responder, Setup::from_mode(2));
    let Outcome::Reply(cookie_reply) = feed(&mut loaded, now, Role::Initiator.addr(), &initiation, &mut stats) else {
        panic!("no cookie reply");
    };
    assert_eq!(MessageType::of(&cookie_reply), Ok(MessageType::CookieReply));
    Messages {
        initiation,
        response,
        cookie_reply,
        keepalive,
        ip,
        control,
    }
}

// --- wire_parsers -----------------------------------------------------------

fn wire_seeds() -> Seeds {
    let m = messages();
    let raw = |b: &[u8]| {
        let mut v = vec![wire_parsers::shape::RAW];
        v.extend_from_slice(b);
        v
    };
    let mut seeds = Seeds::new();
    seeds.insert("initiation.bin", raw(&m.initiation));
    seeds.insert("response.bin", raw(&m.response));
    seeds.insert("cookie_reply.bin", raw(&m.cookie_reply));
    seeds.insert("transport_keepalive.bin", raw(&m.keepalive));
    seeds.insert("transport_ip.bin", raw(&m.ip));
    seeds.insert("transport_control.bin", raw(&m.control));
    seeds.insert("payload_ipv4.bin", raw(&ipv4(1, 20)));
    let mut v6 = vec![0u8; 40];
    v6[0] = 0x60;
    seeds.insert("payload_ipv6.bin", raw(&v6));
    seeds.insert("payload_control.bin", raw(&control(0x01, b"gossip")));
    seeds.insert(
        "shape_initiation.bin",
        vec![wire_parsers::shape::INITIATION, 0x11, 0x22],
    );
    seeds.insert(
        "shape_transport.bin",
        vec![wire_parsers::shape::TRANSPORT, 1, 0, 0, 0, 9],
    );
    for (name, bytes) in &seeds {
        let stats = wire_parsers::run(bytes);
        expect(name, bytes, stats, |s| s.accepted >= 1);
    }
    seeds
}

// --- handshake_responder ----------------------------------------------------

/// A raw-mode seed: the offline initiator's handshake and `payloads` sealed
/// on it, as the responder (its RNG seeded as in the target) answers them.
/// `setup_mode` is the mode byte (bit 0 clear).
fn raw_handshake(mode: u8, payloads: &[Vec<u8>]) -> Vec<u8> {
    assert_eq!(mode & 1, 0);
    let setup = Setup::from_mode(mode);
    let mut w = Writer::new();
    w.u8(mode);
    let mut r = Raw::new(setup);
    // Only the responder is set up by the mode byte.
    let mut i = offline_initiator(Setup::default());
    let mut stats = Stats::default();
    let mut out = Vec::new();
    i.tunnel.connect();
    tick(&mut i, r.now, &mut out, &mut stats);
    let mut to_r: Vec<Vec<u8>> = std::mem::take(&mut out);
    // Handshake messages until the initiator has a session (a cookie reply
    // makes it retry with MAC2 at once).
    for _ in 0..4 {
        let Some(d) = to_r.pop() else { break };
        let step = step_byte(0, 1);
        w.u8(step).chunk(&d);
        let (outcome, _) = r.step(step, &d);
        if let Outcome::Reply(reply) = outcome {
            feed(&mut i, r.now, Role::Responder.addr(), &reply, &mut stats);
        }
        tick(&mut i, r.now, &mut to_r, &mut stats);
    }
    for m in to_r.drain(..) {
        w.u8(0).chunk(&m);
        r.step(0, &m);
    }
    for p in payloads {
        let step = step_byte(1, 2); // 200 ms later
        let m = seal(&mut i, r.now + kairos_core_fuzz::input::time_step(step), p).expect("a session");
        w.u8(step).chunk(&m);
        r.step(step, &m);
    }
    w.finish()
}

fn responder_seeds() -> Seeds {
    let m = messages();
    let mut seeds = Seeds::new();
    let mut w = Writer::new();
    seeds.insert("raw_initiation.bin", w.u8(0).u8(0).chunk(&m.initiation).finish());
    seeds.insert(
        "raw_garbage.bin",
        w.u8(0)
            .u8(0)
            .chunk(&[1, 0, 0, 0, 9, 9])
            .u8(3)
            .chunk(&[4, 0, 0, 0])
            .finish(),
    );
    seeds.insert(
        "raw_handshake_data.bin",
        raw_handshake(0, &[ipv4(1, 60), control(0x01, b"gossip"), vec![]]),
    );
    seeds.insert("raw_under_load.bin", raw_handshake(2, &[ipv4(2, 20)]));

    // Scripted: connect, the handshake both ways, data both ways, time.
    let deliver_r = |w: &mut Writer| {
        w.u8(hop::TO_RESPONDER).xor_edits(&[]);
    };
    let deliver_i = |w: &mut Writer| {
        w.u8(hop::TO_INITIATOR).xor_edits(&[]);
    };
    let mut w = Writer::new();
    w.u8(1).u8(hop::CONNECT);
    deliver_r(&mut w); // initiation
    deliver_i(&mut w); // response
    deliver_r(&mut w); // keepalive: confirmed
    w.u8(hop::INITIATOR_SENDS).chunk(&ipv4(3, 40));
    deliver_r(&mut w);
    w.u8(hop::RESPONDER_SENDS).chunk(&control(0x07, b"pong"));
    deliver_i(&mut w);
    w.u8(hop::ADVANCE).u8(step_byte(2, 2)); // 10 s: the responder's keepalive
    deliver_i(&mut w);
    let handshake = w.finish();
    seeds.insert("scripted_handshake.bin", handshake.clone());

    // Both nodes always under load: cookies both ways.
    let mut w = Writer::new();
    w.u8(1 | (1 << 1)).u8(hop::CONNECT);
    deliver_r(&mut w); // initiation -> cookie reply
    deliver_i(&mut w); // cookie consumed; the initiator retries with MAC2 at once
    deliver_r(&mut w); // initiation with MAC2 -> response
    deliver_i(&mut w); // the response has no MAC2 -> cookie reply to the responder
    deliver_r(&mut w); // the responder keeps the cookie
    w.u8(hop::ADVANCE).u8(step_byte(2, 2)); // 10 s: the initiator retries
    deliver_r(&mut w); // -> response, now with MAC2
    deliver_i(&mut w); // established
    deliver_r(&mut w); // keepalive: confirmed
    w.u8(hop::INITIATOR_SENDS).chunk(&ipv4(4, 20));
    deliver_r(&mut w);
    seeds.insert("scripted_cookie.bin", w.finish());

    // Tampered initiation (one bit in the encrypted static), retried later;
    // then a rekey after two minutes, and expiry.
    let mut w = Writer::new();
    w.u8(1).u8(hop::CONNECT);
    w.u8(hop::TO_RESPONDER).xor_edits(&[(50, 0x01)]); // -> BadMac1
    w.u8(hop::ADVANCE).u8(step_byte(2, 2)); // 10 s: retried after 5 s + jitter
    deliver_r(&mut w);
    deliver_i(&mut w);
    deliver_r(&mut w);
    w.u8(hop::INITIATOR_SENDS).chunk(&ipv4(5, 20));
    w.u8(hop::QUEUE).u8(1); // duplicate it: a replay
    deliver_r(&mut w);
    deliver_r(&mut w);
    w.u8(hop::ADVANCE).u8(step_byte(3, 2)); // 2 min: data unanswered, a new handshake
    w.u8(hop::INITIATOR_SENDS).chunk(&ipv4(6, 20)); // still on the old session
    deliver_r(&mut w); // the new initiation
    deliver_r(&mut w); // the data
    deliver_i(&mut w); // the responder's keepalive
    deliver_i(&mut w); // the response
    deliver_r(&mut w); // keepalive on the new session: confirmed
    w.u8(hop::ADVANCE).u8(step_byte(3, 4)); // 4 min: everything expired
    w.u8(hop::INITIATOR_SENDS).chunk(&ipv4(7, 20));
    seeds.insert("scripted_tamper_rekey.bin", w.finish());

    // Persistent keepalive, and the responder initiating.
    let mut w = Writer::new();
    w.u8(1 | 8).u8(hop::RESPONDER_SENDS).chunk(&ipv4(8, 20));
    deliver_i(&mut w);
    deliver_r(&mut w);
    deliver_i(&mut w);
    w.u8(hop::ADVANCE).u8(step_byte(2, 6)); // 30 s
    deliver_i(&mut w);
    w.u8(hop::QUEUE).u8(7).xor_edits(&[]); // from another address
    seeds.insert("scripted_persistent.bin", w.finish());

    for (name, bytes) in &seeds {
        let stats = responder::run(bytes);
        println!("  handshake_responder/{name}: {stats:?}");
        match *name {
            "raw_initiation.bin" => expect(name, bytes, stats, |s| s.replies == 1),
            "raw_garbage.bin" => expect(name, bytes, stats, |s| s.accepted == 0),
            "raw_handshake_data.bin" => expect(name, bytes, stats, |s| s.delivered == 4 && s.established == 1),
            "raw_under_load.bin" => expect(name, bytes, stats, |s| s.delivered == 2 && s.replies == 2),
            "scripted_cookie.bin" => expect(name, bytes, stats, |s| s.established == 2 && s.delivered >= 2),
            "scripted_tamper_rekey.bin" => expect(name, bytes, stats, |s| s.established == 4 && s.delivered >= 5),
            _ => expect(name, bytes, stats, |s| s.established == 2 && s.delivered >= 3),
        }
    }
    seeds
}

// --- transport_decrypt ------------------------------------------------------

fn transport_seeds() -> Seeds {
    let mut seeds = Seeds::new();
    // Index 0 is the setup's keepalive (already delivered); sends count from 1.
    let mut w = Writer::new();
    w.u8(top::SEND).chunk(&ipv4(1, 60));
    w.u8(top::SEND).chunk(&control(0x01, b"gossip"));
    w.u8(top::SEND).chunk(&[]);
    w.u8(top::SEND).chunk(&[0x00, 1, 2]); // unknown payload kind
    w.u8(top::DELIVER)
        .u8(1)
        .u8(top::DELIVER)
        .u8(2)
        .u8(top::DELIVER)
        .u8(3)
        .u8(top::DELIVER)
        .u8(4);
    seeds.insert("send_deliver.bin", w.finish());

    let mut w = Writer::new();
    for k in 0..4 {
        w.u8(top::SEND).chunk(&ipv4(k, 20 + usize::from(k)));
    }
    for i in [3, 1, 4, 2, 1, 0] {
        w.u8(top::DELIVER).u8(i); // out of order, then replays
    }
    seeds.insert("reorder_replay.bin", w.finish());

    let mut w = Writer::new();
    w.u8(top::SEND).chunk(&ipv4(9, 32));
    w.u8(top::DELIVER_MUTATED).u8(1).xor_edits(&[(40, 0x80)]); // ciphertext
    w.u8(top::DELIVER_MUTATED).u8(1).xor_edits(&[(8, 0x01)]); // counter
    w.u8(top::DELIVER_MUTATED).u8(1).xor_edits(&[(4, 0x01)]); // receiver index
    w.u8(top::DELIVER_MUTATED).u8(1).u8(8).u16(31); // truncated
    w.u8(top::DELIVER).u8(1); // the real one still goes through
    seeds.insert("mutated.bin", w.finish());

    let mut w = Writer::new();
    w.u8(top::FORGE).u8(0).u64(5).chunk(&[0xaa; 36]);
    w.u8(top::FORGE).u8(0).u64(u64::MAX).chunk(&[0; 16]);
    w.u8(top::INJECT).chunk(&[
        4, 0, 0, 0, 1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0x45, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14,
        15, 16,
    ]);
    w.u8(top::INJECT).chunk(&[1, 0, 0, 0]);
    seeds.insert("forge_inject.bin", w.finish());

    let mut w = Writer::new();
    let mut buf = vec![0u8; 16];
    buf.extend_from_slice(&ipv4(2, 24));
    buf.resize(buf.len() + 16 + 8, 0); // room for the tag, and some
    w.u8(top::SEND_RAW).u64(24).chunk(&buf);
    w.u8(top::SEND_RAW).u64(25 + 8).chunk(&buf); // one byte too many
    w.u8(top::DELIVER).u8(1);
    seeds.insert("send_raw.bin", w.finish());

    let mut w = Writer::new();
    w.u8(top::SEND).chunk(&ipv4(1, 20));
    w.u8(top::DELIVER).u8(1);
    w.u8(top::ADVANCE).u8(step_byte(2, 3)); // 15 s: keepalives, then a new handshake
    w.u8(top::ADVANCE).u8(step_byte(3, 2)); // 2 min
    w.u8(top::SEND).chunk(&ipv4(2, 20)); // rekey due
    w.u8(top::ADVANCE).u8(step_byte(0, 1));
    w.u8(top::HANDSHAKE).xor_edits(&[]);
    w.u8(top::ADVANCE).u8(step_byte(0, 1));
    w.u8(top::SEND).chunk(&ipv4(3, 20));
    for i in 0..6 {
        w.u8(top::DELIVER).u8(i);
    }
    w.u8(top::ADVANCE).u8(step_byte(3, 4)); // 4 min: expired
    w.u8(top::SEND).chunk(&ipv4(4, 20));
    w.u8(top::DELIVER).u8(2);
    seeds.insert("timers_rekey_expiry.bin", w.finish());

    for (name, bytes) in &seeds {
        let stats = transport::run(bytes);
        println!("  transport_decrypt/{name}: {stats:?}");
        // The setup's handshake and keepalive count too.
        match *name {
            "forge_inject.bin" => expect(name, bytes, stats, |s| s.delivered == 1),
            "mutated.bin" | "send_raw.bin" => expect(name, bytes, stats, |s| s.delivered == 2),
            "timers_rekey_expiry.bin" => expect(name, bytes, stats, |s| s.established >= 4 && s.delivered >= 4),
            _ => expect(name, bytes, stats, |s| s.delivered >= 5),
        }
    }
    seeds
}

// --- role_record ------------------------------------------------------------

fn role_seeds() -> Seeds {
    use kairos_core::election::{Ballot, DeployedAs, Deployment, ForcedRole, Proposal, RoleRecord, Vote};
    use kairos_core::identity::NodeId;
    let ballot = |round, owner| Ballot {
        round,
        owner: NodeId([owner; 16]),
    };
    let full = RoleRecord {
        forced: Some(ForcedRole::Master),
        deployment: Some(Deployment {
            role: DeployedAs::Primary,
            epoch: 1,
            since: 42,
        }),
        vote: Some(Vote {
            epoch: 1,
            promised: ballot(2, 7),
            accepted: Some(Proposal {
                ballot: ballot(2, 7),
                candidate: NodeId([7; 16]),
            }),
            proposal: Some(Proposal {
                ballot: ballot(1, 9),
                candidate: NodeId([9; 16]),
            }),
        }),
    };
    let voted = RoleRecord {
        forced: None,
        deployment: None,
        vote: Some(Vote::new(2)),
    };
    let mut seeds = Seeds::new();
    seeds.insert("default.bin", role_record::encode("kairos", &RoleRecord::default()));
    seeds.insert("full.bin", role_record::encode("kairos", &full));
    seeds.insert("voted_long_id.bin", role_record::encode(&"n".repeat(64), &voted));
    let mut two = role_record::encode("kairos", &full);
    two.extend_from_slice(&role_record::encode("kairos", &voted));
    seeds.insert("two_records.bin", two);
    for (name, bytes) in &seeds {
        let stats = role_record::run(bytes);
        expect(name, bytes, stats, |s| s.accepted >= 1);
    }
    seeds
}

// --- ledger_messages ----------------------------------------------------------

/// Real, signed entries (one short, one that travels in fragments) and the
/// anti-entropy messages of the replica holding them.
fn ledger_seeds() -> Seeds {
    use kairos_core::ledger::buckets::owner_key;
    use kairos_core::ledger::{Message, RangeMask, RequestRepr, MAX_MESSAGE_LEN};
    use kairos_core::wire::ControlKind;
    use ledger_messages::{op, writers, FuzzLedger};

    let mut l = Box::<FuzzLedger>::default();
    let w = &writers()[0];
    let small = l.put(START, w, b"kairos", b"ip-master", b"10.1.0.1", 0).expect("room");
    let own = owner_key(&w.node_id());
    let owned = l.put(START, w, b"machines", &own, b"endpoints", 60).expect("room");
    let big = l
        .put(START, w, b"files", b"kubeconfig", &[b'k'; 3000], 0)
        .expect("room");
    let gone = l.put(START, w, b"kairos", b"gone", b"x", 0).expect("room");
    let gone = l.delete(START, w, b"kairos", b"gone").map(|_| gone).expect("room");
    let _ = gone;
    let messages = |r| {
        let enc = l.encoder(r).expect("sendable");
        (0..enc.messages())
            .map(|i| {
                let mut out = [0u8; MAX_MESSAGE_LEN];
                let n = enc.emit(i, &mut out).expect("room");
                out[..n].to_vec()
            })
            .collect::<Vec<_>>()
    };
    let tomb = l.find(b"kairos", b"gone").expect("a tombstone").entry_ref();

    let mut seeds = Seeds::new();
    let mut w = Writer::new();
    for r in [small, owned, tomb] {
        for m in messages(r) {
            w.u8(op::DELTA).chunk(&m);
        }
    }
    for m in messages(big).iter().rev() {
        w.u8(op::DELTA | 0x10).chunk(m);
    }
    w.u8(op::ADVANCE).u8(step_byte(3, 2)); // the ttl runs out
    w.u8(op::EXCHANGE).u8(op::EXCHANGE | 8);
    w.u8(op::ADVANCE).u8(step_byte(3, 11)); // tombstones and expired records purged
    seeds.insert("signed_entries.bin", w.finish());

    let mut digest = [0u8; MAX_MESSAGE_LEN];
    let n = l.digest().emit(&mut digest).expect("room");
    let mut page = [0u8; MAX_MESSAGE_LEN];
    let p = l.write_summary(RangeMask::ALL, 0, &mut page).expect("room");
    let mut request = RequestRepr::new();
    for e in l.iter_all() {
        request.push(e.id().prefix());
    }
    let mut req = [0u8; MAX_MESSAGE_LEN];
    let rn = request.emit(&mut req).expect("ids");
    for m in [&digest[..n], &page[..p.len], &req[..rn]] {
        assert!(Message::decode(ControlKind::LEDGER_DIGEST, m).is_ok());
    }
    let mut w = Writer::new();
    for r in [small, owned, big] {
        for m in messages(r) {
            w.u8(op::DELTA | 8).chunk(&m); // to B
        }
    }
    w.u8(op::DIGEST).chunk(&digest[..n]);
    w.u8(op::DIGEST).chunk(&page[..p.len]);
    w.u8(op::DIGEST | 8).chunk(&page[..p.len]);
    w.u8(op::DIGEST | 8).chunk(&req[..rn]);
    w.u8(op::SUMMARY | 8).u64(u64::MAX).u64(0);
    seeds.insert("anti_entropy.bin", w.finish());

    let mut w = Writer::new();
    // Shaped entries: plain with a ttl, owner-only by the owner and not,
    // a tombstone, a fragmented one in reverse, then local writes filling
    // the arena, resends and a summary.
    w.u8(op::ENTRY)
        .u8(0)
        .u16(300)
        .u8(30)
        .chunk(b"")
        .chunk(b"a")
        .u16(100)
        .u8(1);
    w.u8(op::ENTRY)
        .u8(0x40 | 1 << 3)
        .u16(300)
        .u8(0)
        .chunk(b"")
        .chunk(b"")
        .u16(10)
        .u8(2);
    w.u8(op::ENTRY)
        .u8(2 << 3)
        .u16(300)
        .u8(0)
        .chunk(b"")
        .chunk(b"not-the-owner")
        .u16(10)
        .u8(2);
    w.u8(op::ENTRY).u8(1).u16(301).u8(0).chunk(b"").chunk(b"a").u16(0).u8(0);
    w.u8(op::ENTRY | 8)
        .u8(0x80 | 5 << 3)
        .u16(300)
        .u8(0)
        .chunk(b"custom")
        .chunk(b"big")
        .u16(9000)
        .u8(3);
    for k in 0..3u8 {
        w.u8(op::LOCAL).u8(0).chunk(&[b'x', k]).u16(6000).u8(k);
    }
    w.u8(op::RESEND).u8(0).u8(op::RESEND | 8).u8(1);
    w.u8(op::ADVANCE).u8(step_byte(2, 7));
    w.u8(op::SUMMARY).u64(u64::MAX).u64(0);
    seeds.insert("shaped_and_local.bin", w.finish());

    for (name, bytes) in &seeds {
        let stats = ledger_messages::run(bytes);
        println!("  ledger_messages/{name}: {stats:?}");
        expect(name, bytes, stats, |s| s.delivered >= 3);
    }
    seeds
}

// --- node_datagrams -----------------------------------------------------------

/// Steps of the node target: `op` from `source` after `time`.
fn node_step(w: &mut Writer, source: u8, op: u8, time: u8) -> &mut Writer {
    w.u8(source | op << 2).u8(time)
}

fn node_seeds() -> Seeds {
    use kairos_core::ledger::buckets::owner_key;
    use kairos_core::ledger::{MAX_MESSAGE_LEN, NO_TTL};
    use kairos_core::node::{Destination, NodeConfig};
    use kairos_core::wire::ControlKind;
    use ledger_messages::FuzzLedger;
    use node_datagrams::{op, FuzzNode, FuzzVerifier, SOURCES};

    // A second node with the peer's identity and the same network keys:
    // its first transmissions are a real beacon and a real hello.
    let mut config = NodeConfig::default();
    config.port = SOURCES[0].port();
    config.bootstrap.push(SOURCES[3]).expect("room");
    let mut other = FuzzNode::new(
        kairos_core::identity::Identity::from_bytes(&kairos_core_fuzz::fixture::INITIATOR_ID),
        kairos_core_fuzz::fixture::network(),
        config,
        ChaCha20Rng::seed_from_u64(7),
        (0..4).map(|_| None).collect(),
        (0..4).map(|_| None).collect(),
        Box::default(),
        FuzzVerifier::default(),
        vec![kairos_core::election::MemberView::default(); 5],
        kairos_core_fuzz::fixture::WALL_AT_ZERO,
    );
    let mut beacon = None;
    let mut hello = None;
    let mut out = vec![0u8; 2048];
    while let Some(t) = other.poll_transmit(START, &mut out) {
        match t.destination {
            Destination::LanMulticast => beacon = Some(out[..t.len].to_vec()),
            Destination::Unicast(_) => hello = Some(out[..t.len].to_vec()),
        }
    }
    let beacon = beacon.expect("a beacon");
    assert!(hello.is_some(), "a hello");
    // The next hello (2 s later) carries a newer timestamp than the beacon.
    let later = START + kairos_core::time::Duration::from_secs(3);
    other.handle_timeout(later);
    while let Some(t) = other.poll_transmit(later, &mut out) {
        if t.destination == Destination::Unicast(SOURCES[3]) {
            hello = Some(out[..t.len].to_vec());
        }
    }
    let hello = hello.expect("a hello");
    let node_id = kairos_core::identity::Identity::from_bytes(&kairos_core_fuzz::fixture::RESPONDER_ID)
        .public()
        .node_id();

    // Ledger entries signed by the peer: its machines record and a value.
    let peer = Role::Initiator.identity();
    let mut l = Box::<FuzzLedger>::default();
    let machines = l
        .put(START, peer, b"machines", &owner_key(&peer.node_id()), b"\x01", NO_TTL)
        .expect("room");
    let value = l
        .put(START, peer, b"kairos", b"ip-master", b"10.1.0.1", NO_TTL)
        .expect("room");
    let delta = |r| {
        let mut m = [0u8; MAX_MESSAGE_LEN];
        let n = l.encoder(r).expect("sendable").emit(0, &mut m).expect("room");
        m[..n].to_vec()
    };
    let delta_kind = ControlKind::LEDGER_DELTA.0 - 1; // CONTROL adds one

    let mut seeds = Seeds::new();
    let mut w = Writer::new();
    w.u8(0);
    node_step(&mut w, 0, op::RAW, 1).chunk(&beacon);
    node_step(&mut w, 3, op::RAW, step_byte(1, 30)).chunk(&hello);
    node_step(&mut w, 0, op::RAW, step_byte(1, 10)).chunk(&beacon); // a replay
    seeds.insert("real_beacon_hello.bin", w.finish());

    // The peer initiates; the handshake completes; signed entries, an IP
    // packet each way, a goodbye.
    let mut w = Writer::new();
    w.u8(0);
    node_step(&mut w, 0, op::CONNECT, 1);
    node_step(&mut w, 0, op::DELIVER, 1).u8(0); // initiation
    node_step(&mut w, 0, op::DELIVER, 1).u8(0); // confirming keepalive
    for r in [machines, value] {
        node_step(&mut w, 0, op::CONTROL, 1).u8(delta_kind).chunk(&delta(r)[..]);
        node_step(&mut w, 0, op::DELIVER, 1).u8(0);
    }
    let mut v6 = vec![0u8; 48];
    v6[0] = 0x60;
    v6[4..6].copy_from_slice(&8u16.to_be_bytes());
    v6[6] = 17;
    v6[8..24].copy_from_slice(&other.ipv6().octets());
    v6[24..40].copy_from_slice(&other.member_ipv6(&node_id).octets());
    node_step(&mut w, 0, op::SEAL, 1).chunk(&v6);
    node_step(&mut w, 0, op::DELIVER, 1).u8(0);
    node_step(&mut w, 0, op::IP, 1).chunk(b"ping");
    node_step(&mut w, 0, op::WRITE, step_byte(1, 20))
        .u8(0)
        .chunk(b"kairos")
        .chunk(b"k");
    node_step(&mut w, 0, op::DELIVER, step_byte(2, 1)).u8(0);
    node_step(&mut w, 0, op::CONTROL, 1)
        .u8(ControlKind::GOODBYE.0 - 1)
        .chunk(&[]);
    node_step(&mut w, 0, op::DELIVER, 1).u8(0);
    seeds.insert("peer_initiates.bin", w.finish());

    // Beacons make the node initiate; the peer answers; an hour of timers.
    let mut w = Writer::new();
    w.u8(1);
    for _ in 0..2 {
        node_step(&mut w, 0, op::ANNOUNCE, 1).u8(0).u16(SOURCES[0].port());
    }
    node_step(&mut w, 0, op::DELIVER, 1).u8(0); // response
    node_step(&mut w, 0, op::CONTROL, 1)
        .u8(ControlKind::LEDGER_DIGEST.0 - 1)
        .chunk(&[0x13, 1, 0, 0, 0, 0, 0, 0, 0, 1]);
    node_step(&mut w, 0, op::DELIVER, 1).u8(0);
    node_step(&mut w, 1, op::ANNOUNCE, 1).u8(4 | 1 << 3).u16(51820); // another member's beacon
    node_step(&mut w, 3, op::ANNOUNCE, 1).u8(2).u16(51820); // a hello reply from the bootstrap
    for _ in 0..4 {
        node_step(&mut w, 0, op::DELIVER, step_byte(3, 15)).u8(0);
    }
    seeds.insert("node_initiates.bin", w.finish());

    for (name, bytes) in &seeds {
        let stats = node_datagrams::run(bytes);
        println!("  node_datagrams/{name}: {stats:?}");
        match *name {
            "real_beacon_hello.bin" => expect(name, bytes, stats, |s| s.accepted >= 2),
            "peer_initiates.bin" => expect(name, bytes, stats, |s| s.established >= 1 && s.delivered >= 1),
            _ => expect(name, bytes, stats, |s| s.established >= 1 && s.accepted >= 4),
        }
    }
    seeds
}

// --- dns_query --------------------------------------------------------------

/// A query as a stub resolver sends it: id, RD, one question.
fn dns_query_bytes(name: &str, qtype: u16) -> Vec<u8> {
    let mut q = vec![0xbe, 0xef, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.').filter(|l| !l.is_empty()) {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes());
    q
}

fn dns_seeds() -> Seeds {
    let mut seeds = Seeds::new();
    seeds.insert("a.bin", dns_query_bytes("edge-1.kairos.mesh", 1));
    seeds.insert("aaaa.bin", dns_query_bytes("Edge-1", 28));
    seeds.insert("any_long.bin", dns_query_bytes(&"abcdefgh.".repeat(24), 255));
    let mut two = dns_query_bytes("x.mesh", 1);
    two[5] = 2;
    seeds.insert("two_questions.bin", two);
    for (name, bytes) in &seeds {
        let stats = dns_query::run(bytes);
        assert_eq!(stats.fed, 1, "{name}");
        assert!(stats.replies > 0, "{name} gets an answer");
    }
    seeds
}

// --- offload ----------------------------------------------------------------

/// A TCP packet as a sender's stack writes it into the TUN (valid
/// checksums): IPv4 with `ip_options` (a multiple of 4 bytes) or IPv6, the
/// timestamp option, `flags` (the byte at offset 13) and `len` payload bytes.
fn tcp_packet(v6: bool, ip_options: &[u8], seq: u32, flags: u8, len: usize) -> Vec<u8> {
    use smoltcp::phy::ChecksumCapabilities;
    use smoltcp::wire::{
        IpAddress, IpProtocol, Ipv4Address, Ipv4Packet, Ipv4Repr, Ipv6Address, Ipv6Packet, Ipv6Repr, TcpControl,
        TcpPacket, TcpRepr, TcpSeqNumber, TcpTimestampRepr,
    };
    let payload: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
    let tcp = TcpRepr {
        src_port: 40000,
        dst_port: 5201,
        control: TcpControl::None,
        seq_number: TcpSeqNumber(seq as i32),
        ack_number: Some(TcpSeqNumber(77)),
        window_len: 502,
        window_scale: None,
        max_seg_size: None,
        sack_permitted: false,
        sack_ranges: [None; 3],
        timestamp: Some(TcpTimestampRepr::new(11, 22)),
        payload: &payload,
    };
    let caps = ChecksumCapabilities::default();
    let (src, dst, ip_len) = if v6 {
        (
            IpAddress::Ipv6(Ipv6Address::new(0xfd00, 0, 0, 0, 0, 0, 0, 1)),
            IpAddress::Ipv6(Ipv6Address::new(0xfd00, 0, 0, 0, 0, 0, 0, 2)),
            40,
        )
    } else {
        (
            IpAddress::Ipv4(Ipv4Address::new(10, 1, 0, 1)),
            IpAddress::Ipv4(Ipv4Address::new(10, 1, 0, 2)),
            20 + ip_options.len(),
        )
    };
    let mut p = vec![0u8; ip_len + tcp.buffer_len()];
    match (src, dst) {
        (IpAddress::Ipv6(s), IpAddress::Ipv6(d)) => Ipv6Repr {
            src_addr: s,
            dst_addr: d,
            next_header: IpProtocol::Tcp,
            payload_len: tcp.buffer_len(),
            hop_limit: 64,
        }
        .emit(&mut Ipv6Packet::new_unchecked(&mut p)),
        (IpAddress::Ipv4(s), IpAddress::Ipv4(d)) => {
            let mut ip = Ipv4Packet::new_unchecked(&mut p);
            Ipv4Repr {
                src_addr: s,
                dst_addr: d,
                next_header: IpProtocol::Tcp,
                payload_len: tcp.buffer_len() + ip_options.len(),
                hop_limit: 64,
            }
            .emit(&mut ip, &caps);
            ip.set_header_len((20 + ip_options.len()) as u8);
            ip.set_ident(0x1234);
            p[20..20 + ip_options.len()].copy_from_slice(ip_options);
            Ipv4Packet::new_unchecked(&mut p).fill_checksum();
        }
        _ => unreachable!(),
    }
    tcp.emit(&mut TcpPacket::new_unchecked(&mut p[ip_len..]), &src, &dst, &caps);
    p[ip_len + 13] = flags;
    TcpPacket::new_unchecked(&mut p[ip_len..]).fill_checksum(&src, &dst);
    p
}

/// A segment-mode input: the vnet header, the packet, an edit script.
fn segment_input(hdr: &VnetHdr, packet: &[u8], edit: &[u8]) -> Vec<u8> {
    let mut vnet = [0u8; VNET_HDR_LEN];
    hdr.emit(&mut vnet);
    let mut w = Writer::new();
    w.u8(offload::mode::SEGMENT).bytes(&vnet).chunk(packet).bytes(edit);
    w.finish()
}

fn tso(v6: bool, gso_size: u16) -> VnetHdr {
    VnetHdr {
        needs_csum: true,
        gso: if v6 { GsoKind::TcpV6 } else { GsoKind::TcpV4 },
        hdr_len: if v6 { 72 } else { 52 },
        gso_size,
        csum_start: if v6 { 40 } else { 20 },
        csum_offset: 16,
    }
}

fn offload_seeds() -> Seeds {
    const ACK: u8 = 0x10;
    const PSH: u8 = 0x08;
    const FIN: u8 = 0x01;
    const CWR: u8 = 0x80;
    let mut seeds = Seeds::new();
    seeds.insert(
        "tso_v4.bin",
        segment_input(&tso(false, 1000), &tcp_packet(false, &[], 1000, ACK | PSH, 4500), &[]),
    );
    seeds.insert(
        "tso_v6_cwr_fin.bin",
        segment_input(
            &tso(true, 700),
            &tcp_packet(true, &[], u32::MAX - 900, ACK | PSH | FIN | CWR, 3001),
            &[],
        ),
    );
    seeds.insert(
        "tso_v4_options.bin",
        segment_input(&tso(false, 500), &tcp_packet(false, &[1, 1, 1, 0], 5, ACK, 1200), &[]),
    );
    // The stream with the third segment's seq bumped, and cut short.
    let mut edit = Writer::new();
    edit.u8(2).xor_edits(&[(27, 1)]);
    seeds.insert(
        "tso_v4_edited.bin",
        segment_input(&tso(false, 300), &tcp_packet(false, &[], 9, ACK, 1500), &edit.finish()),
    );
    // Fields a merge must not lose (found by the fuzzer: the urgent pointer
    // without URG): the urgent pointer of the second segment, the reserved
    // IPv4 flag of the third.
    let mut edit = Writer::new();
    edit.u8(1).xor_edits(&[(40 + 19, 7)]);
    seeds.insert(
        "tso_v6_urgent_pointer.bin",
        segment_input(&tso(true, 300), &tcp_packet(true, &[], 9, ACK, 1000), &edit.finish()),
    );
    let mut edit = Writer::new();
    edit.u8(2).xor_edits(&[(6, 0x80)]);
    seeds.insert(
        "tso_v4_reserved_flag.bin",
        segment_input(&tso(false, 300), &tcp_packet(false, &[], 9, ACK, 1000), &edit.finish()),
    );
    // gso None with a partial checksum: the pseudo-header sum in the field.
    let mut partial = tcp_packet(false, &[], 1, ACK | PSH, 33);
    let len = (partial.len() - 20) as u32;
    let mut sum = 6 + len;
    for pair in partial[12..20].chunks(2) {
        sum += u32::from(u16::from_be_bytes([pair[0], pair[1]]));
    }
    while sum > 0xffff {
        sum = (sum >> 16) + (sum & 0xffff);
    }
    partial[36..38].copy_from_slice(&(sum as u16).to_be_bytes());
    let none_csum = VnetHdr {
        needs_csum: true,
        csum_start: 20,
        csum_offset: 16,
        ..VnetHdr::NONE
    };
    seeds.insert("none_partial_csum.bin", segment_input(&none_csum, &partial, &[]));
    seeds.insert(
        "none_plain.bin",
        segment_input(&VnetHdr::NONE, &tcp_packet(true, &[], 1, ACK, 10), &[]),
    );
    // Push mode: a run of three, a UDP-like packet, a run of two of another flow.
    let mut w = Writer::new();
    w.u8(offload::mode::PUSH);
    for seq in [100, 600, 1100] {
        w.chunk(&tcp_packet(false, &[], seq, ACK, 500));
    }
    let mut udp = tcp_packet(false, &[], 1600, ACK, 20);
    udp[9] = 17;
    w.chunk(&udp);
    w.chunk(&tcp_packet(true, &[], 1, ACK, 400));
    w.chunk(&tcp_packet(true, &[], 401, ACK | PSH, 400));
    seeds.insert("push_runs.bin", w.finish());
    for (name, bytes) in &seeds {
        let stats = offload::run(bytes);
        expect(name, bytes, stats, |s| {
            s.fed >= 1 && (s.accepted == 1 || s.replies >= 1)
        });
    }
    seeds
}
