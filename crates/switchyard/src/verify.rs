//! `switchyard verify`: checks a received webhook request against a secret or public key and
//! says whether it is valid, and why not.

use anyhow::{Context, bail};
use clap::Args;
use std::io::Read;
use std::path::PathBuf;
use switchyard_core::signing::{VerifyError, verify};

/// Largest body `verify` reads; webhook bodies are far smaller.
const MAX_BODY_BYTES: u64 = 64 * 1024 * 1024;

#[derive(Args, Debug, Clone)]
pub struct VerifyArgs {
    /// The endpoint's `whsec_` secret (hmac) or `whpk_` public key (ed25519).
    #[arg(long)]
    pub key: String,
    /// A request header as `name: value`; repeat it. `webhook-id`, `webhook-timestamp` and
    /// `webhook-signature` are needed.
    #[arg(long = "header", short = 'H')]
    pub headers: Vec<String>,
    /// A file holding the request body exactly as received; `-` reads standard input.
    #[arg(long)]
    pub body: PathBuf,
    /// Check the timestamp against this time (Unix seconds) instead of now.
    #[arg(long)]
    pub now: Option<i64>,
}

/// Verifies; `Ok(Err(why))` for a request that does not verify.
pub fn run(args: &VerifyArgs) -> anyhow::Result<Result<(), VerifyError>> {
    let header = |name: &str| -> anyhow::Result<String> {
        args.headers
            .iter()
            .filter_map(|h| h.split_once(':'))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
            .with_context(|| format!("give the `{name}` header with --header '{name}: …'"))
    };
    let (id, timestamp, signature) = (
        header("webhook-id")?,
        header("webhook-timestamp")?,
        header("webhook-signature")?,
    );
    let mut body = Vec::new();
    let reader: Box<dyn Read> = if args.body.as_os_str() == "-" {
        Box::new(std::io::stdin())
    } else {
        Box::new(
            std::fs::File::open(&args.body)
                .with_context(|| format!("opening {}", args.body.display()))?,
        )
    };
    reader
        .take(MAX_BODY_BYTES + 1)
        .read_to_end(&mut body)
        .context("reading the body")?;
    if body.len() as u64 > MAX_BODY_BYTES {
        bail!("the body is larger than {} MiB", MAX_BODY_BYTES >> 20);
    }
    let now = args
        .now
        .unwrap_or_else(|| switchyard_core::time::now_ms() / 1000);
    Ok(verify(&args.key, &id, &timestamp, &signature, &body, now))
}
