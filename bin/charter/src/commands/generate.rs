//! `charter policy generate`: a policy from a Kubernetes pod spec and its images.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use charter_image::{Credentials, Platform, RegistryOptions};
use charter_policygen::{LocalImages, Measuring, Options, Settings};
use clap::Args;

use super::output;
use super::progress::LayerBars;

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Kubernetes YAML: a Pod, or a Deployment, StatefulSet, DaemonSet, ReplicaSet, Job or
    /// CronJob (one policy per pod template).
    pod: PathBuf,
    /// Write the policy here (atomically); without it the policy goes to stdout unless
    /// --json or --annotate is given.
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// `REF=oci:DIR[:TAG]` or `REF=docker-archive:FILE`, REF exactly as the pod's `image:`.
    #[arg(long = "image", value_name = "REF=SOURCE")]
    images: Vec<String>,
    /// Never pull: every image needs an --image mapping.
    #[arg(long)]
    offline: bool,
    /// Speak plain HTTP to this registry (`host[:port]`, e.g. a loopback test registry).
    #[arg(long, value_name = "HOST")]
    insecure_registry: Vec<String>,
    /// Trust these PEM CA certificates for registries instead of the built-in roots.
    #[arg(long, value_name = "FILE")]
    registry_ca: Option<PathBuf>,
    /// Docker `config.json` with registry credentials (default: $DOCKER_CONFIG/config.json,
    /// ~/.docker/config.json).
    #[arg(long, value_name = "FILE")]
    registry_auth: Option<PathBuf>,
    /// Platform to pick from multi-platform indexes.
    #[arg(long, default_value = "linux/amd64")]
    platform: String,
    /// Which pod template, when the YAML has several (0-based, file order).
    #[arg(long)]
    index: Option<usize>,
    /// Deny the host access to every container's stdio.
    #[arg(long)]
    deny_stdio: bool,
    /// Allow shell exec and the debug switches. NOT FOR PRODUCTION.
    #[arg(long)]
    debug_mode: bool,
    /// Allow hostPath volumes.
    #[arg(long)]
    allow_host_path: bool,
    /// Warn about unsupported pod fields instead of failing.
    #[arg(long)]
    ignore_unsupported: bool,
    /// Platform settings (YAML: env_rules, mounts); replaces the built-in defaults.
    #[arg(long)]
    settings: Option<PathBuf>,
    /// Directory of Localhost seccomp profiles (kubelet's seccomp root).
    #[arg(long)]
    seccomp_dir: Option<PathBuf>,
    /// The key broker (`https://host[:port]`) the group may fetch keys from: needed by
    /// sealed volumes and the workload endpoint; attested with the policy.
    #[arg(long, value_name = "URL", requires = "key_broker_ca")]
    key_broker: Option<String>,
    /// PEM CA certificate(s) the agent trusts for --key-broker (and nothing else).
    #[arg(long, value_name = "FILE", requires = "key_broker")]
    key_broker_ca: Option<PathBuf>,
    /// Serve the workload key-release endpoint (ACI SKR API) on 127.0.0.1:8080 in the group.
    #[arg(long, requires = "key_broker")]
    workload_endpoint: bool,
    /// Write the pod YAML with the base64 policy as annotation
    /// `io.katacontainers.config.agent.policy`.
    #[arg(long, value_name = "OUT.yaml")]
    annotate: Option<PathBuf>,
    #[command(flatten)]
    cache: super::CacheArgs,
    #[command(flatten)]
    common: super::Common,
}

pub fn run(args: GenerateArgs) -> Result<ExitCode> {
    // Everything the command needs is checked before any image is read.
    let threads = args.common.threads()?;
    let platform: Platform = args.platform.parse()?;
    let mut images = LocalImages::new(platform);
    if !args.offline {
        let mut registry = RegistryOptions::default();
        for host in &args.insecure_registry {
            registry = registry.insecure_host(host);
        }
        if let Some(ca) = &args.registry_ca {
            registry = registry.ca_file(ca);
        }
        if let Some(auth) = &args.registry_auth {
            registry = registry.credentials(Credentials::File(auth.clone()));
        }
        images = images.with_registry(registry);
    }
    for spec in &args.images {
        images.add_mapping(spec)?;
    }
    if let (Some(a), Some(o)) = (&args.annotate, &args.output) {
        anyhow::ensure!(
            a != o,
            "--annotate and --output name the same file {}",
            a.display()
        );
    }
    let yaml = std::fs::read_to_string(&args.pod)
        .with_context(|| format!("reading {}", args.pod.display()))?;
    let settings = match &args.settings {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading settings {}", path.display()))?;
            Settings::from_yaml(&text).with_context(|| format!("settings {}", path.display()))?
        }
        None => Settings::default(),
    };
    let key_broker = match (&args.key_broker, &args.key_broker_ca) {
        (Some(url), Some(ca)) => Some(key_broker(url, ca, args.workload_endpoint)?),
        _ => None,
    };
    let options = Options {
        key_broker,
        deny_stdio: args.deny_stdio,
        debug_mode: args.debug_mode,
        allow_host_path: args.allow_host_path,
        ignore_unsupported: args.ignore_unsupported,
        settings,
        seccomp_dir: args.seccomp_dir.clone(),
        pod_index: args.index,
    };
    let cache = args.cache.open()?;
    let scratch = std::env::temp_dir();
    let bars = LayerBars::new(args.common.quiet);
    let measuring = Measuring {
        cache: cache.as_ref(),
        scratch_dir: &scratch,
        threads,
        observer: &bars,
    };
    if args.debug_mode {
        eprintln!(
            "WARNING: --debug-mode: the policy allows /bin/sh and /bin/bash in every container"
        );
        eprintln!(
            "WARNING: and properties access, stack dumps and runtime logging. NOT FOR PRODUCTION."
        );
    }
    let generated = charter_policygen::generate(&yaml, &images, &options, &measuring)
        .with_context(|| format!("generating a policy for {}", args.pod.display()))?;
    for w in &generated.warnings {
        eprintln!("warning: {w}");
    }

    // Both outputs or neither: the annotated YAML is made before anything is written.
    let annotated = match &args.annotate {
        Some(_) => Some(charter_policygen::annotate(
            &yaml,
            &generated.template,
            &generated.rego,
        )?),
        None => None,
    };
    let mut files: Vec<(&std::path::Path, &[u8])> = Vec::new();
    if let (Some(path), Some(text)) = (&args.annotate, &annotated) {
        files.push((path.as_path(), text.as_bytes()));
    }
    if let Some(path) = &args.output {
        files.push((path.as_path(), generated.rego.as_bytes()));
    }
    charter_policygen::write_all_atomically(&files)?;
    if args.common.json {
        output::line(serde_json::to_string_pretty(&generated.summary())?)?;
    } else if args.output.is_none() && args.annotate.is_none() {
        output::line(generated.rego.trim_end())?;
        eprintln!("digest {} (sha256, HOST_DATA)", generated.digest);
    } else {
        output::line(format_args!(
            "digest {} (sha256, HOST_DATA)",
            generated.digest
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The policy's key broker: an `https://host[:port]` URL and the CA PEM it is checked with.
fn key_broker(
    url: &str,
    ca: &std::path::Path,
    workload_endpoint: bool,
) -> Result<charter_policy::model::KeyBroker> {
    let rest = url.strip_prefix("https://").unwrap_or_default();
    if rest.is_empty() || rest.contains(['/', '?', '#', '@']) {
        anyhow::bail!("--key-broker {url:?}: expected https://host[:port]");
    }
    let ca_pem = std::fs::read_to_string(ca)
        .with_context(|| format!("reading --key-broker-ca {}", ca.display()))?;
    if !ca_pem.contains("-----BEGIN CERTIFICATE-----") {
        anyhow::bail!("--key-broker-ca {}: no PEM certificate in it", ca.display());
    }
    Ok(charter_policy::model::KeyBroker {
        url: url.trim_end_matches('/').to_owned(),
        ca_pem,
        workload_endpoint,
    })
}
