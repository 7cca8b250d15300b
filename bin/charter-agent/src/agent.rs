//! The agent's state machine and its one enforcement chokepoint.
//!
//! Every host request arrives at [`Agent::handle`]. Requests that an enforcement point covers
//! are translated into the policy's `input` (with what only the guest knows: canonical paths,
//! the user resolved from the container's own files) and go through [`enforce`], the only
//! place that calls [`Enforcer::check`]. The effect functions in `guest` and `containers` take
//! the resulting [`Allowed`] as a parameter, so no effect can run without a decision; when an
//! effect fails the decision is rolled back and the policy state stays as it was.
//!
//! Until a policy whose SHA-256 equals the attested HOST_DATA is set, only `status`,
//! `attest` and `set_policy` are answered; everything else is refused as closed.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use charter_agent_api::{AgentError, AgentStatus, Denial, ErrorKind, Outcome, Reply, Request};
use charter_attest::{Report, TeeProvider};
use charter_policy::{Allowed, Enforcer, Request as PolicyRequest};
use sha2::{Digest, Sha256};

use crate::guest::Guest;
use crate::streams::LogRing;

/// Why a request did not succeed.
pub(crate) enum Fail {
    Denied(Box<charter_policy::Denied>),
    Agent(AgentError),
}

impl From<AgentError> for Fail {
    fn from(e: AgentError) -> Self {
        Fail::Agent(e)
    }
}

pub(crate) fn refuse(kind: ErrorKind, message: impl Into<String>) -> AgentError {
    AgentError {
        kind,
        message: message.into(),
    }
}

/// The chokepoint: check `request` against the policy, run `act` with the decision, commit
/// the state change if it succeeded, roll it back if not.
pub(crate) fn enforce<T>(
    enforcer: &mut Enforcer,
    request: &PolicyRequest,
    act: impl FnOnce(&Allowed<'_>) -> Result<T, AgentError>,
) -> Result<T, Fail> {
    let allowed = enforcer.check(request).map_err(Fail::Denied)?;
    match act(&allowed) {
        Ok(v) => {
            allowed.commit().map_err(|e| {
                Fail::Agent(refuse(
                    ErrorKind::Failed,
                    format!("policy state update failed: {e}"),
                ))
            })?;
            Ok(v)
        }
        Err(e) => {
            allowed.rollback();
            Err(Fail::Agent(e))
        }
    }
}

/// Agent configuration fixed at launch (part of the measured boot configuration in a VM).
#[derive(Debug, Clone)]
pub struct Config {
    /// Where host-provided layer images are (`mount_device` sources are names in it).
    pub host_dir: PathBuf,
    /// The OCI runtime binary.
    pub runc: PathBuf,
    /// The host's scratch disk (utility VM): scratch goes there under dm-crypt and
    /// dm-integrity. `None`: scratch is tmpfs in guest memory.
    pub scratch_disk: Option<PathBuf>,
    /// `mke2fs`, for the file system on the encrypted scratch.
    pub mke2fs: PathBuf,
}

pub(crate) struct Core {
    pub enforcer: Option<Enforcer>,
    pub digest: Option<[u8; 32]>,
    pub guest: Guest,
}

/// The agent.
pub struct Agent {
    tee: Arc<dyn TeeProvider + Send + Sync>,
    core: Mutex<Core>,
    pub(crate) logs: LogRing,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("tee", &self.tee.name())
            .finish_non_exhaustive()
    }
}

impl Agent {
    /// A closed agent.
    pub fn new(config: Config, tee: Box<dyn TeeProvider + Send + Sync>) -> Self {
        Self {
            tee: Arc::from(tee),
            core: Mutex::new(Core {
                enforcer: None,
                digest: None,
                guest: Guest::new(config),
            }),
            logs: LogRing::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Core> {
        self.core.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn log(&self, line: String) {
        self.logs.log(line);
    }

    /// Handles one request.
    pub fn handle(&self, request: Request) -> Outcome {
        let op = request.op();
        let result = self.dispatch(request);
        match result {
            Ok(reply) => {
                self.log(format!("{op}: ok"));
                Outcome::Ok { reply }
            }
            Err(Fail::Denied(d)) => {
                self.log(format!("{op}: {}", d.explanation()));
                Outcome::Denied(Denial {
                    rule: d.rule().to_owned(),
                    explanation: d.explanation(),
                    decision: d.decision_json(),
                })
            }
            Err(Fail::Agent(e)) => {
                self.log(format!("{op}: {:?}: {}", e.kind, e.message));
                Outcome::Error(e)
            }
        }
    }

    fn dispatch(&self, request: Request) -> Result<Reply, Fail> {
        match request {
            Request::Status {} => Ok(Reply::Status(self.status())),
            Request::Attest { report_data } => self.attest(&report_data),
            Request::SetPolicy { policy } => self.set_policy(policy),
            // Blocking lifecycle requests: look up under the lock, block outside it.
            Request::WaitProcess {
                container_id,
                process_id,
            } => {
                let exit = {
                    let core = self.lock();
                    Self::enforcing(&core)?;
                    core.guest.exit_cell(&container_id, process_id)?
                };
                let e = exit.wait();
                Ok(Reply::Exit {
                    code: e.code,
                    signal: e.signal,
                })
            }
            Request::ReadStdio {
                container_id,
                process_id,
                stream,
                max_bytes,
            } => {
                let buf = {
                    let core = self.lock();
                    Self::enforcing(&core)?;
                    core.guest.stream(&container_id, process_id, stream)?
                };
                let max = max_bytes.clamp(1, charter_agent_api::MAX_STDIO_CHUNK) as usize;
                let (data, eof) = buf.read(max);
                Ok(Reply::Stdio {
                    data: b64(&data),
                    eof,
                })
            }
            Request::WriteStdin {
                container_id,
                process_id,
                data,
                close,
            } => {
                let stdin = {
                    let core = self.lock();
                    Self::enforcing(&core)?;
                    core.guest.stdin(&container_id, process_id)?
                };
                let bytes = unb64(&data)?;
                crate::containers::write_stdin(&stdin, &bytes, close)?;
                Ok(Reply::Done {})
            }
            other => {
                let mut core = self.lock();
                Self::enforcing(&core)?;
                let Core {
                    enforcer, guest, ..
                } = &mut *core;
                let Some(enforcer) = enforcer.as_mut() else {
                    return Err(closed().into());
                };
                guest.apply(enforcer, other, &self.logs)
            }
        }
    }

    fn enforcing(core: &Core) -> Result<(), AgentError> {
        if core.enforcer.is_some() {
            Ok(())
        } else {
            Err(closed())
        }
    }

    fn status(&self) -> AgentStatus {
        let core = self.lock();
        AgentStatus {
            state: if core.enforcer.is_some() {
                "enforcing".into()
            } else {
                "closed".into()
            },
            policy_digest: core.digest.map(hex::encode),
            tee: self.tee.name().to_owned(),
            containers: core.guest.container_ids(),
        }
    }

    fn attest(&self, report_data: &str) -> Result<Reply, Fail> {
        let mut rd = [0u8; 64];
        hex::decode_to_slice(report_data, &mut rd).map_err(|e| {
            refuse(
                ErrorKind::BadRequest,
                format!("report_data must be 128 hex digits: {e}"),
            )
        })?;
        let evidence = self
            .tee
            .report(rd)
            .map_err(|e| refuse(ErrorKind::Tee, e.to_string()))?;
        let evidence = serde_json::from_str(&evidence.to_json())
            .map_err(|e| refuse(ErrorKind::Tee, e.to_string()))?;
        Ok(Reply::Evidence { evidence })
    }

    fn set_policy(&self, policy: String) -> Result<Reply, Fail> {
        let mut core = self.lock();
        if let Some(d) = core.digest {
            return Err(refuse(
                ErrorKind::PolicyRejected,
                format!(
                    "a policy is already set (sha256 {}); it can be set only once",
                    hex::encode(d)
                ),
            )
            .into());
        }
        let digest: [u8; 32] = Sha256::digest(policy.as_bytes()).into();
        let mut report_data = [0u8; 64];
        report_data[..32].copy_from_slice(&digest);
        let evidence = self
            .tee
            .report(report_data)
            .map_err(|e| refuse(ErrorKind::Tee, e.to_string()))?;
        let report = Report::from_bytes(&evidence.report)
            .map_err(|e| refuse(ErrorKind::Tee, format!("own report: {e}")))?;
        if report.host_data() != &digest {
            return Err(refuse(
                ErrorKind::PolicyRejected,
                format!(
                    "policy sha256 {} is not the attested HOST_DATA {}; staying closed",
                    hex::encode(digest),
                    hex::encode(report.host_data())
                ),
            )
            .into());
        }
        let enforcer = Enforcer::new(policy.as_bytes()).map_err(|e| {
            refuse(
                ErrorKind::PolicyRejected,
                format!("policy does not load: {e}"),
            )
        })?;
        core.guest
            .prepare_sandbox()
            .map_err(|e| refuse(ErrorKind::Failed, e))?;
        if let Some(kb) = enforcer.document().and_then(|d| d.key_broker.clone()) {
            let broker =
                crate::keys::Broker::new(&kb, &core.guest.config.host_dir, self.tee.clone())
                    .map_err(|e| refuse(ErrorKind::PolicyRejected, e))?;
            let broker = Arc::new(broker);
            if kb.workload_endpoint {
                crate::workload::start(broker.clone())
                    .map_err(|e| refuse(ErrorKind::Failed, format!("workload endpoint: {e}")))?;
                self.log(format!("workload endpoint on {}", crate::workload::ADDR));
            }
            core.guest.broker = Some(broker);
        }
        core.enforcer = Some(enforcer);
        core.digest = Some(digest);
        drop(core);
        self.log(format!("policy set: sha256 {}", hex::encode(digest)));
        Ok(Reply::Done {})
    }
}

fn closed() -> AgentError {
    refuse(
        ErrorKind::Closed,
        "no execution policy is set: the agent denies everything until one is",
    )
}

pub(crate) fn b64(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(data)
}

fn unb64(data: &str) -> Result<Vec<u8>, AgentError> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data)
        .map_err(|e| {
            refuse(
                ErrorKind::BadRequest,
                format!("stdin data is not base64: {e}"),
            )
        })?;
    if bytes.len() > charter_agent_api::MAX_STDIO_CHUNK as usize {
        return Err(refuse(ErrorKind::BadRequest, "stdin chunk too large"));
    }
    Ok(bytes)
}
