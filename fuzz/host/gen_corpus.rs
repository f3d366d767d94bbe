//! Writes the `api_requests` seeds under `corpus/api_requests/`, or with
//! `--check` verifies that the committed ones are what this build would
//! write; `--run <target> <file>...` runs a target's code on files without
//! libFuzzer. The `config_yaml` seeds are plain cloud-config files, written
//! by hand (`corpus/config_yaml/`); this checks which of them must resolve.
//!
//! ```text
//! cargo +nightly run --example gen-corpus            # (re)write the seeds
//! cargo +nightly run --example gen-corpus -- --check # exit 1 if any is stale
//! ```
//!
//! Every seed also runs through its target here, and the generator fails if
//! it no longer reaches what it was made for (a write read back, a 2xx).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

use kairos_host_fuzz::api_requests::{self as api, auth, body, host, Request, Stats, JSON, LEDGER, LENGTH};
use kairos_host_fuzz::config_yaml;

/// The node id of the fake driver (owner-only buckets take only this key).
const ME: &str = kairos::fuzzing::ME;

/// The config seeds that must resolve to a config (the others must not).
const VALID_CONFIGS: [&str; 7] = [
    "docs_example.yaml",
    "legacy_block.yaml",
    "p2p_token_with_hints.yaml",
    "p2p_every_key.yaml",
    "anchors_merge.yaml",
    "bom_crlf_tags.yaml",
    "legacy_edgevpn_token.yaml",
];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [run, target, files @ ..] = &args[..] {
        if run == "--run" {
            return replay(target, files);
        }
    }
    let check = args.iter().any(|a| a == "--check");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    check_configs(&root.join("config_yaml"));
    let dir = root.join("api_requests");
    let seeds = api_seeds();
    let mut stale = Vec::new();
    let total: usize = seeds.values().map(Vec::len).sum();
    for (name, bytes) in &seeds {
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
    println!("api_requests: {} seeds, {total} bytes", seeds.len());
    if stale.is_empty() {
        ExitCode::SUCCESS
    } else {
        for p in stale {
            eprintln!("stale or missing: {}", p.display());
        }
        eprintln!("run `cargo +nightly run --example gen-corpus` in fuzz/host/ and commit the result");
        ExitCode::FAILURE
    }
}

fn replay(target: &str, files: &[String]) -> ExitCode {
    for f in files {
        let data = std::fs::read(f).expect("read the input");
        match target {
            "config_yaml" => println!("{f}: {:?}", config_yaml::run(&data)),
            "api_requests" => println!("{f}: {:?}", api::run(&data)),
            _ => {
                eprintln!("unknown target {target}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}

fn check_configs(dir: &Path) {
    let mut n = 0;
    for e in std::fs::read_dir(dir).expect("the config_yaml corpus") {
        let path = e.expect("a directory entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .expect("a file name")
            .to_owned();
        let outcome = config_yaml::run(&std::fs::read(&path).expect("read a seed"));
        let valid = VALID_CONFIGS.contains(&name.as_str());
        assert_eq!(outcome.valid, valid, "config seed {name}: {outcome:?}");
        n += 1;
    }
    println!("config_yaml: {n} seeds checked");
}

/// A request with a body from the input.
fn req(flags: u8, path: &str, body: &[u8]) -> Request {
    Request {
        flags,
        body_mode: body::INPUT,
        path: path.as_bytes().to_vec(),
        body: body.to_vec(),
    }
}

fn get(path: &str) -> Request {
    req(0, path, b"")
}

/// Method indices of `api::METHODS`.
const GET: u8 = 0;
const PUT: u8 = 1;
const DELETE: u8 = 2;
const POST: u8 = 3;
const HEAD: u8 = 4;
const PATCH: u8 = 5;

fn input(with_token: bool, requests: &[Request]) -> Vec<u8> {
    let mut out = vec![u8::from(with_token)];
    for r in requests {
        r.encode(&mut out);
    }
    out
}

fn seed(
    seeds: &mut BTreeMap<&'static str, Vec<u8>>,
    name: &'static str,
    with_token: bool,
    requests: &[Request],
    ok: impl FnOnce(&Stats) -> bool,
) {
    assert!(requests.len() <= api::MAX_REQUESTS, "{name}: too many requests");
    let bytes = input(with_token, requests);
    let stats = api::run(&bytes);
    assert!(ok(&stats), "seed {name} no longer does what it was made for: {stats:?}");
    seeds.insert(name, bytes);
}

fn api_seeds() -> BTreeMap<&'static str, Vec<u8>> {
    let mut s = BTreeMap::new();
    let reads: Vec<Request> = [
        "/api/summary",
        "/api/machines",
        "/api/nodes",
        "/api/peers",
        "/api/peerstore",
        "/api/users",
        "/api/services",
        "/api/dns",
        "/api/files",
        "/api/blockchain",
        "/metrics",
        "/api/openapi.json",
        "/",
        "/app",
    ]
    .into_iter()
    .map(get)
    .collect();
    seed(&mut s, "reads.bin", false, &reads, |st| st.ok == 14);

    let kubeconfig = b"apiVersion: v1\nclusters: []\n";
    seed(
        &mut s,
        "ledger_docs.bin",
        false,
        &[
            req(PUT, "/api/ledger/kairos/ip-master/10.1.0.1", b""),
            req(PUT | LENGTH, "/api/ledger/kairos/master-kubeconfig", kubeconfig),
            get("/api/ledger/kairos/master-kubeconfig"),
            get("/api/ledger/kairos"),
            get("/api/ledger"),
            req(PUT, "/api/ledger/bin/k", &[0xff, 0x00]),
            req(DELETE, "/api/ledger/kairos/ip-master", b""),
            get("/api/ledger/kairos/ip-master"),
            req(PUT, "/api/ledger/kairos/a/1", b""),
            req(DELETE, "/api/ledger/kairos", b""),
            req(PUT, "/api/ledger/services/web/10.1.0.9%3A80", b""),
            get("/api/services"),
        ],
        |st| st.writes == 5 && st.deletes == 2,
    );

    let mine = format!("/api/ledger/owner%2Finfo/{ME}");
    seed(
        &mut s,
        "owner_only.bin",
        false,
        &[
            req(PUT | JSON, &mine, b"{}"),
            get(&mine),
            req(PUT | JSON, "/api/ledger/owner%2Finfo/bbbbbbbbbbbbbbbbbbbbbbbbbb", b"{}"),
            req(PUT, "/api/ledger/machines/someone/x", b""),
            req(PUT, &format!("/api/ledger/machines/{ME}/x"), b""),
            req(DELETE, "/api/ledger/owner%2Finfo", b""),
            req(DELETE, "/api/ledger/machines", b""),
        ],
        |st| st.writes == 2 && st.deletes == 2,
    );

    seed(
        &mut s,
        "token.bin",
        true,
        &[
            get("/api/summary"),
            req(GET | auth::WRONG, "/api/summary", b""),
            req(GET | auth::RIGHT, "/api/summary", b""),
            req(GET | auth::LOOSE, "/metrics", b""),
            req(PUT, "/api/ledger/b/k/v", b""),
            req(PUT | auth::WRONG, "/api/ledger/b/k", b"v"),
            req(PUT | auth::RIGHT, "/api/ledger/b/k", b"v"),
            req(DELETE | auth::LOOSE, "/api/ledger/b/k", b""),
            get("/"),
            get("/app"),
            get("/api/nope"),
            req(POST, "/api/summary", b""),
        ],
        |st| st.writes == 1 && st.deletes == 1 && st.ok == 6,
    );

    let long_key = format!("/api/ledger/b/{}/v", "k".repeat(129));
    let long_bucket = format!("/api/ledger/{}", "b".repeat(65));
    let limit = |mode| Request {
        body_mode: mode,
        ..req(PUT | LENGTH, "/api/ledger/b/k", b"")
    };
    seed(
        &mut s,
        "limits.bin",
        false,
        &[
            limit(body::LIMIT),
            limit(body::OVER),
            Request {
                flags: PUT,
                ..limit(body::HUGE)
            },
            limit(body::HUGE),
            req(PUT, &long_key, b""),
            get(&long_bucket),
            get("/api/ledger/%FF/k"),
            req(PUT, "/api/ledger/%FF/k", b"v"),
            req(PUT, "/api/ledger//k", b"v"),
            req(PUT, "/api/ledger/b/k/", b"v"),
        ],
        |st| st.writes == 1,
    );

    seed(
        &mut s,
        "traversal.bin",
        false,
        &[
            req(PUT, "/api/ledger/kairos/../x", b""),
            req(PUT, "/api/ledger/%2e%2e/%2E%2E/v", b""),
            req(PUT, "/api/ledger/a%2Fb/c", b"v"),
            req(PUT, "/api/ledger/b/k%2F..%2F..%2Fetc", b"v"),
            req(PUT | LEDGER, "b%2f%2f/%2e/v", b""),
            get("/api/ledger/../../etc/passwd"),
            get("/api/./summary"),
            get("//api/summary"),
            get("http://example.com/api/summary"),
            get("/api/ledger/a%2Fb/c?x=/../y#z"),
            req(DELETE, "/api/ledger/a%2Fb", b""),
        ],
        |st| st.writes == 5 && st.deletes == 1,
    );

    let at = |host, r: Request| Request {
        body_mode: r.body_mode | host,
        ..r
    };
    seed(
        &mut s,
        "host.bin",
        false,
        &[
            at(host::LOOPBACK, get("/api/summary")),
            at(host::NAME, get("/api/ledger")),
            at(host::NAME, req(PUT, "/api/ledger/b/k/v", b"")),
            at(host::PATH, req(PUT, "/api/ledger/b/k2/v", b"")),
            at(host::LOOPBACK, req(PUT, "/api/ledger/b/k/v", b"")),
            at(host::NAME, req(DELETE, "/api/ledger/b/k", b"")),
        ],
        |st| st.writes == 1 && st.ok == 2 && st.deletes == 0,
    );

    seed(
        &mut s,
        "methods.bin",
        false,
        &[
            req(POST, "/api/summary", b""),
            req(PATCH, "/api/ledger/b/k", b""),
            req(HEAD, "/api/summary", b""),
            req(HEAD, "/api/nope", b""),
            req(DELETE, "/api/ledger", b""),
            req(PUT | JSON | LENGTH, "/api/ledger/b/k", b"{\"value\": [1, 2, 3]}"),
            req(6, "/api/ledger/b/k", b""),
        ],
        |st| st.writes == 1,
    );
    s
}
