//! [`run`]: the bootstrap's task. It follows the driver's [`K3sInputs`],
//! asks [`plan`] what to do, and does it: writes the k3s config drop-in,
//! starts, restarts or stops k3s (under systemd or as a supervised child),
//! waits for k3s's node token and kubeconfig, records the deployed role,
//! publishes the master's entries and reports the deployment.
//!
//! It wakes on a change of the inputs, and on a timer only while it waits
//! for something that has no event: k3s's files (every 500 ms), a
//! republish ([`plan::REPUBLISH_AFTER`]), a failed systemd start (10 s).
//! It never touches the node or the ledger: [`K3sOutput`]s go to the driver.

use std::time::Duration;

use kairos_core::election::Role;
use kairos_core::ledger::buckets::{IP_MASTER, MASTER_KUBECONFIG, TOKEN_NODETOKEN};
use kairos_core::ledger::MAX_VALUE_LEN;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::files;
use super::kubeconfig;
use super::launch::{self, Launch};
use super::marker;
use super::paths::Paths;
use super::plan::{self, Cluster, Deployment, Entries, Publish, Step, Wait};
use super::settings::K3sSettings;
use super::supervise::{self, Supervisor};
use super::systemd::{self, Systemd};
use super::{K3sInputs, K3sOutput};

/// How often k3s's files are looked for while a server starts.
pub const FILE_POLL: Duration = Duration::from_millis(500);
/// After this long without k3s's files, a warning; then every [`READY_WARN_EVERY`].
pub const READY_WARN_AFTER: Duration = Duration::from_secs(120);
/// How often the warning repeats while k3s is still not ready.
pub const READY_WARN_EVERY: Duration = Duration::from_secs(300);
/// How often a running master reads its token and kubeconfig again (k3s
/// may rotate them).
pub const REREAD_EVERY: Duration = Duration::from_secs(30);
/// How long after a failed systemd start it is tried again.
pub const RETRY_AFTER: Duration = Duration::from_secs(10);

/// Runs the k3s bootstrap until the driver drops its end of `inputs` or of
/// `outputs`. The supervised k3s child is then stopped (SIGTERM, waited
/// for); k3s under systemd keeps running. Aborting the task instead sends
/// the child SIGTERM without waiting.
pub async fn run(settings: K3sSettings, mut inputs: watch::Receiver<K3sInputs>, outputs: mpsc::Sender<K3sOutput>) {
    let paths = settings.paths();
    let cluster = Cluster {
        ha: settings.ha,
        external_db: settings.external_db.is_some(),
    };
    let mut deployed = marker::load(&paths.deployed_marker()).unwrap_or_else(|e| {
        tracing::warn!("{e}");
        None
    });
    let mut backend = Backend::choose(&paths, &settings).await;
    tracing::info!(
        backend = backend.name(),
        deployed = ?deployed.map(|r| r.kairos_value(settings.ha)),
        root = %paths.root().display(),
        "k3s bootstrap started"
    );
    let mut running: Option<Running> = None;
    let mut last_wait: Option<Wait> = None;
    let mut retry_at: Option<Instant> = None;
    loop {
        let now_inputs = inputs.borrow_and_update().clone();
        let target = plan::target(&now_inputs, cluster, deployed);
        match &target {
            Err(w) if last_wait != Some(*w) => tracing::info!("k3s bootstrap: {w}"),
            _ => {}
        }
        last_wait = target.as_ref().err().copied();

        let current = running.as_ref().map(|r| &r.deployment);
        let step = plan::step(current, &target, now_inputs.role);
        if step != Step::Keep || retry_at.is_some_and(|t| Instant::now() >= t) {
            retry_at = None;
        }
        match step {
            Step::Keep => {
                // Same deployment; its command line may still differ (no
                // more --cluster-init once deployed): for the next restart.
                if let (Some(r), Ok(t)) = (running.as_mut(), &target) {
                    let l = launch::launch(t, &settings);
                    if l != r.launch {
                        backend.update(&l).await;
                        r.launch = l;
                        r.deployment = t.clone();
                    }
                }
            }
            Step::Start(d) | Step::Restart(d) => {
                tracing::info!(role = %d.role, node_ip = %d.node_ip, "k3s bootstrap: deploying");
                write_config(&paths, &d, &settings.interface);
                let l = launch::launch(&d, &settings);
                if backend.start(&l).await {
                    running = Some(Running::new(d, l));
                } else {
                    running = None;
                    retry_at = Some(Instant::now() + RETRY_AFTER);
                }
            }
            Step::Stop => {
                tracing::info!(role = ?now_inputs.role, "k3s bootstrap: stopping, its role is no longer this node's");
                backend.stop().await;
                running = None;
                // Not deployed any more: after a reboot it must not come
                // back in the old role before the election speaks.
                if let Err(e) = marker::remove(&paths.deployed_marker()) {
                    tracing::warn!("{e}");
                }
                deployed = None;
            }
        }

        if let Some(r) = running.as_mut() {
            r.check(&paths);
            if r.ready && deployed != Some(r.deployment.role) {
                match marker::store(&paths.deployed_marker(), r.deployment.role, settings.ha) {
                    Ok(()) => {
                        deployed = Some(r.deployment.role);
                        // The plan changes (no --cluster-init from now on): go round again.
                        continue;
                    }
                    Err(e) => tracing::warn!("{e}"),
                }
            }
            if r.publish(&now_inputs, &outputs).await.is_err() {
                break;
            }
            if let Some(role) = plan::to_report(now_inputs.role, &r.deployment, r.ready, r.reported) {
                tracing::info!(%role, "k3s bootstrap: deployed");
                if outputs.send(K3sOutput::Deployed(role)).await.is_err() {
                    break;
                }
                r.reported = Some(role);
            }
        }

        let wake = running
            .as_ref()
            .and_then(|r| r.next_wake())
            .into_iter()
            .chain(retry_at)
            .min();
        tokio::select! {
            changed = inputs.changed() => if changed.is_err() { break },
            _ = sleep_until(wake) => {}
        }
    }
    backend.shutdown().await;
    tracing::info!("k3s bootstrap stopped");
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Writes the k3s config drop-in for `d`. A failure is logged: the command
/// line carries the same settings.
fn write_config(paths: &Paths, d: &Deployment, interface: &str) {
    let text = launch::config_file(d, interface);
    if let Err(e) = files::replace(&paths.config_drop_in(), text.as_bytes(), 0o644) {
        tracing::warn!("{e}");
    }
}

/// Driver gone: nobody to publish to or report to.
struct Closed;

/// What runs, and how far it got.
struct Running {
    deployment: Deployment,
    launch: Launch,
    started: Instant,
    /// Servers: k3s's node token and kubeconfig exist. Agents: started.
    ready: bool,
    next_warn: Instant,
    reported: Option<Role>,
    /// The master's entries as last read from k3s's files, and when.
    entries: Option<(Entries, Instant)>,
    /// What was last published, and when.
    published: Option<(Entries, Instant)>,
    /// When to ask again whether to publish (the ledger shows other entries).
    republish_at: Option<Instant>,
}

impl Running {
    fn new(deployment: Deployment, launch: Launch) -> Running {
        let now = Instant::now();
        Running {
            ready: !deployment.is_server(),
            deployment,
            launch,
            started: now,
            next_warn: now + READY_WARN_AFTER,
            reported: None,
            entries: None,
            published: None,
            republish_at: None,
        }
    }

    /// Looks for k3s's files while a server is not ready, and reads a
    /// master's entries again every [`REREAD_EVERY`].
    fn check(&mut self, paths: &Paths) {
        if !self.deployment.is_server() {
            return;
        }
        let now = Instant::now();
        let due = match &self.entries {
            None => true,
            Some((_, at)) => now.duration_since(*at) >= REREAD_EVERY,
        };
        if self.ready && !due {
            return;
        }
        match read_entries(paths, &self.deployment) {
            Ok(e) => {
                if !self.ready {
                    tracing::info!(
                        after_ms = now.duration_since(self.started).as_millis() as u64,
                        "k3s bootstrap: server ready"
                    );
                }
                self.ready = true;
                self.entries = Some((e, now));
            }
            Err(why) if !self.ready && now >= self.next_warn => {
                tracing::warn!(
                    waited_s = now.duration_since(self.started).as_secs(),
                    "k3s bootstrap: server not ready yet: {why}; still waiting"
                );
                self.next_warn = now + READY_WARN_EVERY;
            }
            Err(why) if self.ready => {
                tracing::debug!("k3s bootstrap: cannot read the master's entries again: {why}");
                // Keep the last good ones; try again later.
                if let Some((_, at)) = self.entries.as_mut() {
                    *at = now;
                }
            }
            Err(_) => {}
        }
    }

    /// Publishes the master's entries when the plan says so.
    async fn publish(&mut self, inputs: &K3sInputs, outputs: &mpsc::Sender<K3sOutput>) -> Result<(), Closed> {
        self.republish_at = None;
        if !self.ready || !self.deployment.publishes() {
            return Ok(());
        }
        let Some((own, _)) = &self.entries else {
            return Ok(());
        };
        let now = Instant::now();
        let since = self
            .published
            .as_ref()
            .map_or(Duration::MAX, |(_, at)| now.duration_since(*at));
        match plan::publish(own, inputs, self.published.as_ref().map(|(e, _)| e), since) {
            Publish::No => return Ok(()),
            Publish::After(d) => {
                self.republish_at = Some(now + d);
                return Ok(());
            }
            Publish::Now => {}
        }
        tracing::info!(ip_master = %own.ip_master, "k3s bootstrap: publishing the master's address, node token and kubeconfig");
        for (key, value) in [
            (IP_MASTER, own.ip_master.as_bytes().to_vec()),
            (TOKEN_NODETOKEN, own.node_token.as_bytes().to_vec()),
            (MASTER_KUBECONFIG, own.kubeconfig.clone()),
        ] {
            outputs
                .send(K3sOutput::Publish { key, value })
                .await
                .map_err(|_| Closed)?;
        }
        self.published = Some((own.clone(), now));
        // Until the ledger shows them, look again after the republish delay.
        self.republish_at = Some(now + plan::REPUBLISH_AFTER);
        Ok(())
    }

    /// When the runner must look again without an input change: always in
    /// the future, so the loop never spins.
    fn next_wake(&self) -> Option<Instant> {
        if !self.ready {
            return Some(Instant::now() + FILE_POLL);
        }
        if !self.deployment.is_server() {
            return None;
        }
        let reread = self.entries.as_ref().map(|(_, at)| *at + REREAD_EVERY);
        reread.into_iter().chain(self.republish_at).min()
    }
}

/// The master's entries from k3s's files: `Err` with the reason while they
/// are missing or half written.
fn read_entries(paths: &Paths, d: &Deployment) -> Result<Entries, String> {
    let token_path = paths.node_token();
    let token = files::read_optional(&token_path).map_err(|e| e.to_string())?;
    let token = token
        .as_deref()
        .and_then(|t| std::str::from_utf8(t).ok())
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| format!("no node token in {}", token_path.display()))?;
    let kube_path = paths.kubeconfig();
    let kube = files::read_optional(&kube_path)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("no kubeconfig at {}", kube_path.display()))?;
    let kubeconfig = kubeconfig::rewrite(&kube, d.node_ip).map_err(|e| format!("{e} ({})", kube_path.display()))?;
    if kubeconfig.len() > MAX_VALUE_LEN || token.len() > MAX_VALUE_LEN {
        return Err(format!(
            "the kubeconfig or token is larger than a ledger value ({MAX_VALUE_LEN} bytes)"
        ));
    }
    Ok(Entries {
        ip_master: d.node_ip.to_string(),
        node_token: token.to_string(),
        kubeconfig,
    })
}

/// Where k3s runs.
enum Backend {
    /// A supervised child of the agent.
    Child(Supervisor),
    /// A systemd unit.
    Systemd(Systemd),
}

impl Backend {
    /// systemd when it is PID 1 and the root is `/`; else a supervised
    /// child, after stopping one a killed agent left behind.
    async fn choose(paths: &Paths, settings: &K3sSettings) -> Backend {
        if systemd::systemd_is_init(paths) {
            Backend::Systemd(Systemd::new(paths.clone()))
        } else {
            supervise::stop_leftover(&paths.child_pid(), &settings.bin).await;
            Backend::Child(Supervisor::new(paths.child_pid()))
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Backend::Child(_) => "child",
            Backend::Systemd(_) => "systemd",
        }
    }

    /// Starts `launch`, replacing what runs; whether it worked.
    async fn start(&mut self, launch: &Launch) -> bool {
        match self {
            Backend::Child(s) => {
                s.start(launch.clone());
                true
            }
            Backend::Systemd(s) => match s.start(launch).await {
                Ok(()) => true,
                Err(e) => {
                    tracing::error!("k3s bootstrap: {e}; trying again in {} s", RETRY_AFTER.as_secs());
                    false
                }
            },
        }
    }

    /// Runs `launch` from the next restart on.
    async fn update(&mut self, launch: &Launch) {
        match self {
            Backend::Child(s) => s.update(launch.clone()),
            Backend::Systemd(s) => {
                if let Err(e) = s.update(launch).await {
                    tracing::warn!("k3s bootstrap: {e}");
                }
            }
        }
    }

    async fn stop(&mut self) {
        match self {
            Backend::Child(s) => s.stop().await,
            Backend::Systemd(s) => {
                if let Err(e) = s.stop().await {
                    tracing::warn!("k3s bootstrap: {e}");
                }
            }
        }
    }

    /// The agent stops: the child goes with it; a systemd unit stays.
    async fn shutdown(&mut self) {
        if let Backend::Child(s) = self {
            s.stop().await;
        }
    }
}

#[cfg(test)]
mod tests;
