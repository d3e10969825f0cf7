//! The slapd configuration (cn=config) as LDIF, generated from settings.
//!
//! Admin access is SASL EXTERNAL over ldapi for the uid bramble runs as (no
//! admin password exists anywhere). Anyone may read what nslcd/sssd need;
//! `userPassword` is readable by nobody, writable by its owner (password
//! change) and usable by anonymous only to authenticate. Passwords are hashed
//! by slapd with salted argon2.

use std::fmt::Write;
use std::path::Path;

/// Inputs of the generated configuration.
pub struct ConfigInput<'a> {
    pub ldap_dir: &'a Path,
    pub base_dn: &'a str,
    pub module_path: &'a Path,
    pub schema_dir: &'a Path,
    /// uid/gid bramble runs as: the admin identity over ldapi.
    pub admin_uid: u32,
    pub admin_gid: u32,
}

impl ConfigInput<'_> {
    pub fn admin_dn(&self) -> String {
        format!(
            "gidNumber={}+uidNumber={},cn=peercred,cn=external,cn=auth",
            self.admin_gid, self.admin_uid
        )
    }
}

/// The cn=config LDIF for `slapadd -n0`.
pub fn cn_config(input: &ConfigInput) -> String {
    let ldap = input.ldap_dir.display();
    let admin = input.admin_dn();
    let mut out = String::new();
    let _ = write!(
        out,
        "dn: cn=config\nobjectClass: olcGlobal\ncn: config\nolcPidFile: {ldap}/slapd.pid\n\
         olcLogLevel: none\n\n\
         dn: cn=module{{0}},cn=config\nobjectClass: olcModuleList\ncn: module{{0}}\n\
         olcModulePath: {}\nolcModuleLoad: back_mdb\nolcModuleLoad: argon2\n\n\
         dn: cn=schema,cn=config\nobjectClass: olcSchemaConfig\ncn: schema\n\n",
        input.module_path.display()
    );
    for schema in ["core", "cosine", "nis", "inetorgperson"] {
        let _ = writeln!(
            out,
            "include: file://{}/{schema}.ldif\n",
            input.schema_dir.display()
        );
    }
    let _ = write!(
        out,
        "dn: olcDatabase={{-1}}frontend,cn=config\nobjectClass: olcDatabaseConfig\n\
         objectClass: olcFrontendConfig\nolcDatabase: {{-1}}frontend\n\
         olcPasswordHash: {{ARGON2}}\nolcSizeLimit: 10000\n\n\
         dn: olcDatabase={{0}}config,cn=config\nobjectClass: olcDatabaseConfig\n\
         olcDatabase: {{0}}config\nolcAccess: {{0}}to * by dn.exact={admin} manage by * none\n\n\
         dn: olcDatabase={{1}}mdb,cn=config\nobjectClass: olcDatabaseConfig\n\
         objectClass: olcMdbConfig\nolcDatabase: {{1}}mdb\nolcDbDirectory: {ldap}/data\n\
         olcSuffix: {base}\nolcRootDN: {admin}\nolcLastBind: TRUE\n\
         olcDbIndex: objectClass eq\nolcDbIndex: uid,uidNumber,gidNumber,memberUid eq\n\
         olcDbMaxSize: 4294967296\n\
         olcAccess: {{0}}to attrs=userPassword by self =w by anonymous auth by * none\n\
         olcAccess: {{1}}to attrs=shadowLastChange by self write by * read\n\
         olcAccess: {{2}}to * by * read\n",
        base = input.base_dn
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_names_the_admin_base_and_password_acl() {
        let text = cn_config(&ConfigInput {
            ldap_dir: Path::new("/v/ldap"),
            base_dn: "dc=school,dc=example",
            module_path: Path::new("/usr/lib/ldap"),
            schema_dir: Path::new("/etc/ldap/schema"),
            admin_uid: 0,
            admin_gid: 0,
        });
        assert!(text.contains("olcSuffix: dc=school,dc=example\n"));
        assert!(
            text.contains("olcRootDN: gidNumber=0+uidNumber=0,cn=peercred,cn=external,cn=auth\n")
        );
        assert!(text.contains("to attrs=userPassword by self =w by anonymous auth by * none"));
        assert!(text.contains("olcPasswordHash: {ARGON2}"));
        assert!(text.contains("include: file:///etc/ldap/schema/nis.ldif\n"));
        // Every entry is separated by a blank line (LDIF).
        assert!(!text.contains("\n\n\n"));
    }
}
