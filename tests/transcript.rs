//! The transcript format, pinned: it is what a failing run prints, so it must stay readable.
//! A fixed sequence through most op kinds, run on SQLite; outcomes carry no random parts.

use leakproof::db::Db;
use leakproof::db::scratch::Scratch;
use leakproof::harness::Runner;
use leakproof::harness::op::{
    Auth, GrantType, Op, Party, Pkce, RedirectAtToken, Ref, Step, TokenRef, Verifier,
};

fn story() -> Vec<Op> {
    let exchange = |verifier| Op::ExchangeCode {
        client: Party::Owner,
        auth: Auth::Proper,
        code: Ref::Nth(0),
        redirect: RedirectAtToken::Same,
        verifier,
    };
    vec![
        Op::CreateUser { login: 0 },
        Op::CreateUser { login: 2 },
        Op::CreateUser { login: 1 },
        Op::RegisterClient {
            confidential: false,
            name: 0,
            redirects: 0,
            scope: 0,
        },
        Op::Authorize {
            client: Ref::Nth(0),
            login: 0,
            redirect: 1,
            scope: None,
            pkce: Pkce::S256,
        },
        exchange(Verifier::Wrong),
        exchange(Verifier::Proper),
        exchange(Verifier::Proper),
        Op::Authorize {
            client: Ref::Nth(0),
            login: 0,
            redirect: 0,
            scope: None,
            pkce: Pkce::Plain,
        },
        Op::Authorize {
            client: Ref::Nth(0),
            login: 0,
            redirect: 0,
            scope: None,
            pkce: Pkce::S256,
        },
        exchange(Verifier::Proper),
        Op::Publish {
            token: TokenRef::Access(0),
            name: 0,
            version: 0,
            bad_checksum: false,
        },
        Op::Publish {
            token: TokenRef::Access(0),
            name: 0,
            version: 1,
            bad_checksum: false,
        },
        Op::Publish {
            token: TokenRef::Access(0),
            name: 0,
            version: 2,
            bad_checksum: false,
        },
        Op::AddOwner {
            token: TokenRef::Access(0),
            name: 0,
            login: 1,
        },
        Op::RemoveOwner {
            token: TokenRef::Access(0),
            name: 0,
            login: 0,
        },
        Op::SetYanked {
            token: TokenRef::Access(0),
            name: 0,
            version: 0,
            yanked: true,
        },
        Op::Download {
            name: 0,
            version: 0,
        },
        Op::Versions { name: 0 },
        Op::CrateInfo { name: 0 },
        Op::Refresh {
            client: Party::Owner,
            auth: Auth::Proper,
            token: TokenRef::Refresh(0),
            scope: Some(3),
        },
        Op::Refresh {
            client: Party::Owner,
            auth: Auth::Proper,
            token: TokenRef::Refresh(1),
            scope: None,
        },
        Op::Introspect {
            client: Party::Owner,
            auth: Auth::Proper,
            token: TokenRef::Access(0),
        },
        Op::RegisterClient {
            confidential: true,
            name: 0,
            redirects: 1,
            scope: 1,
        },
        Op::ClientCredentials {
            client: Ref::Nth(0),
            auth: Auth::Proper,
            scope: None,
        },
        Op::Introspect {
            client: Party::Owner,
            auth: Auth::Proper,
            token: TokenRef::Access(0),
        },
        Op::Revoke {
            client: Party::Owner,
            auth: Auth::Proper,
            token: TokenRef::Access(0),
        },
        Op::Introspect {
            client: Party::Owner,
            auth: Auth::Proper,
            token: TokenRef::Access(0),
        },
        Op::TokenEndpoint {
            client: Ref::Nth(0),
            grant: GrantType::Unsupported,
        },
        Op::Advance { secs: 3_600 },
        Op::Publish {
            token: TokenRef::Access(2),
            name: 3,
            version: 0,
            bad_checksum: false,
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transcript_format_is_stable() {
    let scratch = Scratch::sqlite().unwrap();
    let db = Db::connect(&scratch.url).await.unwrap();
    let mut runner = Runner::new(db);
    let steps: Vec<Step> = story().into_iter().map(Step::Op).collect();
    runner.run(&steps).await.expect("model and system agree");
    let transcript = runner.transcript().join("\n");
    runner.close().await.expect("zero sessions at close");
    insta::with_settings!({ snapshot_path => "../snapshots", prepend_module_to_snapshot => false }, {
        insta::assert_snapshot!("transcript", transcript);
    });
}
