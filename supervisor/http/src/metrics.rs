//! Prometheus text exposition: process figures, unit states, counters.

use std::fmt::Write;

use axum::extract::State;
use axum::response::IntoResponse;
use bramble_core::status::UnitState;

use crate::AppState;
use crate::observe::text;

pub async fn metrics(State(app): State<AppState>) -> impl IntoResponse {
    text(render(&app))
}

fn render(app: &AppState) -> String {
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, value: f64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
        );
    };
    gauge(
        "bramble_uptime_seconds",
        "Seconds since bramble started.",
        app.status.uptime_secs(),
    );
    let process = ProcessFigures::read();
    gauge(
        "process_resident_memory_bytes",
        "Resident memory size in bytes.",
        process.rss_bytes,
    );
    gauge(
        "process_open_fds",
        "Number of open file descriptors.",
        process.open_fds,
    );
    gauge(
        "process_cpu_seconds_total",
        "User and system CPU time in seconds.",
        process.cpu_seconds,
    );
    gauge(
        "bramble_clients_registered",
        "Registered clients.",
        app.registry.list().len() as f64,
    );
    gauge(
        "bramble_clients_discovered",
        "Discovered, unregistered devices.",
        app.registry.discovered().len() as f64,
    );
    gauge(
        "bramble_leases",
        "Standalone-mode DHCP leases.",
        app.leases.all().len() as f64,
    );
    if let Some(free) = app.volume.free_bytes() {
        gauge(
            "bramble_volume_free_bytes",
            "Free space on the data volume.",
            free as f64,
        );
    }
    let units = app.status.snapshot();
    let _ = writeln!(
        out,
        "# HELP bramble_unit_up 1 when the service or child is up.\n# TYPE bramble_unit_up gauge"
    );
    for (name, u) in &units {
        let kind = format!("{:?}", u.kind).to_lowercase();
        let up = u8::from(u.state == UnitState::Up);
        let _ = writeln!(
            out,
            "bramble_unit_up{{unit=\"{name}\",kind=\"{kind}\"}} {up}"
        );
    }
    let _ = writeln!(
        out,
        "# HELP bramble_unit_restarts_total Restarts of the service or child.\n# TYPE bramble_unit_restarts_total counter"
    );
    for (name, u) in &units {
        let _ = writeln!(
            out,
            "bramble_unit_restarts_total{{unit=\"{name}\"}} {}",
            u.restarts
        );
    }
    let mut last = String::new();
    for (service, name, value) in app.status.counters() {
        let metric = format!("bramble_{service}_{name}_total");
        if metric != last {
            let _ = writeln!(out, "# TYPE {metric} counter");
            last = metric.clone();
        }
        let _ = writeln!(out, "{metric} {value}");
    }
    out
}

struct ProcessFigures {
    rss_bytes: f64,
    open_fds: f64,
    cpu_seconds: f64,
}

impl ProcessFigures {
    fn read() -> Self {
        let page = 4096.0;
        let rss_bytes = std::fs::read_to_string("/proc/self/statm")
            .ok()
            .and_then(|s| s.split_whitespace().nth(1)?.parse::<f64>().ok())
            .map(|pages| pages * page)
            .unwrap_or(0.0);
        let open_fds = std::fs::read_dir("/proc/self/fd")
            .map(|d| d.count() as f64)
            .unwrap_or(0.0);
        // Fields 14 and 15 of /proc/self/stat (after the parenthesised name).
        let cpu_seconds = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|s| {
                let rest = s.rsplit_once(')')?.1;
                let f: Vec<&str> = rest.split_whitespace().collect();
                let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
                Some(ticks / 100.0)
            })
            .unwrap_or(0.0);
        Self {
            rss_bytes,
            open_fds,
            cpu_seconds,
        }
    }
}
