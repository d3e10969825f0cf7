//! Admin subcommands: talk to the running server's `/api/v1` with the admin
//! token from `secrets/admin-token` (or `BRAMBLE_TOKEN`).

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::cli::{ClientCommand, ClientFields, FolderCommand, Remote, UserCommand};

struct Api {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Api {
    fn new(remote: &Remote) -> anyhow::Result<Self> {
        let data = &remote.data.data;
        let token = match std::env::var("BRAMBLE_TOKEN") {
            Ok(t) => t,
            Err(_) => std::fs::read_to_string(data.join("secrets/admin-token"))
                .with_context(|| {
                    format!(
                        "cannot read the admin token from {} (set BRAMBLE_TOKEN or --data)",
                        data.join("secrets/admin-token").display()
                    )
                })?
                .trim()
                .to_string(),
        };
        let base = match &remote.url {
            Some(u) => u.trim_end_matches('/').to_string(),
            None => {
                let settings = bramble_core::settings::load(data, &[])?;
                let mut addr = settings.http.listen;
                if addr.ip().is_unspecified() {
                    addr.set_ip([127, 0, 0, 1].into());
                }
                format!("http://{addr}")
            }
        };
        Ok(Self {
            base,
            token,
            http: reqwest::Client::new(),
        })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let body = body.map(|b| ("application/json", b.to_string()));
        self.call_raw(method, path, body).await
    }

    async fn call_raw(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<(&str, String)>,
    ) -> anyhow::Result<Value> {
        let url = format!("{}/api/v1{path}", self.base);
        let mut req = self.http.request(method, &url).bearer_auth(&self.token);
        if let Some((kind, b)) = body {
            req = req.header("content-type", kind).body(b);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("cannot reach bramble at {} (is it running?)", self.base))?;
        let status = resp.status();
        let value: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let msg = value["error"].as_str().unwrap_or("no details");
            bail!("{status}: {msg}");
        }
        Ok(value)
    }
}

fn client_body(mac: &str, fields: &ClientFields, base: Option<Value>) -> anyhow::Result<Value> {
    let mut body = base.unwrap_or_else(|| json!({ "mac": mac }));
    let obj = body.as_object_mut().context("bad client record")?;
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            obj.insert(k.into(), v);
        }
    };
    put("os", fields.os.clone().map(Value::from));
    put("serial", fields.serial.clone().map(Value::from));
    put("name", fields.name.clone().map(Value::from));
    put("kernel_args", fields.kernel_args.clone().map(Value::from));
    put(
        "fixed_ip",
        fields.fixed_ip.map(|ip| Value::from(ip.to_string())),
    );
    Ok(body)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

pub fn client(cmd: ClientCommand) -> anyhow::Result<()> {
    runtime()?.block_on(client_async(cmd))
}

async fn client_async(cmd: ClientCommand) -> anyhow::Result<()> {
    use reqwest::Method;
    match cmd {
        ClientCommand::Add {
            mac,
            fields,
            remote,
        } => {
            if fields.os.is_none() {
                bail!("--os NAME is required: the OS tree under os/ this client boots");
            }
            let api = Api::new(&remote)?;
            let c = api
                .call(
                    Method::POST,
                    "/clients",
                    Some(client_body(&mac, &fields, None)?),
                )
                .await?;
            println!(
                "registered {} (os {})",
                c["mac"].as_str().unwrap_or(&mac),
                c["os"].as_str().unwrap_or("?")
            );
        }
        ClientCommand::Set {
            mac,
            fields,
            remote,
        } => {
            let api = Api::new(&remote)?;
            let current = api
                .call(Method::GET, &format!("/clients/{mac}"), None)
                .await?;
            let body = client_body(&mac, &fields, Some(current))?;
            let c = api
                .call(Method::PUT, &format!("/clients/{mac}"), Some(body))
                .await?;
            println!(
                "updated {} (os {})",
                c["mac"].as_str().unwrap_or(&mac),
                c["os"].as_str().unwrap_or("?")
            );
        }
        ClientCommand::List { remote } => {
            let list = Api::new(&remote)?
                .call(Method::GET, "/clients", None)
                .await?;
            println!(
                "{:<17}  {:<8}  {:<16}  {:<15}  NAME",
                "MAC", "SERIAL", "OS", "FIXED IP"
            );
            for c in list.as_array().into_iter().flatten() {
                println!(
                    "{:<17}  {:<8}  {:<16}  {:<15}  {}",
                    c["mac"].as_str().unwrap_or(""),
                    c["serial"].as_str().unwrap_or("-"),
                    c["os"].as_str().unwrap_or(""),
                    c["fixed_ip"].as_str().unwrap_or("-"),
                    c["name"].as_str().unwrap_or("")
                );
            }
        }
        ClientCommand::Remove { mac, remote } => {
            Api::new(&remote)?
                .call(Method::DELETE, &format!("/clients/{mac}"), None)
                .await?;
            println!("removed {mac}");
        }
        ClientCommand::Discovered { remote } => {
            let list = Api::new(&remote)?
                .call(Method::GET, "/clients/discovered", None)
                .await?;
            println!(
                "{:<17}  {:<10}  {:<8}  {:<5}  {:<15}  {:>8}  LAST SEEN",
                "MAC", "MODEL", "SERIAL", "ARCH", "IP", "REQUESTS"
            );
            for d in list.as_array().into_iter().flatten() {
                println!(
                    "{:<17}  {:<10}  {:<8}  {:<5}  {:<15}  {:>8}  {}",
                    d["mac"].as_str().unwrap_or(""),
                    d["pi_model"].as_str().unwrap_or("-"),
                    d["serial"].as_str().unwrap_or("-"),
                    d["arch"]
                        .as_u64()
                        .map(|a| a.to_string())
                        .unwrap_or("-".into()),
                    d["ip"].as_str().unwrap_or("-"),
                    d["requests"].as_u64().unwrap_or(0),
                    d["last_seen"].as_u64().unwrap_or(0)
                );
            }
        }
    }
    Ok(())
}

fn read_password() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .context("cannot read the password from standard input")?;
    let password = line.trim_end_matches(['\n', '\r']).to_string();
    if password.is_empty() {
        bail!("no password on standard input (echo PASSWORD | bramble user ...)");
    }
    Ok(password)
}

pub fn user(cmd: UserCommand) -> anyhow::Result<()> {
    runtime()?.block_on(user_async(cmd))
}

async fn user_async(cmd: UserCommand) -> anyhow::Result<()> {
    use reqwest::Method;
    match cmd {
        UserCommand::Add {
            name,
            password_stdin,
            full_name,
            teacher,
            must_change_password,
            remote,
        } => {
            let api = Api::new(&remote)?;
            let password = if password_stdin {
                Some(read_password()?)
            } else {
                None
            };
            let body = json!({"name": name, "password": password, "full_name": full_name, "teacher": teacher, "must_change_password": must_change_password});
            let u = api.call(Method::POST, "/users", Some(body)).await?;
            println!(
                "added {} (uid {}, home homes/{})",
                u["name"].as_str().unwrap_or(&name),
                u["uid"],
                name
            );
            if password.is_none() {
                println!("no password set yet: bramble user passwd {name} --password-stdin");
            }
        }
        UserCommand::List { remote } => {
            let list = Api::new(&remote)?.call(Method::GET, "/users", None).await?;
            println!(
                "{:<20}  {:>6}  {:<7}  {:<11}  {:<16}  FULL NAME",
                "USER", "UID", "TEACHER", "MUST CHANGE", "LAST LOGIN"
            );
            for u in list.as_array().into_iter().flatten() {
                println!(
                    "{:<20}  {:>6}  {:<7}  {:<11}  {:<16}  {}",
                    u["name"].as_str().unwrap_or(""),
                    u["uid"],
                    if u["teacher"].as_bool() == Some(true) {
                        "yes"
                    } else {
                        "no"
                    },
                    if u["must_change_password"].as_bool() == Some(true) {
                        "yes"
                    } else {
                        "no"
                    },
                    u["last_login"].as_str().unwrap_or("never"),
                    u["full_name"].as_str().unwrap_or("")
                );
            }
        }
        UserCommand::Passwd {
            name,
            password_stdin: _,
            must_change_password,
            remote,
        } => {
            let api = Api::new(&remote)?;
            let body =
                json!({"password": read_password()?, "must_change_password": must_change_password});
            api.call(Method::PUT, &format!("/users/{name}/password"), Some(body))
                .await?;
            println!("password of {name} changed");
        }
        UserCommand::Remove {
            name,
            archive_home,
            delete_home: _,
            remote,
        } => {
            let home = if archive_home { "archive" } else { "delete" };
            let r = Api::new(&remote)?
                .call(Method::DELETE, &format!("/users/{name}?home={home}"), None)
                .await?;
            match r["archived_home"].as_str() {
                Some(p) => println!("removed {name}; home archived at {p}"),
                None => println!("removed {name}; home deleted"),
            }
        }
        UserCommand::Import {
            file,
            no_must_change,
            remote,
        } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let api = Api::new(&remote)?;
            let r = api
                .call_raw(
                    Method::POST,
                    &format!("/users/import?must_change={}", !no_must_change),
                    Some(("text/csv", text)),
                )
                .await?;
            let imported = r["imported"].as_array().map(Vec::len).unwrap_or(0);
            let errors: Vec<&str> = r["errors"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            println!("imported {imported} user(s)");
            for e in &errors {
                eprintln!("{}: {e}", file.display());
            }
            if !errors.is_empty() {
                bail!("{} line(s) not imported", errors.len());
            }
        }
    }
    Ok(())
}

pub fn folder(cmd: FolderCommand) -> anyhow::Result<()> {
    runtime()?.block_on(folder_async(cmd))
}

async fn folder_async(cmd: FolderCommand) -> anyhow::Result<()> {
    use reqwest::Method;
    match cmd {
        FolderCommand::Add { name, remote } => {
            Api::new(&remote)?
                .call(Method::POST, "/folders", Some(json!({"name": name})))
                .await?;
            println!(
                "shared folder {name} created (shared/{name}: everyone reads, teachers write)"
            );
        }
        FolderCommand::List { remote } => {
            let list = Api::new(&remote)?
                .call(Method::GET, "/folders", None)
                .await?;
            for f in list.as_array().into_iter().flatten() {
                println!(
                    "{:<24}  {} entries",
                    f["name"].as_str().unwrap_or(""),
                    f["entries"]
                );
            }
        }
        FolderCommand::Remove {
            name,
            force,
            remote,
        } => {
            Api::new(&remote)?
                .call(
                    Method::DELETE,
                    &format!("/folders/{name}?force={force}"),
                    None,
                )
                .await?;
            println!("removed shared folder {name}");
        }
    }
    Ok(())
}
