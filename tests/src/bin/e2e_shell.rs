//! `make e2e-shell`: the end-to-end bench with a QEMU console left open, for
//! people debugging a boot. Usage: `e2e_shell [proxy|standalone] [MAC]`.
//! Quit QEMU with Ctrl-A X; everything is cleaned up afterwards.

use bramble_tests::e2e::{Bench, Mode};

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = match args.next().as_deref() {
        None | Some("proxy") => Mode::Proxy,
        Some("standalone") => Mode::Standalone,
        Some(other) => {
            eprintln!("usage: e2e_shell [proxy|standalone] [MAC] (not {other:?})");
            std::process::exit(2);
        }
    };
    let mac = args.next().unwrap_or_else(|| "52:54:00:e2:e0:42".into());
    let bench = Bench::new(mode);
    bench.register(&mac);
    eprintln!(
        "bench: {mode:?} mode, bramble in namespace {} (data {}), client {mac}; Ctrl-A X quits QEMU",
        bench.lan.server.name(),
        bench.data.display()
    );
    let console = bench.data.with_extension("console.log");
    let mut qemu = bench.start_qemu(&mac, &console, true);
    qemu.wait();
    eprintln!("--- bramble log ---\n{}", bench.bramble.log());
}
