//! bramble-ldap: user accounts for the clients.
//!
//! - [`config`]: the cn=config LDIF generated from settings (MDB database,
//!   schema, ACLs, argon2 password hashing, last-bind tracking).
//! - [`slapd`]: prepares `ldap/` on the volume and describes slapd as a
//!   supervised child whose readiness is a SASL EXTERNAL whoami over ldapi.
//! - [`directory`]: admin operations over ldapi (users, groups, passwords).
//! - [`accounts`]: what the admin API and CLI call: users with their homes,
//!   CSV import, shared folders.
//!
//! The configuration is derived (regenerated on every start), the database
//! in `ldap/data` is state and survives restarts and moves.

pub mod accounts;
pub mod config;
pub mod directory;
pub mod slapd;

pub use accounts::{Accounts, AccountsError, HomeAction, NewUser, User};

/// Group every user belongs to (primary group).
pub const USERS_GID: u32 = 10000;
/// Group allowed to write shared folders.
pub const TEACHERS_GID: u32 = 10001;
/// First uidNumber handed out.
pub const FIRST_UID: u32 = 10000;
