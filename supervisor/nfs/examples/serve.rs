//! Runs the NFS service alone, for manual tests and benchmarks.
//!
//! `serve --data DIR [--set KEY=VALUE]...` reads `DIR/bramble.toml` like
//! `bramble serve` does and answers `GET /health` on `http.listen`, so the
//! black-box tests can run against it (`BRAMBLE_BIN=.../examples/serve`)
//! before the binary wires the service in. SIGTERM or Ctrl-C stops it.

use std::path::PathBuf;

use bramble_core::clients::Registry;
use bramble_core::leases::Leases;
use bramble_core::{Status, Volume};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BRAMBLE_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .init();
    let (data, sets) = parse_args()?;
    let settings = bramble_core::settings::load(&data, &sets)?;
    let volume = Volume::open(&data)?;
    let sockets = bramble_nfs::bind(&settings.nfs).await?;
    let ctx = bramble_nfs::Context {
        settings: settings.nfs.clone(),
        registry: Registry::open(&volume)?,
        leases: Leases::open(&volume)?,
        volume,
        status: Status::new(),
    };
    let shutdown = CancellationToken::new();
    tokio::spawn(health(settings.http.listen));
    let stop = shutdown.clone();
    let mut term = signal(SignalKind::terminate())?;
    tokio::spawn(async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        stop.cancel();
    });
    bramble_nfs::run(sockets, ctx, shutdown).await?;
    Ok(())
}

fn parse_args() -> Result<(PathBuf, Vec<String>), String> {
    let mut data = None;
    let mut sets = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "serve" => {}
            "--data" => data = args.next().map(PathBuf::from),
            "--set" => sets.extend(args.next()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok((
        data.ok_or("usage: serve --data DIR [--set KEY=VALUE]...")?,
        sets,
    ))
}

/// Answers every HTTP request with 200 (readiness for the test harness).
async fn health(addr: std::net::SocketAddr) {
    let Ok(listener) = tokio::net::TcpListener::bind(addr).await else {
        return;
    };
    while let Ok((mut s, _)) = listener.accept().await {
        tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n")
                .await;
        });
    }
}
