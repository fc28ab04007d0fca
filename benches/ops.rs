//! Throughput of real operations against concurrency, on both backends, beside the wire floor.
//!
//! - `introspect`: one indexed read (OAuth `introspect`: one statement, two indexed lookups).
//!   Beside it, interleaved at each client count: the same statement on the raw sqlx pool
//!   (`raw_pool_stmt`: no ledger, no hashing, no decoding), on dedicated connections outside any
//!   pool (`wire_stmt`), and `SELECT 1` on dedicated connections (`wire_select1`, the wire
//!   floor). The steps between them say where the time goes. The dedicated-connection floors run
//!   only up to the pool's size: past it a pool queues and one connection per client does not.
//! - `exchange`: an authorization code exchanged for tokens, a write (the codes are made before
//!   the timer starts).
//! - `publish`: a new version, a multi-statement write, going round 128 crates (the same at
//!   every client count).
//! - `mixed`: 80% introspect, 10% exchange, 10% publish.
//!
//! `scripts/pgbench.sh` runs `pgbench -M prepared` (`-S`, introspect's statement, `SELECT 1`)
//! at the same client counts before and after this benchmark. With `LEAKPROOF_PGBENCH_URL` set
//! (scripts/bench.sh sets it), PostgreSQL's introspect is also compared with pgbench in
//! interleaved rounds at 8 clients (`against_pgbench`): the comparison the target is read from.
//! After every benchmark the session invariant is asserted; the database ends closed to zero.

mod common;

use common::{Cli, Fixture, concurrency_sweep, median, spread, spread_shared};
use criterion::{BenchmarkGroup, BenchmarkId, Criterion, Throughput, measurement::WallTime};
use leakproof::clock::ManualClock;
use leakproof::db::{Backend, Db, PoolConfig, sql};
use leakproof::domain::{Checksum, pkce, secret};
use leakproof::oauth::{AuthorizeRequest, ClientAuth, ClientRegistration, OAuth};
use leakproof::registry::{PublishRequest, Registry};
use sqlx::{AnyConnection, AnyPool, Connection};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::runtime::Runtime;

const CLIENTS: [usize; 5] = [1, 2, 8, 32, 128];
/// Distinct access tokens the introspection clients cycle through.
const TOKENS: usize = 64;
/// Crates the publishes go round, whatever the client count: every count writes the same
/// pages, so the sweep compares concurrency alone. With a crate per client, one client wrote
/// to the same few pages over and over and ran fastest for that alone (CONTRIBUTING.md,
/// "SQLite's writes and the pages they touch").
const CRATES: u64 = CLIENTS[CLIENTS.len() - 1] as u64;
/// Tasks that make codes before an exchange run (untimed).
const CODE_MAKERS: usize = 8;
const REDIRECT: &str = "https://app.example/callback";
const LOGIN: &str = "bench";
const SCOPE: &str = "publish-new publish-update";

/// The statement `OAuth::introspect` runs, for the floors below it.
const INTROSPECT_SQL: &str = leakproof::oauth::INTROSPECT_SQL;

fn main() {
    let cli = Cli::parse();
    let runtime = common::runtime();
    let mut criterion = common::criterion();
    for backend in common::backends() {
        bench_backend(&mut criterion, &runtime, &cli, backend);
    }
    criterion.final_summary();
}

/// The prepared state every operation needs: a user, two clients, tokens, codes, crates.
struct World {
    oauth: OAuth,
    registry: Registry,
    /// A resource server: confidential, the owner of the introspected tokens.
    resource_server: ClientAuth,
    /// A public app with PKCE: its codes are exchanged.
    app: ClientAuth,
    verifier: String,
    /// Access tokens of `resource_server`, all active (the clock never moves).
    tokens: Vec<String>,
    /// An access token of `LOGIN` allowed to publish.
    publisher: String,
    /// Codes made ahead of the timed runs, each exchanged once.
    codes: Mutex<Vec<String>>,
    /// Every publish is a version never published before.
    next_version: AtomicU64,
    db: Db,
}

impl World {
    async fn new(fixture: &Fixture) -> World {
        let clock = Arc::new(ManualClock::new());
        let oauth = OAuth::new(fixture.db.clone(), clock.clone());
        let registry = Registry::new(fixture.db.clone(), clock);
        registry.create_user(LOGIN).await.expect("create user");
        let register = async |confidential| {
            let registered = oauth
                .register_client(&ClientRegistration {
                    name: "bench".into(),
                    confidential,
                    redirect_uris: vec![REDIRECT.into()],
                    scope: SCOPE.into(),
                })
                .await
                .expect("register client");
            ClientAuth {
                client_id: registered.client_id,
                client_secret: registered.client_secret.map(|s| s.expose().to_owned()),
            }
        };
        let resource_server = register(true).await;
        let app = register(false).await;
        let mut world = World {
            oauth,
            registry,
            resource_server,
            app,
            verifier: format!("{:0>64}", "bench-verifier"),
            tokens: Vec::with_capacity(TOKENS),
            publisher: String::new(),
            codes: Mutex::new(Vec::new()),
            next_version: AtomicU64::new(1),
            db: fixture.db.clone(),
        };
        for _ in 0..TOKENS {
            let token = world.access_token(&world.resource_server).await;
            world.tokens.push(token);
        }
        world.publisher = world.access_token(&world.app).await;
        world
    }

    /// SQLite: folds the write-ahead log into the database before a timed slice. A checkpoint
    /// runs every ~1000 pages written, about every other slice of writes: slices with one and
    /// slices without made two clusters of rates, and the median over rounds picked either. Its
    /// cost per page is the same at every concurrency, so leaving it out of every slice
    /// compares like with like.
    async fn checkpoint(&self) {
        if self.db.backend() == Backend::Sqlite {
            let mut session = self.db.session("bench.checkpoint").await.expect("checkout");
            session
                .fetch_one(sql("PRAGMA wal_checkpoint(RESTART)"))
                .await
                .expect("checkpoint");
        }
    }

    fn authorize_request(&self, client: &ClientAuth) -> AuthorizeRequest {
        AuthorizeRequest {
            client_id: client.client_id.clone(),
            redirect_uri: REDIRECT.into(),
            scope: Some(SCOPE.into()),
            code_challenge: Some(pkce::s256(&self.verifier)),
            code_challenge_method: Some("S256".into()),
            login: LOGIN.into(),
        }
    }

    async fn access_token(&self, client: &ClientAuth) -> String {
        let code = self
            .oauth
            .authorize(&self.authorize_request(client))
            .await
            .expect("authorize");
        let tokens = self
            .oauth
            .exchange_code(client, code.code.expose(), REDIRECT, Some(&self.verifier))
            .await
            .expect("exchange code");
        tokens.access_token.expose().to_owned()
    }

    /// Tops the stock of unexchanged codes up to `needed`, untimed.
    async fn stock_codes(self: &Arc<Self>, needed: u64) {
        let have = self.codes.lock().expect("codes").len() as u64;
        let missing = needed.saturating_sub(have);
        if missing == 0 {
            return;
        }
        spread_shared(missing, CODE_MAKERS, self, |world, _, _| async move {
            let code = world
                .oauth
                .authorize(&world.authorize_request(&world.app))
                .await
                .expect("authorize");
            let code = code.code.expose().to_owned();
            world.codes.lock().expect("codes").push(code);
            world
        })
        .await;
    }

    async fn introspect(&self, t: usize, i: u64) {
        let token = &self.tokens[(t + i as usize) % TOKENS];
        let answer = self
            .oauth
            .introspect(&self.resource_server, token)
            .await
            .expect("introspect");
        assert!(answer.active, "a benchmark token must stay active");
    }

    async fn exchange(&self) {
        let code = self
            .codes
            .lock()
            .expect("codes")
            .pop()
            .expect("a code made for every exchange");
        self.oauth
            .exchange_code(&self.app, &code, REDIRECT, Some(&self.verifier))
            .await
            .expect("exchange code");
    }

    async fn publish(&self) {
        let n = self.next_version.fetch_add(1, Ordering::Relaxed);
        let name = format!("bench-c{}", n % CRATES);
        let version = format!("{n}.0.0");
        let request = PublishRequest {
            checksum: Checksum::of(version.as_bytes()).0,
            name,
            version,
        };
        self.registry
            .publish(&self.publisher, &request)
            .await
            .expect("publish");
    }
}

/// What the dedicated-connection and raw-pool floors bind: the resource server's id and the
/// tokens' hashes, computed once (the floors time the database, not sha256).
struct Binds {
    client_id: String,
    hashes: Vec<String>,
}

impl Binds {
    fn hash(&self, t: usize, i: u64) -> &str {
        &self.hashes[(t + i as usize) % self.hashes.len()]
    }
}

async fn introspect_stmt(conn: &mut AnyConnection, binds: &Binds, t: usize, i: u64) {
    let row = sqlx::query(INTROSPECT_SQL)
        .bind(binds.client_id.as_str())
        .bind(binds.hash(t, i))
        .fetch_optional(conn)
        .await
        .expect("the introspection statement");
    assert!(row.is_some(), "the resource server must be found");
}

/// A timed run of one operation: the time its operations took.
type Timed = Pin<Box<dyn Future<Output = Duration>>>;

/// `ops` code exchanges over `clients` tasks; the codes are made before the timer starts.
async fn exchange_op(world: &Arc<World>, ops: u64, clients: usize) -> Duration {
    world.stock_codes(ops).await;
    spread_shared(ops, clients, world, |w, _, _| async move {
        w.exchange().await;
        w
    })
    .await
}

/// `ops` publishes over `clients` tasks, going round `CRATES` crates.
async fn publish_op(world: &Arc<World>, ops: u64, clients: usize) -> Duration {
    spread_shared(ops, clients, world, |w, _, _| async move {
        w.publish().await;
        w
    })
    .await
}

/// `ops` operations of the mixed load (80% introspect, 10% exchange, 10% publish) over
/// `clients` tasks; the codes it exchanges are made before the timer starts.
async fn mixed_op(world: &Arc<World>, ops: u64, clients: usize) -> Duration {
    // At most one exchange in ten per task, rounded up per task.
    world.stock_codes(ops / 10 + clients as u64).await;
    spread_shared(ops, clients, world, |w, t, i| async move {
        match (t as u64 + i) % 10 {
            8 => w.exchange().await,
            9 => w.publish().await,
            _ => w.introspect(t, i).await,
        }
        w
    })
    .await
}

/// `ops` introspections through `OAuth::introspect` over `clients` tasks.
async fn introspect_op(world: &Arc<World>, ops: u64, clients: usize) -> Duration {
    spread_shared(ops, clients, world, |w, t, i| async move {
        w.introspect(t, i).await;
        w
    })
    .await
}

/// The introspection statement on the raw sqlx pool: acquire, statement, release.
async fn introspect_raw_pool(state: &(AnyPool, Arc<Binds>), ops: u64, clients: usize) -> Duration {
    spread_shared(ops, clients, state, |state, t, i| async move {
        let (pool, binds): &(AnyPool, Arc<Binds>) = &state;
        let mut conn = pool.acquire().await.expect("acquire");
        introspect_stmt(&mut conn, binds, t, i).await;
        drop(conn);
        state
    })
    .await
}

/// The introspection statement on dedicated connections, one task each; hands them back.
async fn introspect_wire(
    conns: Vec<AnyConnection>,
    binds: &Arc<Binds>,
    ops: u64,
) -> (Duration, Vec<AnyConnection>) {
    let states = conns.into_iter().map(|c| (c, Arc::clone(binds))).collect();
    let (elapsed, states) = spread(ops, states, |state, t, i| async move {
        let (mut conn, binds) = state;
        introspect_stmt(&mut conn, &binds, t, i).await;
        (conn, binds)
    })
    .await;
    (elapsed, states.into_iter().map(|(c, _)| c).collect())
}

/// Where pgbench's database is (prepared by scripts/pgbench.sh); unset: no interleaved rounds.
const PGBENCH_URL_VAR: &str = "LEAKPROOF_PGBENCH_URL";
/// Client counts compared with pgbench round by round: the target's.
const PGBENCH_CLIENTS: [usize; 1] = [8];
const PGBENCH_ROUNDS: usize = 7;
/// Each of our sides per round, and each pgbench run (`-T` takes whole seconds).
const OUR_SLICE: Duration = Duration::from_millis(500);
const PGBENCH_SECONDS: &str = "1";
/// The introspection statement as a pgbench script (scripts/pgbench.sh makes its schema): the
/// token's hash drawn from the 64 there, the client `bench`.
fn pgbench_introspect() -> String {
    let statement = INTROSPECT_SQL.replace("$1", "'bench'").replace("$2", ":k");
    format!("\\set k random(1, 64)\n{statement};\n")
}

/// Introspect against pgbench, interleaved: criterion's point and a pgbench run minutes apart
/// on a shared machine differ by more than the ratio asked for. Each round runs our operation,
/// its statement on the raw pool and on dedicated connections (each ~0.5 s), then `pgbench -S`
/// and pgbench with the same statement (1 s each), all at the same client count; the medians
/// over the rounds are printed as a `pgbench\t{json}` line for scripts/bench.sh.
fn against_pgbench(runtime: &Runtime, fixture: &Fixture, world: &Arc<World>, binds: &Arc<Binds>) {
    let Some(url) = std::env::var(PGBENCH_URL_VAR)
        .ok()
        .filter(|u| !u.is_empty())
    else {
        eprintln!(
            "skipped the interleaved pgbench rounds: scripts/bench.sh sets {PGBENCH_URL_VAR}"
        );
        return;
    };
    let mut script = tempfile::NamedTempFile::new().expect("a pgbench script file");
    std::io::Write::write_all(&mut script, pgbench_introspect().as_bytes()).expect("write it");
    let pool_state = (fixture.db.raw_pool().clone(), Arc::clone(binds));
    for clients in PGBENCH_CLIENTS {
        let mut conns = runtime.block_on(connect(fixture, clients));
        let per_op = common::per_op(runtime, clients, |ops| introspect_op(world, ops, clients));
        let ops = common::slice::slice_ops(OUR_SLICE, per_op, clients, 1);
        let rate = |d: Duration| ops as f64 / d.as_secs_f64();
        let mut rounds: Vec<[f64; 5]> = Vec::with_capacity(PGBENCH_ROUNDS);
        for round in 0..PGBENCH_ROUNDS {
            // Our three sides in alternating order, so none always follows pgbench.
            let (mut ours, mut pool, mut wire) = (0.0, 0.0, 0.0);
            let order = if round % 2 == 0 { [0, 1, 2] } else { [2, 1, 0] };
            for side in order {
                match side {
                    0 => ours = rate(runtime.block_on(introspect_op(world, ops, clients))),
                    1 => {
                        let took = introspect_raw_pool(&pool_state, ops, clients);
                        pool = rate(runtime.block_on(took));
                    }
                    _ => {
                        let (took, back) = runtime.block_on(introspect_wire(conns, binds, ops));
                        conns = back;
                        wire = rate(took);
                    }
                }
            }
            let select_only = pgbench(&url, clients, &["-S"], None);
            let statement = pgbench(
                &url,
                clients,
                &["-f", &script.path().display().to_string()],
                Some("-c search_path=introspect"),
            );
            rounds.push([ours, pool, wire, select_only, statement]);
        }
        runtime.block_on(async {
            for conn in conns {
                conn.close().await.expect("close a dedicated connection");
            }
        });
        runtime.block_on(fixture.check(&format!("ops/postgres/pgbench/{clients}")));
        let column = |f: &dyn Fn(&[f64; 5]) -> f64| {
            let mut values: Vec<f64> = rounds.iter().map(f).collect();
            median(&mut values)
        };
        let line = serde_json::json!({
            "clients": clients,
            "rounds": PGBENCH_ROUNDS,
            "op": column(&|r| r[0]),
            "raw_pool_stmt": column(&|r| r[1]),
            "wire_stmt": column(&|r| r[2]),
            "pgbench_select_only": column(&|r| r[3]),
            "pgbench_stmt": column(&|r| r[4]),
            "op_over_select_only": column(&|r| r[0] / r[3]),
            "op_over_stmt": column(&|r| r[0] / r[4]),
            "op_over_raw_pool": column(&|r| r[0] / r[1]),
            "raw_pool_over_wire": column(&|r| r[1] / r[2]),
            "raw_pool_over_select_only": column(&|r| r[1] / r[3]),
            "wire_over_select_only": column(&|r| r[2] / r[3]),
            "wire_over_stmt": column(&|r| r[2] / r[4]),
        });
        println!("pgbench\t{line}");
    }
}

/// One `pgbench -M prepared` run at `clients`: its tps (excluding connection time).
fn pgbench(url: &str, clients: usize, workload: &[&str], options: Option<&str>) -> f64 {
    let threads = clients.min(std::thread::available_parallelism().map_or(2, |n| n.get()));
    let mut command = std::process::Command::new("pgbench");
    command
        .args(["-n", "-M", "prepared", "-T", PGBENCH_SECONDS])
        .args(["-c", &clients.to_string(), "-j", &threads.to_string()])
        .args(workload)
        .arg(url);
    if let Some(options) = options {
        command.env("PGOPTIONS", options);
    }
    let output = command.output().expect("run pgbench (is it installed?)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "pgbench failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("tps = "))
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .next_back()
        .unwrap_or_else(|| panic!("no tps line from pgbench: {stdout}"))
}

/// `clients` connections outside the pool.
async fn connect(fixture: &Fixture, clients: usize) -> Vec<AnyConnection> {
    let mut conns = Vec::with_capacity(clients);
    for _ in 0..clients {
        conns.push(
            AnyConnection::connect(fixture.url())
                .await
                .expect("a dedicated connection"),
        );
    }
    conns
}

fn bench_backend(criterion: &mut Criterion, runtime: &Runtime, cli: &Cli, backend: Backend) {
    let config = PoolConfig::for_backend(backend);
    let pool_size = config.max_connections as usize;
    let fixture = runtime.block_on(Fixture::open(backend, config));
    let world = Arc::new(runtime.block_on(World::new(&fixture)));
    let binds = Arc::new(Binds {
        client_id: world.resource_server.client_id.clone(),
        hashes: world.tokens.iter().map(|t| secret::hash(t)).collect(),
    });
    let prefix = format!("ops/{}", common::name(backend));
    runtime.block_on(fixture.check(&format!("{prefix}/setup")));

    let mut group = Group::new(criterion, format!("{prefix}/introspect"), runtime, &fixture);
    for clients in CLIENTS {
        let w = Arc::clone(&world);
        group.bench("op", clients, move |iters| {
            let w = Arc::clone(&w);
            async move { introspect_op(&w, iters, clients).await }
        });
        let state = (fixture.db.raw_pool().clone(), Arc::clone(&binds));
        group.bench("raw_pool_stmt", clients, move |iters| {
            let state = state.clone();
            async move { introspect_raw_pool(&state, iters, clients).await }
        });
        if clients <= pool_size {
            wire(&mut group, clients, &binds);
        }
    }
    group.finish();
    if backend == Backend::Postgres && !cli.test && !cli.list {
        against_pgbench(runtime, &fixture, &world, &binds);
    }

    let mut group = Group::new(criterion, format!("{prefix}/exchange"), runtime, &fixture);
    for clients in CLIENTS {
        let w = Arc::clone(&world);
        group.bench("op", clients, move |iters| {
            let w = Arc::clone(&w);
            async move { exchange_op(&w, iters, clients).await }
        });
    }
    group.finish();

    let mut group = Group::new(criterion, format!("{prefix}/publish"), runtime, &fixture);
    for clients in CLIENTS {
        let w = Arc::clone(&world);
        group.bench("op", clients, move |iters| {
            let w = Arc::clone(&w);
            async move { publish_op(&w, iters, clients).await }
        });
    }
    group.finish();

    let mut group = Group::new(criterion, format!("{prefix}/mixed"), runtime, &fixture);
    for clients in CLIENTS {
        let w = Arc::clone(&world);
        group.bench("op", clients, move |iters| {
            let w = Arc::clone(&w);
            async move { mixed_op(&w, iters, clients).await }
        });
    }
    group.finish();

    if !cli.list {
        let sweep = |op: &str, run: &dyn Fn(Arc<World>, u64, usize) -> Timed| {
            let group = format!("{prefix}/{op}");
            if cli.selects(&format!("{group}/op")) {
                concurrency_sweep(
                    runtime,
                    backend,
                    &CLIENTS,
                    &group,
                    common::Plan::short(cli.test),
                    common::server::ServerCpu::of(&fixture.db),
                    |ops, clients| {
                        let world = Arc::clone(&world);
                        runtime.block_on(world.checkpoint());
                        run(world, ops, clients)
                    },
                );
                runtime.block_on(fixture.check(&format!("{group}/sweep")));
            }
        };
        sweep("introspect", &|w, ops, c| {
            Box::pin(async move { introspect_op(&w, ops, c).await })
        });
        sweep("exchange", &|w, ops, c| {
            Box::pin(async move { exchange_op(&w, ops, c).await })
        });
        sweep("publish", &|w, ops, c| {
            Box::pin(async move { publish_op(&w, ops, c).await })
        });
        sweep("mixed", &|w, ops, c| {
            Box::pin(async move { mixed_op(&w, ops, c).await })
        });
    }

    drop(world);
    runtime.block_on(fixture.finish(&prefix));
}

/// A benchmark group on one fixture: every point it runs is followed by the session invariant.
struct Group<'a> {
    group: BenchmarkGroup<'a, WallTime>,
    name: String,
    runtime: &'a Runtime,
    fixture: &'a Fixture,
}

impl<'a> Group<'a> {
    fn new(
        criterion: &'a mut Criterion,
        name: String,
        runtime: &'a Runtime,
        fixture: &'a Fixture,
    ) -> Self {
        let mut group = criterion.benchmark_group(&name);
        group.throughput(Throughput::Elements(1));
        Group {
            group,
            name,
            runtime,
            fixture,
        }
    }

    /// One point: `routine(iters)` returns the time `iters` operations took.
    fn bench<F, Fut>(&mut self, function: &str, clients: usize, mut routine: F)
    where
        F: FnMut(u64) -> Fut,
        Fut: Future<Output = Duration>,
    {
        let runtime = self.runtime;
        self.group
            .bench_function(BenchmarkId::new(function, clients), |b| {
                b.to_async(runtime).iter_custom(&mut routine);
            });
        let after = format!("{}/{function}/{clients}", self.name);
        runtime.block_on(self.fixture.check(&after));
    }

    fn finish(self) {
        self.group.finish();
    }
}

/// The floors on `clients` dedicated connections outside the pool: the introspection statement,
/// then `SELECT 1`. The connections are opened before and closed after, untimed.
fn wire(group: &mut Group<'_>, clients: usize, binds: &Arc<Binds>) {
    let (runtime, fixture) = (group.runtime, group.fixture);
    let conns = Arc::new(Mutex::new(runtime.block_on(connect(fixture, clients))));
    let take = |conns: &Mutex<Vec<AnyConnection>>| {
        std::mem::take(&mut *conns.lock().expect("wire connections"))
    };
    {
        let conns = Arc::clone(&conns);
        let binds = Arc::clone(binds);
        group.bench("wire_stmt", clients, move |iters| {
            let conns = Arc::clone(&conns);
            let binds = Arc::clone(&binds);
            async move {
                let (elapsed, states) = introspect_wire(take(&conns), &binds, iters).await;
                *conns.lock().expect("wire connections") = states;
                elapsed
            }
        });
    }
    {
        let conns = Arc::clone(&conns);
        group.bench("wire_select1", clients, move |iters| {
            let conns = Arc::clone(&conns);
            async move {
                let (elapsed, states) = spread(iters, take(&conns), |mut conn, _, _| async move {
                    sqlx::query("SELECT 1")
                        .fetch_one(&mut conn)
                        .await
                        .expect("SELECT 1");
                    conn
                })
                .await;
                *conns.lock().expect("wire connections") = states;
                elapsed
            }
        });
    }
    runtime.block_on(async {
        for conn in take(&conns) {
            conn.close().await.expect("close a dedicated connection");
        }
    });
}
