//! `kairos ledger get|put|rm`: reads and writes the shared ledger through the
//! running agent's or bridge's API (`/api/ledger/...`). Values are printed
//! raw; a value is sent in the URL when it is short and plain, else as the
//! request body ([`put_request`]).

use std::io::{Read, Write};
use std::path::PathBuf;

use clap::{Args, Subcommand};
use hyper::Method;
use serde_json::Value;

use super::{ApiArgs, CliError};
use crate::client::encode_segment;

/// The `--help` text of the command.
pub const LONG_ABOUT: &str = "Read and write the shared ledger: key/value buckets that every member \
of the mesh holds a copy of, kept in sync by the mesh (the last write wins).

Kairos keeps its cluster data there: the bucket named after a network_id holds the role of each \
node and, once a master is up, `master-kubeconfig` and `ip-master` (see `kairos get-kubeconfig`). \
Each agent and bridge describes itself in `owner/info`. Buckets starting with `owner/` take \
writes to a key only from the node that owns it.

  kairos ledger get BUCKET          every key of BUCKET as `key = value` lines
  kairos ledger get BUCKET KEY      the value, printed raw
  kairos ledger put BUCKET KEY VALUE
  kairos ledger put BUCKET KEY -    the value is read from stdin
  kairos ledger put BUCKET KEY --file FILE
  kairos ledger rm BUCKET KEY       delete one key
  kairos ledger rm BUCKET           delete every key of BUCKET this node may delete

Works through the API at --api (GET, PUT and DELETE on /api/ledger/BUCKET[/KEY]). Values that are \
not UTF-8 are shown as `base64:` followed by their standard base64. A value takes at most 16 KiB.";

/// The `--help` text of `kairos ledger get`.
pub const GET_ABOUT: &str = "Print one value of the shared ledger, or a whole bucket.

With KEY, prints the value of KEY in BUCKET raw, followed by a newline if it has none \
(GET /api/ledger/BUCKET/KEY); a missing key is an error (exit 1). Without KEY, prints every key \
of BUCKET as `key = value` lines sorted by key (GET /api/ledger/BUCKET); an empty bucket prints \
nothing. With --json, prints the API's reply as it was sent.

Example:
  kairos ledger get kairos ip-master
  kairos ledger get owner/info";

/// The `--help` text of `kairos ledger put`.
pub const PUT_ABOUT: &str = "Set KEY in BUCKET to a value, given on the command line, read from \
a file (--file FILE) or from stdin (VALUE or FILE `-`). The value takes at most 16 KiB and may be \
binary when read from a file or stdin. The mesh copies it to every member; the last write wins.

A short value from the command line goes in the URL (PUT /api/ledger/BUCKET/KEY/VALUE, as EdgeVPN \
does); anything else (a `/` in it, more than 200 bytes, a file, stdin) is the request body of \
PUT /api/ledger/BUCKET/KEY. Buckets starting with `owner/` take only this node's own keys (the \
API answers 403 otherwise). A bucket, key or value the API refuses is exit 2.

Example:
  kairos ledger put demo greeting hello
  kairos ledger put demo motd --file /etc/motd";

/// The `--help` text of `kairos ledger rm`.
pub const RM_ABOUT: &str = "Delete KEY from BUCKET (DELETE /api/ledger/BUCKET/KEY; a missing key \
is an error, exit 1), or without KEY every key of BUCKET this node may delete \
(DELETE /api/ledger/BUCKET). The deletion spreads to every member. Prints how many keys went, \
on stderr.

Example:
  kairos ledger rm demo greeting";

/// The largest value the API takes (the contract's 16 KiB body limit).
pub const MAX_VALUE: usize = 16 * 1024;

/// Values longer than this go in the body of the PUT rather than its URL.
const MAX_URL_VALUE: usize = 200;

/// Arguments of `kairos ledger`.
#[derive(Debug, Args)]
pub struct LedgerArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: LedgerCommand,
}

/// The subcommands of `kairos ledger`.
#[derive(Debug, Subcommand)]
pub enum LedgerCommand {
    /// Print a value, or every `key = value` of a bucket.
    #[command(long_about = GET_ABOUT)]
    Get(GetArgs),
    /// Set a key to a value (from the command line, a file or stdin).
    #[command(long_about = PUT_ABOUT)]
    Put(PutArgs),
    /// Delete a key, or every key of a bucket this node may delete.
    #[command(long_about = RM_ABOUT)]
    Rm(RmArgs),
}

/// Arguments of `kairos ledger get`.
#[derive(Debug, Args)]
pub struct GetArgs {
    /// The bucket (e.g. a network_id such as `kairos`).
    pub bucket: String,
    /// The key; without it, the whole bucket is listed.
    pub key: Option<String>,
    /// Print the API's JSON reply as it was sent.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub api: ApiArgs,
}

/// Arguments of `kairos ledger put`.
#[derive(Debug, Args)]
pub struct PutArgs {
    /// The bucket.
    pub bucket: String,
    /// The key.
    pub key: String,
    /// The value; `-` reads it from stdin.
    #[arg(required_unless_present = "file", conflicts_with = "file")]
    pub value: Option<String>,
    /// Read the value from FILE (`-` is stdin); it may be binary.
    #[arg(long, value_name = "FILE")]
    pub file: Option<PathBuf>,
    #[command(flatten)]
    pub api: ApiArgs,
}

/// Arguments of `kairos ledger rm`.
#[derive(Debug, Args)]
pub struct RmArgs {
    /// The bucket.
    pub bucket: String,
    /// The key; without it, every key of the bucket this node may delete.
    pub key: Option<String>,
    #[command(flatten)]
    pub api: ApiArgs,
}

/// Runs `kairos ledger`.
pub fn run(args: LedgerArgs) -> Result<(), CliError> {
    match args.command {
        LedgerCommand::Get(a) => get(a),
        LedgerCommand::Put(a) => put(a),
        LedgerCommand::Rm(a) => rm(a),
    }
}

fn get(args: GetArgs) -> Result<(), CliError> {
    let path = ledger_path(&args.bucket, args.key.as_deref())?;
    let client = args.api.client()?;
    let reply = client.request(Method::GET, &path, None)?;
    let value = client.json(&reply)?;
    let out = if args.json {
        let mut raw = reply.body.to_vec();
        if raw.last() != Some(&b'\n') {
            raw.push(b'\n');
        }
        raw
    } else if args.key.is_some() {
        let mut raw = match value {
            Value::String(s) => s,
            other => other.to_string(),
        };
        if !raw.ends_with('\n') {
            raw.push('\n');
        }
        raw.into_bytes()
    } else {
        let Value::Object(map) = value else {
            return Err(client.bad_reply(&reply, "a JSON object").into());
        };
        if map.is_empty() {
            eprintln!("bucket {} is empty", args.bucket);
        }
        render_bucket(&map).into_bytes()
    };
    std::io::stdout().write_all(&out).map_err(CliError::Output)
}

/// A bucket as `key = value` lines, sorted by key; values raw (one that
/// ends in a newline gets no second one).
pub fn render_bucket(map: &serde_json::Map<String, Value>) -> String {
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort();
    let mut out = String::new();
    for key in keys {
        let value = match &map[key] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        out.push_str(&format!("{key} = {value}"));
        if !value.ends_with('\n') {
            out.push('\n');
        }
    }
    out
}

fn put(args: PutArgs) -> Result<(), CliError> {
    let value: Vec<u8> = match (&args.value, &args.file) {
        (Some(v), None) if v == "-" => read_stdin()?,
        (Some(v), None) => v.clone().into_bytes(),
        (None, Some(f)) if f.as_os_str() == "-" => read_stdin()?,
        (None, Some(f)) => std::fs::read(f)
            .map_err(|e| CliError::Other(anyhow::Error::new(e).context(format!("cannot read {}", f.display()))))?,
        _ => unreachable!("clap requires exactly one of VALUE and --file"),
    };
    if value.len() > MAX_VALUE {
        return Err(CliError::Usage(format!(
            "the value has more than {MAX_VALUE} bytes (16 KiB), the most a ledger value may have"
        )));
    }
    let from_arg = args.value.as_deref().is_some_and(|v| v != "-");
    let len = value.len();
    let (path, body) = put_request(&args.bucket, &args.key, value, from_arg)?;
    let client = args.api.client()?;
    client.request(Method::PUT, &path, body)?;
    let plural = if len == 1 { "" } else { "s" };
    eprintln!("set {} in {} ({len} byte{plural})", args.key, args.bucket);
    Ok(())
}

/// The path and body of the PUT that sets `bucket`/`key` to `value`. A value
/// given on the command line that is short, non-empty, has no `/` and is not
/// `.` or `..` goes in the URL (`/api/ledger/B/K/V`, the EdgeVPN form);
/// anything else, and every value from a file or stdin, is the body of
/// `PUT /api/ledger/B/K`.
pub fn put_request(
    bucket: &str,
    key: &str,
    value: Vec<u8>,
    from_arg: bool,
) -> Result<(String, Option<Vec<u8>>), CliError> {
    let path = ledger_path(bucket, Some(key))?;
    let in_url = from_arg
        && !value.is_empty()
        && value.len() <= MAX_URL_VALUE
        && !value.contains(&b'/')
        && value != b"."
        && value != b"..";
    match (in_url, std::str::from_utf8(&value)) {
        (true, Ok(v)) => Ok((format!("{path}/{}", encode_segment(v)), None)),
        _ => Ok((path, Some(value))),
    }
}

fn rm(args: RmArgs) -> Result<(), CliError> {
    let path = ledger_path(&args.bucket, args.key.as_deref())?;
    let client = args.api.client()?;
    let reply = client.request(Method::DELETE, &path, None)?;
    let deleted = client.json(&reply)?.get("deleted").and_then(Value::as_u64);
    match (deleted, &args.key) {
        (Some(0), None) => eprintln!(
            "deleted nothing from {} (it is empty, or holds only keys of other nodes)",
            args.bucket
        ),
        (Some(n), _) => eprintln!("deleted {n} key{} from {}", if n == 1 { "" } else { "s" }, args.bucket),
        (None, _) => eprintln!("deleted from {}", args.bucket),
    }
    Ok(())
}

/// `/api/ledger/BUCKET[/KEY]`, each part percent-encoded.
fn ledger_path(bucket: &str, key: Option<&str>) -> Result<String, CliError> {
    if bucket.is_empty() {
        return Err(CliError::Usage("the bucket name is empty".into()));
    }
    let mut path = format!("/api/ledger/{}", encode_segment(bucket));
    if let Some(key) = key {
        if key.is_empty() {
            return Err(CliError::Usage("the key is empty".into()));
        }
        path.push('/');
        path.push_str(&encode_segment(key));
    }
    Ok(path)
}

fn read_stdin() -> Result<Vec<u8>, CliError> {
    let mut buf = Vec::new();
    std::io::stdin()
        .take(MAX_VALUE as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(|e| CliError::Other(anyhow::Error::new(e).context("cannot read the value from stdin")))?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn short_plain_values_go_in_the_url() {
        let (path, body) = put_request("kairos", "ip-master", b"10.1.0.7".to_vec(), true).unwrap();
        assert_eq!(path, "/api/ledger/kairos/ip-master/10.1.0.7");
        assert_eq!(body, None);
        let (path, body) = put_request("owner/info", "a b", b"x?y".to_vec(), true).unwrap();
        assert_eq!(path, "/api/ledger/owner%2Finfo/a%20b/x%3Fy");
        assert_eq!(body, None);
    }

    #[test]
    fn other_values_go_in_the_body() {
        let body_of = |value: &[u8], from_arg| {
            let (path, body) = put_request("b", "k", value.to_vec(), from_arg).unwrap();
            assert_eq!(path, "/api/ledger/b/k");
            body.unwrap()
        };
        assert_eq!(body_of(b"10.1.0.0/24", true), b"10.1.0.0/24");
        assert_eq!(body_of(b"", true), b"");
        assert_eq!(body_of(b"..", true), b"..");
        assert_eq!(body_of(&[b'x'; 201], true), [b'x'; 201]);
        assert_eq!(body_of(b"short", false), b"short");
        assert_eq!(body_of(&[0xff, 0x00], false), [0xff, 0x00]);
    }

    #[test]
    fn empty_names_are_refused() {
        assert!(matches!(
            put_request("", "k", b"v".to_vec(), true),
            Err(CliError::Usage(_))
        ));
        assert!(matches!(
            put_request("b", "", b"v".to_vec(), true),
            Err(CliError::Usage(_))
        ));
    }

    #[test]
    fn bucket_lines_are_sorted_and_raw() {
        let map = json!({"worker-1-role": "worker", "a": "x = y", "n": 3, "m": "two\nlines\n"})
            .as_object()
            .unwrap()
            .clone();
        assert_eq!(
            render_bucket(&map),
            "a = x = y\nm = two\nlines\nn = 3\nworker-1-role = worker\n"
        );
    }
}
