//! The `ops` target: an operation sequence — faults and small concurrent batches included —
//! decoded with `arbitrary` from the same [`Step`] vocabulary proptest generates, run by the
//! state machines' own [`Lab`] and [`Runner`](crate::harness::Runner): every step compared with
//! the model, zero sessions at quiescence, nothing half-applied.

use crate::harness::machine::{Lab, Target};
use crate::harness::op::{Auth, Op, Party, Pkce, RedirectAtToken, Ref, Step, Verifier};
use arbitrary::{Arbitrary, Result, Unstructured};
use std::fmt;
use std::time::Duration;

/// The longest sequence an input decodes to, the setup included.
pub const MAX_STEPS: usize = 64;

/// One input: a sequence of at most [`MAX_STEPS`] steps.
#[derive(Clone, PartialEq, Eq)]
pub struct OpsInput {
    /// The fixed setup (if the input asked for it) and then the decoded steps.
    pub steps: Vec<Step>,
    /// How many of `steps` are the setup: 0 or `setup().len()`.
    pub setup_len: usize,
}

/// proptest's setup, whole: two users, a public and a confidential client allowed everything,
/// and alice's first login. An input opts in with its first byte, so a mutation starts from a
/// deep state instead of spending its bytes reaching one.
pub fn setup() -> [Op; 6] {
    let client = |confidential| Op::RegisterClient {
        confidential,
        name: 0,
        redirects: 0,
        scope: 0,
    };
    [
        Op::CreateUser { login: 0 },
        Op::CreateUser { login: 1 },
        client(false),
        client(true),
        Op::Authorize {
            client: Ref::Nth(0),
            login: 0,
            redirect: 0,
            scope: None,
            pkce: Pkce::S256,
        },
        Op::ExchangeCode {
            client: Party::Owner,
            auth: Auth::Proper,
            code: Ref::Previous,
            redirect: RedirectAtToken::Same,
            verifier: Verifier::Proper,
        },
    ]
}

impl<'a> Arbitrary<'a> for OpsInput {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        let mut steps: Vec<Step> = Vec::new();
        if bool::arbitrary(u)? {
            steps.extend(setup().map(Step::Op));
        }
        let setup_len = steps.len();
        while steps.len() < MAX_STEPS && !u.is_empty() {
            steps.push(Step::arbitrary(u)?);
        }
        Ok(Self { steps, setup_len })
    }

    fn arbitrary_take_rest(mut u: Unstructured<'a>) -> Result<Self> {
        Self::arbitrary(&mut u)
    }
}

/// One step a line, as the transcript prints them (`cargo fuzz fmt ops <file>` shows this).
impl fmt::Debug for OpsInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, step) in self.steps.iter().enumerate() {
            writeln!(f, "{:>3}. {step}", i + 1)?;
        }
        Ok(())
    }
}

impl OpsInput {
    /// The steps fuzzer bytes decode to (none if they decode to nothing).
    pub fn decode(data: &[u8]) -> Self {
        Self::arbitrary_take_rest(Unstructured::new(data)).unwrap_or(Self {
            steps: Vec::new(),
            setup_len: 0,
        })
    }
}

/// How long a step may take to return its sessions: `LEAKPROOF_SETTLE_MS`, as for the state
/// machines (default 500 ms). Only a step that leaves one of our guards open waits it out.
pub fn settle_from_env() -> Duration {
    let ms = std::env::var("LEAKPROOF_SETTLE_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    Duration::from_millis(ms)
}

/// The lab an `ops` campaign runs in: one runtime and one scratch SQLite file per process,
/// emptied between inputs (`scratch::reset`: a few deletes instead of a new file), or put back
/// to the setup's snapshot (`scratch::restore`) for an input that starts with the setup.
pub fn ops_lab() -> std::result::Result<Lab, String> {
    Lab::new(Target::TempSqlite, settle_from_env()).map_err(|e| e.to_string())
}

/// Decodes and runs one input on the lab; `Err` is the transcript and the violation.
pub fn run_ops_input(lab: &Lab, data: &[u8]) -> std::result::Result<(), String> {
    let input = OpsInput::decode(data);
    if input.steps.is_empty() {
        return Ok(());
    }
    // The setup runs once per scratch database; later inputs start from its snapshot.
    let (setup, steps) = input.steps.split_at(input.setup_len);
    lab.case_after(setup, steps)
        .map_err(|failure| failure.to_string())
}
