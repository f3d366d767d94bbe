//! Faults of the state dir (issue 8): damaged and truncated state files, a
//! SIGKILL in the middle of a state write, a full disk. The node starts,
//! says what it repaired, and keeps its identity while `identity.key` is
//! intact; a damaged `identity.key` stops the start and is left alone.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use kairos_tests::agent::{lab_with_agent, Agent, Kairos, NodeConfig};
use kairos_tests::api::Summary;
use kairos_tests::lab::Lab;
use kairos_tests::preflight::note;
use kairos_tests::wait::{wait_for, wait_until, Poll};
use kairos_tests::{HarnessError, Result};
use serde_json::Value;

use crate::DEADLINE;

/// The blobs a lone agent writes.
const BLOBS: [&str; 3] = ["ledger-snapshot.state", "address-claim.state", "role-record.state"];

/// Temporary files of state writes start with this.
const TEMP_PREFIX: &str = ".tmp-";

/// A bucket for the test's own ledger values.
const BUCKET: &str = "e2e";

fn check(text: String) -> HarnessError {
    HarnessError::Check(text)
}

/// A lab for `test` with one agent `a` (its config adjusted by
/// `configure`) in a namespace on a switch of its own, once it has an
/// address: the lab, the binary, the agent and its first summary. `None`
/// when the test does not run here (after a loud SKIPPED line).
fn lone_agent(test: &str, configure: impl FnOnce(&mut NodeConfig)) -> Result<Option<(Lab, Kairos, Agent, Summary)>> {
    let Some((mut lab, kairos)) = lab_with_agent(test) else {
        return Ok(None);
    };
    let mut config = NodeConfig::new(&kairos.generate_token()?);
    configure(&mut config);
    let lan = lab.switch("lan")?;
    let ns = lab.host("a")?;
    lab.plug(&ns, &lan, "eth0", "10.99.0.11/24")?;
    let a = lab.start_agent(&kairos, &ns, "a", &config)?;
    let first = lab.wait_address(&a, DEADLINE)?.value;
    Ok(Some((lab, kairos, a, first)))
}

/// The names in `dir` (empty if it cannot be read).
fn names(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn temp_files(dir: &Path) -> Vec<String> {
    names(dir).into_iter().filter(|n| n.starts_with(TEMP_PREFIX)).collect()
}

fn read(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).map_err(|e| HarnessError::io(format!("reading {}", path.display()), e))
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    fs::write(path, bytes).map_err(|e| HarnessError::io(format!("writing {}", path.display()), e))
}

/// The agent's log since its latest start (the lab appends every start to
/// one log, each after a `### command` line).
fn log_since_start(lab: &Lab, agent: &Agent) -> String {
    let log = lab.log(agent.process);
    let start = log.rfind("### ").unwrap_or(0);
    log[start..].to_owned()
}

/// Stops `agent` with SIGTERM and checks it exits 0.
fn stop(lab: &mut Lab, agent: &Agent) -> Result<()> {
    let (status, in_grace) = lab.stop(agent.process, Duration::from_secs(10))?;
    if !in_grace || !status.success() {
        return Err(check(format!(
            "{} should exit 0 soon after SIGTERM, got {status}",
            agent.name
        )));
    }
    Ok(())
}

/// Waits until every file of `files` is in `dir`.
fn wait_files(dir: &Path, files: &[&str]) -> Result<()> {
    wait_for(&format!("{} to hold {files:?}", dir.display()), DEADLINE, || {
        let present = names(dir);
        let missing: Vec<&&str> = files.iter().filter(|f| !present.iter().any(|p| p == **f)).collect();
        Ok::<_, HarnessError>(if missing.is_empty() {
            Poll::Ready(())
        } else {
            Poll::Pending(format!("missing {missing:?}; present {present:?}"))
        })
    })
    .map(|_| ())
}

/// `PUT /api/ledger/e2e/<key>` with the bytes of `file`; checks the 200.
fn put(lab: &Lab, agent: &Agent, key: &str, file: &Path) -> Result<()> {
    let api = agent.api();
    let path = format!("/api/ledger/{BUCKET}/{key}");
    let file = file.to_string_lossy().into_owned();
    let out = lab.net_tool_ok(&agent.ns, &["http", "PUT", &api, &path, &file], Duration::from_secs(10))?;
    let status = out.lines().next().unwrap_or_default();
    if status.split_whitespace().nth(1) != Some("200") {
        return Err(check(format!("PUT {path}: {}", out.trim())));
    }
    Ok(())
}

/// The value of the metric `name` (no labels) in `agent`'s `/metrics`.
fn metric(lab: &Lab, agent: &Agent, name: &str) -> Result<f64> {
    let text = lab.http_get(&agent.ns, &agent.api(), "/metrics")?;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .ok_or_else(|| check(format!("no {name} in /metrics")))
}

/// The summary's `state_repairs`.
fn repairs(raw: &Value) -> Vec<Value> {
    raw["state_repairs"].as_array().cloned().unwrap_or_default()
}

/// Ways to damage a file.
type Damage = fn(&[u8]) -> Vec<u8>;

fn flip_a_bit(b: &[u8]) -> Vec<u8> {
    let mut b = b.to_vec();
    let middle = b.len() / 2;
    b[middle] ^= 0x04;
    b
}

fn truncate(b: &[u8]) -> Vec<u8> {
    b[..b.len() * 2 / 3].to_vec()
}

fn empty(_: &[u8]) -> Vec<u8> {
    Vec::new()
}

fn garbage(b: &[u8]) -> Vec<u8> {
    b.iter().enumerate().map(|(i, _)| (i * 31 + 7) as u8).collect()
}

/// One round of damage to a stopped agent's state files.
struct Round {
    what: &'static str,
    files: &'static [&'static str],
    damage: Damage,
    /// Whether the node must come back with the same address (its ledger
    /// snapshot, which holds its claim, is intact).
    same_address: bool,
}

const ROUNDS: &[Round] = &[
    Round {
        what: "a flipped bit in the address claim",
        files: &["address-claim.state"],
        damage: flip_a_bit,
        same_address: true,
    },
    Round {
        what: "a flipped bit in every state file",
        files: &BLOBS,
        damage: flip_a_bit,
        same_address: false,
    },
    Round {
        what: "every state file truncated",
        files: &BLOBS,
        damage: truncate,
        same_address: false,
    },
    Round {
        what: "every state file emptied",
        files: &BLOBS,
        damage: empty,
        same_address: false,
    },
    Round {
        what: "every state file overwritten with garbage",
        files: &BLOBS,
        damage: garbage,
        same_address: false,
    },
];

#[test]
fn damaged_state_files_are_set_aside_and_the_node_keeps_its_identity() -> Result<()> {
    let test = "state_damaged";
    let Some((mut lab, kairos, mut a, first)) = lone_agent(test, |_| {})? else {
        return Ok(());
    };
    wait_files(&a.state_dir, &BLOBS)?;
    stop(&mut lab, &a)?;
    let dir = a.state_dir.clone();

    for round in ROUNDS {
        let mut damaged = Vec::new();
        for file in round.files {
            let path = dir.join(file);
            let bytes = (round.damage)(&read(&path)?);
            write(&path, &bytes)?;
            damaged.push((*file, bytes));
        }
        lab.restart_agent(&kairos, &mut a)?;
        let summary = lab.wait_address(&a, DEADLINE)?.value;
        let what = round.what;
        assert_eq!(summary.node_id, first.node_id, "{what}: the node keeps its identity");
        if round.same_address {
            assert_eq!(
                summary.ipv4, first.ipv4,
                "{what}: the ledger snapshot keeps the address"
            );
        }
        let repairs = repairs(&summary.raw);
        assert_eq!(repairs.len(), damaged.len(), "{what}: one repair per file: {repairs:?}");
        let log = log_since_start(&lab, &a);
        for (file, bytes) in &damaged {
            let repair = repairs
                .iter()
                .find(|r| r["file"] == *file && r["kind"] == "damaged")
                .ok_or_else(|| check(format!("{what}: no repair of {file} in {repairs:?}")))?;
            let moved = repair["moved_to"].as_str().unwrap_or_default();
            assert!(moved.starts_with(&format!("{file}.damaged-")), "{what}: {repair}");
            assert_eq!(
                &read(&dir.join(moved))?,
                bytes,
                "{what}: the damaged {file} is kept as it was"
            );
            let line = log
                .lines()
                .find(|l| l.contains("WARN") && l.contains(&format!("state repaired: {file} was unusable")))
                .ok_or_else(|| check(format!("{what}: no warning about {file} in the log:\n{log}")))?;
            assert!(line.contains(&format!("moved it to {moved}")), "{what}: {line}");
        }
        // The repaired files are written afresh.
        wait_files(&dir, &BLOBS)?;
        stop(&mut lab, &a)?;
        note(&format!("{test}: {what}: repaired, same node id {}", first.node_id));
    }

    // A leftover of an interrupted write is removed and reported.
    let leftover = format!("{TEMP_PREFIX}ledger-snapshot.state.99999.0");
    write(&dir.join(&leftover), b"half a snapshot")?;
    lab.restart_agent(&kairos, &mut a)?;
    let summary = lab.wait_address(&a, DEADLINE)?.value;
    assert_eq!(summary.node_id, first.node_id);
    let repairs = repairs(&summary.raw);
    assert!(
        repairs
            .iter()
            .any(|r| r["kind"] == "interrupted_write" && r["file"] == "ledger-snapshot.state"),
        "{repairs:?}"
    );
    assert!(temp_files(&dir).is_empty(), "the leftover is gone");
    assert!(
        log_since_start(&lab, &a).contains(&format!("removed the unfinished copy {leftover}")),
        "the log names the leftover"
    );
    stop(&mut lab, &a)?;

    // A damaged identity stops the start, says what to do, and stays as it was.
    let key = dir.join("identity.key");
    let good = read(&key)?;
    for (what, damage) in [("a flipped bit", flip_a_bit as Damage), ("truncated", truncate)] {
        let bad = damage(&good);
        write(&key, &bad)?;
        lab.restart_agent(&kairos, &mut a)?;
        let status = lab.wait_exit(a.process, DEADLINE)?;
        assert_eq!(status.code(), Some(1), "identity.key {what}: exit 1, got {status}");
        let log = log_since_start(&lab, &a);
        assert!(log.contains("identity.key is unusable"), "identity.key {what}:\n{log}");
        assert!(log.contains("restore it from a backup"), "identity.key {what}:\n{log}");
        assert_eq!(read(&key)?, bad, "identity.key {what}: never replaced");
    }
    write(&key, &good)?;
    lab.restart_agent(&kairos, &mut a)?;
    let summary = lab.wait_address(&a, DEADLINE)?.value;
    assert_eq!(
        summary.node_id, first.node_id,
        "the restored identity.key is the same node"
    );
    lab.finish();
    Ok(())
}

/// How many SIGKILLs must land while a state write is in flight.
const KILLS_MID_WRITE: usize = 8;
/// At most this many kill-and-restart rounds.
const MAX_KILL_ROUNDS: usize = 40;
/// Ledger values written before each kill (16 000 bytes each), so each
/// snapshot is big enough to take a while to write.
const VALUES_PER_ROUND: usize = 8;

#[test]
fn sigkill_during_state_writes_never_damages_state_or_costs_the_identity() -> Result<()> {
    let test = "state_sigkill";
    let Some((mut lab, kairos, mut a, first)) = lone_agent(test, |_| {})? else {
        return Ok(());
    };
    let dir = a.state_dir.clone();
    let value = lab.dir().join("value");
    let (mut rounds, mut mid_write, mut leftovers_reported) = (0, 0, 0);
    while mid_write < KILLS_MID_WRITE && rounds < MAX_KILL_ROUNDS {
        rounds += 1;
        // Ledger changes: the snapshot is written a second after the first.
        write(&value, &vec![b'a' + (rounds % 26) as u8; 16_000])?;
        for k in 0..VALUES_PER_ROUND {
            put(&lab, &a, &format!("k{k}"), &value)?;
        }
        // Kill as soon as a write has begun (its temporary file exists).
        let started = Instant::now();
        while temp_files(&dir).is_empty() && started.elapsed() < DEADLINE {
            std::thread::yield_now();
        }
        lab.kill(a.process)?;
        let left = temp_files(&dir);
        if !left.is_empty() {
            mid_write += 1;
        }

        lab.restart_agent(&kairos, &mut a)?;
        let summary = lab.wait_for_api(&a, DEADLINE)?;
        assert_eq!(summary.node_id, first.node_id, "round {rounds}: same identity");
        let repairs = repairs(&summary.raw);
        assert!(
            repairs.iter().all(|r| r["kind"] == "interrupted_write"),
            "round {rounds}: a SIGKILL must never damage a state file: {repairs:?}"
        );
        for temp in &left {
            let said = repairs
                .iter()
                .any(|r| r["effect"].as_str().unwrap_or_default().contains(temp.as_str()));
            assert!(said, "round {rounds}: the leftover {temp} is reported: {repairs:?}");
            leftovers_reported += 1;
        }
        assert!(temp_files(&dir).is_empty(), "round {rounds}: leftovers removed");
        assert!(
            !names(&dir).iter().any(|n| n.contains(".damaged-")),
            "round {rounds}: nothing was set aside"
        );
    }
    assert!(
        mid_write >= KILLS_MID_WRITE,
        "only {mid_write} of {rounds} SIGKILLs landed while a state write was in flight"
    );
    // The mesh state survived too: the node has its address back.
    let last = lab.wait_address(&a, DEADLINE)?.value;
    assert_eq!(last.node_id, first.node_id);
    note(&format!(
        "{test}: {rounds} SIGKILLs, {mid_write} mid-write ({leftovers_reported} leftovers removed and reported), \
         no damage, same node id {}",
        first.node_id
    ));
    lab.finish();
    Ok(())
}

/// The size of the tmpfs the full-disk test puts the state dir on.
const TMPFS_SIZE: &str = "1m";

/// Writes `path` until the file system is full; returns the bytes written.
fn fill(path: &Path) -> Result<u64> {
    use std::io::Write;
    let mut f = fs::File::create(path).map_err(|e| HarnessError::io(format!("creating {}", path.display()), e))?;
    let chunk = [0x5au8; 4096];
    let mut written = 0u64;
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) if e.kind() == std::io::ErrorKind::StorageFull => break,
            Err(e) => return Err(HarnessError::io(format!("filling {}", path.display()), e)),
        }
    }
    Ok(written)
}

#[test]
fn a_full_disk_keeps_the_agent_running_and_it_saves_again_once_there_is_room() -> Result<()> {
    let test = "state_full_disk";
    let tmpfs = |c: &mut NodeConfig| c.state_tmpfs = Some(TMPFS_SIZE.to_owned());
    let Some((mut lab, _, a, first)) = lone_agent(test, tmpfs)? else {
        return Ok(());
    };
    let dir = lab.state_dir(&a);
    let snapshot = dir.join("ledger-snapshot.state");
    let value = lab.dir().join("value");

    // A value the snapshot on disk holds before the disk fills.
    write(&value, b"saved-before-the-disk-filled")?;
    put(&lab, &a, "before", &value)?;
    let saved = wait_for("the snapshot to hold the first value", DEADLINE, || {
        let bytes = read(&snapshot)?;
        Ok::<_, HarnessError>(if contains(&bytes, b"saved-before-the-disk-filled") {
            Poll::Ready(bytes)
        } else {
            Poll::Pending(format!("{} bytes without it", bytes.len()))
        })
    })?
    .value;

    let filler = dir.join("filler");
    let filled = fill(&filler)?;
    write(&value, b"written-while-the-disk-was-full")?;
    put(&lab, &a, "during", &value)?;
    // The write fails, and fails again on the retry.
    wait_until("two failed state writes in /metrics", DEADLINE, || {
        Ok::<_, HarnessError>(
            metric(&lab, &a, "kairos_state_write_errors_total")? >= 2.0
                && metric(&lab, &a, "kairos_state_unsaved_files")? >= 1.0,
        )
    })?;
    let summary = lab.summary(&a)?;
    assert_eq!(summary.node_id, first.node_id, "the API still answers");
    assert_eq!(read(&snapshot)?, saved, "no partial file replaced the saved snapshot");
    assert!(temp_files(&dir).is_empty(), "no temporary file left: {:?}", names(&dir));
    let log = log_since_start(&lab, &a);
    let warnings = log.lines().filter(|l| l.contains("cannot save state;")).count();
    assert_eq!(warnings, 1, "one warning per failure episode:\n{log}");
    assert!(
        log.contains("No space left on device"),
        "the warning names the error:\n{log}"
    );

    fs::remove_file(&filler).map_err(|e| HarnessError::io("removing the filler", e))?;
    wait_until("the unsaved state to be saved", DEADLINE, || {
        Ok::<_, HarnessError>(metric(&lab, &a, "kairos_state_unsaved_files")? == 0.0)
    })?;
    assert!(
        contains(&read(&snapshot)?, b"written-while-the-disk-was-full"),
        "the newest snapshot is on disk"
    );
    assert!(
        log_since_start(&lab, &a).contains("state saved again"),
        "the log says saving works again"
    );
    let errors = metric(&lab, &a, "kairos_state_write_errors_total")?;
    stop(&mut lab, &a)?;
    note(&format!(
        "{test}: {filled} bytes filled the {TMPFS_SIZE} tmpfs; {errors} failed writes, one warning, saved again once freed"
    ));
    lab.finish();
    Ok(())
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
