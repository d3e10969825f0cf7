//! `bramble`: the appliance's single binary and PID 1.
//!
//! `main` parses flags, sets up logging and hands off: `serve` wires the
//! services and children together ([`serve`]), `check-config` validates
//! settings without starting anything, and the admin subcommands talk to a
//! running server over its HTTP API ([`admin`]); `health` probes `/health`
//! for the container HEALTHCHECK ([`health`]).

mod admin;
mod cli;
mod health;
mod logging;
mod serve;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = match cli.command {
        Some(c) => c,
        // As PID 1 (the container entrypoint) no arguments means serve.
        None if std::process::id() == 1 => Command::Serve(cli::ServeArgs::default()),
        None => {
            use clap::CommandFactory;
            let _ = Cli::command().print_help();
            return ExitCode::from(2);
        }
    };
    logging::init();
    let result = match command {
        Command::Serve(args) => serve::main(args),
        Command::CheckConfig(args) => return check_config(args),
        Command::Client(cmd) => admin::client(cmd),
        Command::User(cmd) => admin::user(cmd),
        Command::Folder(cmd) => admin::folder(cmd),
        Command::Health(remote) => health::main(remote),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bramble: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn check_config(args: cli::ServeArgs) -> ExitCode {
    match bramble_core::settings::load(&args.data.data, &args.set) {
        Ok(s) => {
            println!(
                "settings OK ({}): http {} | dhcp {:?} on {} | tftp {}",
                args.data.data.join("bramble.toml").display(),
                s.http.listen,
                s.dhcp.mode,
                s.dhcp.interface.as_deref().unwrap_or("every interface"),
                if s.tftp.enabled {
                    s.tftp.listen.to_string()
                } else {
                    "off".into()
                },
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprint!("bramble: {e}");
            ExitCode::FAILURE
        }
    }
}
