//! Command-line interface (clap).

use std::net::Ipv4Addr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "bramble",
    version,
    about = "Network-boot appliance for Raspberry Pi classrooms: DHCP, TFTP, NFS, accounts",
    long_about = None
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the appliance (what PID 1 does with no arguments).
    Serve(ServeArgs),
    /// Validate the settings without starting anything; lists every problem.
    CheckConfig(ServeArgs),
    /// Manage registered clients on the running server.
    #[command(subcommand)]
    Client(ClientCommand),
    /// Manage user accounts (LDAP) and their homes.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage shared folders (readable by all, writable by teachers).
    #[command(subcommand)]
    Folder(FolderCommand),
    /// Exit 0 if the running server's /health answers 200 (container HEALTHCHECK).
    Health(Remote),
}

#[derive(Args, Clone)]
pub struct DataArg {
    /// The data volume.
    #[arg(
        long,
        env = "BRAMBLE_DATA",
        default_value = "/var/lib/bramble",
        global = true
    )]
    pub data: PathBuf,
}

impl Default for DataArg {
    fn default() -> Self {
        Self {
            data: std::env::var_os("BRAMBLE_DATA")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/var/lib/bramble")),
        }
    }
}

#[derive(Args, Clone, Default)]
pub struct ServeArgs {
    #[command(flatten)]
    pub data: DataArg,
    /// Override a setting, e.g. `--set http.listen=127.0.0.1:8080` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

#[derive(Args, Clone)]
pub struct Remote {
    #[command(flatten)]
    pub data: DataArg,
    /// Server URL (default: from http.listen in the settings).
    #[arg(long, env = "BRAMBLE_URL", global = true)]
    pub url: Option<String>,
}

#[derive(Subcommand)]
pub enum ClientCommand {
    /// Register a client so it may boot.
    Add {
        /// MAC address (aa:bb:cc:dd:ee:ff).
        mac: String,
        #[command(flatten)]
        fields: ClientFields,
        #[command(flatten)]
        remote: Remote,
    },
    /// Change a registered client (e.g. assign another OS).
    Set {
        mac: String,
        #[command(flatten)]
        fields: ClientFields,
        #[command(flatten)]
        remote: Remote,
    },
    /// List registered clients.
    List {
        #[command(flatten)]
        remote: Remote,
    },
    /// Unregister a client.
    Remove {
        mac: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Devices that asked to boot but are not registered.
    Discovered {
        #[command(flatten)]
        remote: Remote,
    },
}

#[derive(Args, Clone)]
pub struct ClientFields {
    /// OS tree under os/ on the volume.
    #[arg(long)]
    pub os: Option<String>,
    /// Raspberry Pi serial number (hex).
    #[arg(long)]
    pub serial: Option<String>,
    /// A name for people.
    #[arg(long)]
    pub name: Option<String>,
    /// Extra kernel arguments for this client.
    #[arg(long, allow_hyphen_values = true)]
    pub kernel_args: Option<String>,
    /// Fixed address in standalone mode.
    #[arg(long)]
    pub fixed_ip: Option<Ipv4Addr>,
}

#[derive(Subcommand)]
pub enum UserCommand {
    /// Create a user and their home directory.
    Add {
        name: String,
        /// Read the password from standard input (first line).
        #[arg(long)]
        password_stdin: bool,
        #[arg(long)]
        full_name: Option<String>,
        /// Member of `teachers` (may write shared folders).
        #[arg(long)]
        teacher: bool,
        /// The user must choose a new password at first login.
        #[arg(long)]
        must_change_password: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// List users.
    List {
        #[command(flatten)]
        remote: Remote,
    },
    /// Set a user's password (read from standard input).
    Passwd {
        name: String,
        /// Read the password from standard input (the default; kept for scripts).
        #[arg(long)]
        password_stdin: bool,
        #[arg(long)]
        must_change_password: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// Delete a user; say what happens to the home.
    Remove {
        name: String,
        /// Move the home to archive/homes/ on the volume.
        #[arg(
            long,
            conflicts_with = "delete_home",
            required_unless_present = "delete_home"
        )]
        archive_home: bool,
        /// Delete the home and everything in it.
        #[arg(long)]
        delete_home: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// Import users from a CSV file: `user,password[,full name]` per line.
    Import {
        file: PathBuf,
        /// Do not force a password change at first login.
        #[arg(long)]
        no_must_change: bool,
        #[command(flatten)]
        remote: Remote,
    },
}

#[derive(Subcommand)]
pub enum FolderCommand {
    /// Create a shared folder.
    Add {
        name: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// List shared folders.
    List {
        #[command(flatten)]
        remote: Remote,
    },
    /// Remove a shared folder (refused if not empty unless --force).
    Remove {
        name: String,
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        remote: Remote,
    },
}
