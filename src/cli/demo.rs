use super::{DEFAULT_DATABASE_URL, Failure};
use leakproof::clock::SystemClock;
use leakproof::db::{Db, DbError, SETTLE_DEADLINE};
use leakproof::domain::{Checksum, Rejection, pkce};
use leakproof::oauth::{AuthorizeRequest, ClientAuth, ClientRegistration, OAuth};
use leakproof::registry::{PublishRequest, Registry};
use std::sync::Arc;

#[derive(clap::Args)]
pub struct DemoArgs {
    /// `sqlite://path/to/file.db` (created if missing) or `postgres://user@host/db`.
    #[arg(long, default_value = DEFAULT_DATABASE_URL)]
    database_url: String,
}

pub async fn run(args: DemoArgs) -> Result<(), Failure> {
    let db = Db::connect(&args.database_url).await.map_err(|e| {
        Failure::Usage(format!(
            "cannot open {}: {e}",
            leakproof::db::redact(&args.database_url)
        ))
    })?;
    println!(
        "database: {} ({:?})",
        leakproof::db::redact(&args.database_url),
        db.backend()
    );
    let result = steps(&db).await;
    let closed = db.close(SETTLE_DEADLINE).await;
    result?;
    let views = closed.map_err(|e| Failure::Check(e.to_string()))?;
    println!("closed: {views}");
    println!("every session opened was closed again");
    Ok(())
}

async fn steps(db: &Db) -> Result<(), Failure> {
    let clock = Arc::new(SystemClock);
    let registry = Registry::new(db.clone(), clock.clone());
    let oauth = OAuth::new(db.clone(), clock);
    // A fresh login per run, so the demo can run again on the same database.
    let login = format!("demo-{:08x}", rand::random::<u32>());
    let crate_name = format!("demo_{:08x}", rand::random::<u32>());

    ok(db, "create user", registry.create_user(&login).await).await?;
    let client = oauth
        .register_client(&ClientRegistration {
            name: "leakproof demo".into(),
            confidential: false,
            redirect_uris: vec!["http://127.0.0.1/callback".into()],
            scope: "publish-new publish-update yank change-owners".into(),
        })
        .await;
    let client = ok(db, "register public client", client).await?;
    let auth = ClientAuth {
        client_id: client.client_id.clone(),
        client_secret: None,
    };
    let verifier = "demo-verifier-".repeat(4);
    let code = oauth
        .authorize(&AuthorizeRequest {
            client_id: client.client_id.clone(),
            redirect_uri: "http://127.0.0.1:43117/callback".into(),
            scope: None,
            code_challenge: Some(pkce::s256(&verifier)),
            code_challenge_method: Some("S256".into()),
            login: login.clone(),
        })
        .await;
    let code = ok(db, "authorize (PKCE S256, loopback port)", code).await?;
    let redirect = "http://127.0.0.1:43117/callback";
    let tokens = oauth
        .exchange_code(&auth, code.code.expose(), redirect, Some(&verifier))
        .await;
    let tokens = ok(db, "exchange code", tokens).await?;
    let replay = oauth
        .exchange_code(&auth, code.code.expose(), redirect, Some(&verifier))
        .await;
    refused(db, "replay the code", Rejection::CodeReused, replay).await?;
    let token = tokens.access_token.expose().to_owned();
    let publish = PublishRequest {
        name: crate_name.clone(),
        version: "1.0.0".into(),
        checksum: Checksum::of(b"demo").0,
    };
    refused(
        db,
        "publish with the revoked token",
        Rejection::TokenInvalid,
        registry.publish(&token, &publish).await,
    )
    .await?;

    let code = oauth
        .authorize(&AuthorizeRequest {
            client_id: client.client_id.clone(),
            redirect_uri: redirect.into(),
            scope: None,
            code_challenge: Some(pkce::s256(&verifier)),
            code_challenge_method: Some("S256".into()),
            login: login.clone(),
        })
        .await;
    let code = ok(db, "authorize again", code).await?;
    let tokens = oauth
        .exchange_code(&auth, code.code.expose(), redirect, Some(&verifier))
        .await;
    let tokens = ok(db, "exchange the new code", tokens).await?;
    let token = tokens.access_token.expose().to_owned();
    ok(
        db,
        "publish 1.0.0",
        registry.publish(&token, &publish).await,
    )
    .await?;
    refused(
        db,
        "publish 1.0.0 again",
        Rejection::VersionExists,
        registry.publish(&token, &publish).await,
    )
    .await?;
    ok(
        db,
        "yank 1.0.0",
        registry
            .set_yanked(&token, &crate_name, "1.0.0", true)
            .await,
    )
    .await?;
    ok(
        db,
        "download the yanked 1.0.0",
        registry.download(&crate_name, "1.0.0").await,
    )
    .await?;
    refused(
        db,
        "remove the last owner",
        Rejection::LastOwner,
        registry.remove_owner(&token, &crate_name, &login).await,
    )
    .await?;
    ok(db, "read versions", registry.versions(&crate_name).await).await?;
    Ok(())
}

/// Requires success; prints it with the three views once the pool is quiet.
async fn ok<T>(db: &Db, what: &str, outcome: leakproof::Result<T>) -> Result<T, Failure> {
    match outcome {
        Ok(value) => {
            show(db, what, "ok").await?;
            Ok(value)
        }
        Err(e) => Err(Failure::Check(format!("{what}: expected success, got {e}"))),
    }
}

/// Requires exactly this rejection; prints it with the three views once the pool is quiet.
async fn refused<T>(
    db: &Db,
    what: &str,
    expected: Rejection,
    outcome: leakproof::Result<T>,
) -> Result<(), Failure> {
    match outcome {
        Err(leakproof::Error::Rejected(r)) if r == expected => {
            show(db, what, &format!("refused: {}", r.code())).await
        }
        Err(e) => Err(Failure::Check(format!(
            "{what}: expected {expected:?}, got {e}"
        ))),
        Ok(_) => Err(Failure::Check(format!(
            "{what}: expected {expected:?}, got success"
        ))),
    }
}

async fn show(db: &Db, what: &str, outcome: &str) -> Result<(), Failure> {
    let views = db
        .quiesce(SETTLE_DEADLINE)
        .await
        .map_err(|e: DbError| Failure::Check(format!("after {what}: {e}")))?;
    println!("{what:<40} {outcome:<34} {views}");
    Ok(())
}
