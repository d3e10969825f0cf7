//! Admin operations on the directory over ldapi with SASL EXTERNAL.
//!
//! Entries: `uid=<name>,ou=people,<base>` (inetOrgPerson, posixAccount,
//! shadowAccount) and the groups `cn=users` / `cn=teachers` under
//! `ou=groups,<base>` (posixGroup with memberUid). Passwords are only ever
//! set through the RFC 3062 password-modify operation, so slapd hashes them.

use std::collections::HashSet;
use std::path::PathBuf;

use ldap3::exop::{PasswordModify, WhoAmI};
use ldap3::{LdapConnAsync, Mod, Scope, SearchEntry};

use crate::slapd::ldapi_url;
use crate::{TEACHERS_GID, USERS_GID};

pub type LdapError = ldap3::LdapError;

/// Attributes of an entry to add.
type Attrs<'a> = Vec<(&'a str, HashSet<&'a str>)>;

/// LDAP result code for "entry already exists".
const ALREADY_EXISTS: u32 = 68;
/// LDAP result code for "no such object".
pub const NO_SUCH_OBJECT: u32 = 32;

/// A user entry as read back from the directory.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Entry {
    pub name: String,
    pub uid_number: u32,
    pub gid_number: u32,
    pub full_name: String,
    pub home: String,
    /// `shadowLastChange: 0`: the password must be changed at next login.
    pub must_change_password: bool,
    /// Last successful bind (slapd's lastbind), as an LDAP generalized time.
    pub last_login: Option<String>,
}

#[derive(Clone)]
pub struct Directory {
    socket: PathBuf,
    base: String,
}

fn first(entry: &SearchEntry, attr: &str) -> Option<String> {
    entry.attrs.get(attr).and_then(|v| v.first()).cloned()
}

impl Directory {
    pub fn new(socket: PathBuf, base: String) -> Self {
        Self { socket, base }
    }

    pub fn people(&self) -> String {
        format!("ou=people,{}", self.base)
    }

    pub fn user_dn(&self, name: &str) -> String {
        format!("uid={name},{}", self.people())
    }

    fn group_dn(&self, group: &str) -> String {
        format!("cn={group},ou=groups,{}", self.base)
    }

    async fn connect(&self) -> Result<ldap3::Ldap, LdapError> {
        let (conn, mut ldap) = LdapConnAsync::new(&ldapi_url(&self.socket)).await?;
        ldap3::drive!(conn);
        ldap.sasl_external_bind().await?.success()?;
        Ok(ldap)
    }

    /// Who slapd says we are (the readiness check).
    pub async fn whoami(&self) -> Result<String, LdapError> {
        let mut ldap = self.connect().await?;
        let (exop, _) = ldap.extended(WhoAmI).await?.success()?;
        let _ = ldap.unbind().await;
        Ok(exop
            .val
            .map(|v| String::from_utf8_lossy(&v).into_owned())
            .unwrap_or_default())
    }

    /// Creates the base entry, `ou=people`, `ou=groups` and the two groups
    /// if missing (idempotent).
    pub async fn ensure_base(&self) -> Result<(), LdapError> {
        let mut ldap = self.connect().await?;
        let dc = self
            .base
            .split(',')
            .next()
            .and_then(|r| r.split_once('='))
            .map(|(_, v)| v.to_string())
            .unwrap_or_else(|| "bramble".into());
        let users_gid = USERS_GID.to_string();
        let teachers_gid = TEACHERS_GID.to_string();
        let people = self.people();
        let groups = format!("ou=groups,{}", self.base);
        let users = self.group_dn("users");
        let teachers = self.group_dn("teachers");
        let entries: Vec<(&str, Attrs)> = vec![
            (
                &self.base,
                vec![
                    ("objectClass", HashSet::from(["dcObject", "organization"])),
                    ("dc", HashSet::from([dc.as_str()])),
                    ("o", HashSet::from(["bramble"])),
                ],
            ),
            (
                &people,
                vec![
                    ("objectClass", HashSet::from(["organizationalUnit"])),
                    ("ou", HashSet::from(["people"])),
                ],
            ),
            (
                &groups,
                vec![
                    ("objectClass", HashSet::from(["organizationalUnit"])),
                    ("ou", HashSet::from(["groups"])),
                ],
            ),
            (
                &users,
                vec![
                    ("objectClass", HashSet::from(["posixGroup"])),
                    ("cn", HashSet::from(["users"])),
                    ("gidNumber", HashSet::from([users_gid.as_str()])),
                ],
            ),
            (
                &teachers,
                vec![
                    ("objectClass", HashSet::from(["posixGroup"])),
                    ("cn", HashSet::from(["teachers"])),
                    ("gidNumber", HashSet::from([teachers_gid.as_str()])),
                ],
            ),
        ];
        for (dn, attrs) in entries {
            let res = ldap.add(dn, attrs).await?;
            if res.rc != 0 && res.rc != ALREADY_EXISTS {
                res.success()?;
            }
        }
        let _ = ldap.unbind().await;
        Ok(())
    }

    /// Every user entry, sorted by name.
    pub async fn users(&self) -> Result<Vec<Entry>, LdapError> {
        let mut ldap = self.connect().await?;
        let (rs, _) = ldap
            .search(
                &self.people(),
                Scope::OneLevel,
                "(objectClass=posixAccount)",
                vec![
                    "uid",
                    "uidNumber",
                    "gidNumber",
                    "cn",
                    "homeDirectory",
                    "shadowLastChange",
                    "pwdLastSuccess",
                ],
            )
            .await?
            .success()?;
        let _ = ldap.unbind().await;
        let mut out: Vec<Entry> = rs
            .into_iter()
            .map(SearchEntry::construct)
            .filter_map(|e| {
                Some(Entry {
                    name: first(&e, "uid")?,
                    uid_number: first(&e, "uidNumber")?.parse().ok()?,
                    gid_number: first(&e, "gidNumber")?.parse().ok()?,
                    full_name: first(&e, "cn").unwrap_or_default(),
                    home: first(&e, "homeDirectory").unwrap_or_default(),
                    must_change_password: first(&e, "shadowLastChange").as_deref() == Some("0"),
                    last_login: first(&e, "pwdLastSuccess"),
                })
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Members (memberUid) of `teachers`.
    pub async fn teachers(&self) -> Result<HashSet<String>, LdapError> {
        let mut ldap = self.connect().await?;
        let (rs, _) = ldap
            .search(
                &self.group_dn("teachers"),
                Scope::Base,
                "(objectClass=posixGroup)",
                vec!["memberUid"],
            )
            .await?
            .success()?;
        let _ = ldap.unbind().await;
        Ok(rs
            .into_iter()
            .map(SearchEntry::construct)
            .flat_map(|e| e.attrs.get("memberUid").cloned().unwrap_or_default())
            .collect())
    }

    /// Adds a user entry (no password yet) and its group memberships.
    pub async fn add_user(
        &self,
        name: &str,
        uid: u32,
        full_name: &str,
        teacher: bool,
        must_change: bool,
    ) -> Result<(), LdapError> {
        let mut ldap = self.connect().await?;
        let uid_s = uid.to_string();
        let gid_s = USERS_GID.to_string();
        let home = format!("/home/{name}");
        let sn = full_name
            .rsplit(' ')
            .next()
            .filter(|s| !s.is_empty())
            .unwrap_or(name)
            .to_string();
        let last_change = if must_change {
            "0".to_string()
        } else {
            (bramble_core::unix_now() / 86_400).to_string()
        };
        let attrs: Vec<(&str, HashSet<&str>)> = vec![
            (
                "objectClass",
                HashSet::from(["inetOrgPerson", "posixAccount", "shadowAccount"]),
            ),
            ("uid", HashSet::from([name])),
            ("cn", HashSet::from([full_name])),
            ("sn", HashSet::from([sn.as_str()])),
            ("uidNumber", HashSet::from([uid_s.as_str()])),
            ("gidNumber", HashSet::from([gid_s.as_str()])),
            ("homeDirectory", HashSet::from([home.as_str()])),
            ("loginShell", HashSet::from(["/bin/bash"])),
            ("shadowLastChange", HashSet::from([last_change.as_str()])),
        ];
        ldap.add(&self.user_dn(name), attrs).await?.success()?;
        let mut groups = vec!["users"];
        if teacher {
            groups.push("teachers");
        }
        for g in groups {
            ldap.modify(
                &self.group_dn(g),
                vec![Mod::Add("memberUid", HashSet::from([name]))],
            )
            .await?
            .success()?;
        }
        let _ = ldap.unbind().await;
        Ok(())
    }

    /// Sets a password (slapd hashes it with argon2).
    pub async fn set_password(
        &self,
        name: &str,
        password: &str,
        must_change: bool,
    ) -> Result<(), LdapError> {
        let mut ldap = self.connect().await?;
        let dn = self.user_dn(name);
        ldap.extended(PasswordModify {
            user_id: Some(&dn),
            old_pass: None,
            new_pass: Some(password),
        })
        .await?
        .success()?;
        let last_change = if must_change {
            "0".to_string()
        } else {
            (bramble_core::unix_now() / 86_400).to_string()
        };
        ldap.modify(
            &dn,
            vec![Mod::Replace(
                "shadowLastChange",
                HashSet::from([last_change.as_str()]),
            )],
        )
        .await?
        .success()?;
        let _ = ldap.unbind().await;
        Ok(())
    }

    /// Deletes a user entry and its group memberships.
    pub async fn remove_user(&self, name: &str) -> Result<(), LdapError> {
        let mut ldap = self.connect().await?;
        for g in ["users", "teachers"] {
            let res = ldap
                .modify(
                    &self.group_dn(g),
                    vec![Mod::Delete("memberUid", HashSet::from([name]))],
                )
                .await?;
            // 16 = noSuchAttribute: was not a member.
            if res.rc != 0 && res.rc != 16 {
                res.success()?;
            }
        }
        ldap.delete(&self.user_dn(name)).await?.success()?;
        let _ = ldap.unbind().await;
        Ok(())
    }
}
