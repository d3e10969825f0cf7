//! `bramble health`: the container's HEALTHCHECK. Asks the running server's
//! `/health` (address from `http.listen`, or `--url`) and exits 0 only on
//! 200, so images without curl can still check liveness.

use std::time::Duration;

use anyhow::{Context, bail};

use crate::cli::Remote;

/// How long a health probe may take before it counts as a failure.
const TIMEOUT: Duration = Duration::from_secs(4);

pub fn main(remote: Remote) -> anyhow::Result<()> {
    let base = match &remote.url {
        Some(u) => u.trim_end_matches('/').to_string(),
        None => {
            let settings = bramble_core::settings::load(&remote.data.data, &[])?;
            let mut addr = settings.http.listen;
            if addr.ip().is_unspecified() {
                addr.set_ip([127, 0, 0, 1].into());
            }
            format!("http://{addr}")
        }
    };
    let url = format!("{base}/health");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (status, body) = runtime.block_on(async {
        let resp = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .build()?
            .get(&url)
            .send()
            .await
            .with_context(|| format!("cannot reach {url}"))?;
        let status = resp.status();
        anyhow::Ok((status, resp.text().await.unwrap_or_default()))
    })?;
    println!("{}", body.trim());
    if !status.is_success() {
        bail!("{url}: {status}");
    }
    Ok(())
}
