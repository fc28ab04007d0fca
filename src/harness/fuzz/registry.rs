//! The `registry_input` target: crate names, versions, checksums and owner logins from fuzzer
//! bytes. Each is checked against its grammar (`spec.rs`) with its uniqueness key and round
//! trip; then the calls run on the model and the system against the cast (`world.rs`), the
//! answers compared exactly, the state read back, zero sessions required.
//!
//! The registry parses no dependency requirements (a publish carries a name, a version and a
//! checksum), so there is nothing of that kind to fuzz.

use super::spec;
use super::text::{text, truncate};
use super::world::{Cast, Checked, Pick, World};
use crate::domain::{Checksum, CrateName, Login, Rejection, Version};
use crate::harness::call::Call;
use crate::registry::PublishRequest;
use arbitrary::{Arbitrary, Result, Unstructured};

/// Calls per input, as for `oauth_input`.
pub const MAX_CALLS: usize = 4;

const CRATES: &[&str] = &[
    "serde",
    "Serde_Json",
    "serde-json",
    "SERDE",
    "serde_",
    "tokio",
    "a",
    "1nvalid",
    "-serde",
    "sérde",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "",
];
const VERSIONS: &[&str] = &[
    "1.0.0",
    "1.1.0",
    "1.0.0+build.5",
    "1.0.1",
    "2.0.0-alpha.1",
    "1.0.0-0a.b-c+01",
    "0.0.0",
    "1.0.0-01",
    "01.0.0",
    "1.0",
    "v1.0.0",
    "1.0.0-",
    "18446744073709551615.0.0",
    "18446744073709551616.0.0",
    "",
];
const CHECKSUMS: &[&str] = &[
    "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    "not-a-checksum",
    "",
];
const LOGINS: &[&str] = &[
    "alice",
    "bob",
    "Alice",
    "carol",
    "a-b",
    "-bad-",
    "a--b",
    "a_b",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "",
];
const TOKENS: &[&str] = &["lpa_never-issued", ""];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryCall {
    CreateUser {
        login: String,
    },
    Publish {
        token: Pick,
        name: String,
        version: String,
        checksum: String,
    },
    SetYanked {
        token: Pick,
        name: String,
        version: String,
        yanked: bool,
    },
    AddOwner {
        token: Pick,
        name: String,
        login: String,
    },
    RemoveOwner {
        token: Pick,
        name: String,
        login: String,
    },
    Download {
        name: String,
        version: String,
    },
    Versions {
        name: String,
    },
    CrateInfo {
        name: String,
    },
}

/// One input: up to [`MAX_CALLS`] calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryInput {
    pub calls: Vec<RegistryCall>,
}

fn token(u: &mut Unstructured<'_>) -> Result<Pick> {
    Ok(if u.ratio(7u8, 8)? {
        Pick::Cast(u8::arbitrary(u)?)
    } else {
        Pick::Raw(text(u, TOKENS)?)
    })
}

impl<'a> Arbitrary<'a> for RegistryCall {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(match u.int_in_range(0u8..=7)? {
            0 => RegistryCall::CreateUser {
                login: text(u, LOGINS)?,
            },
            1 => RegistryCall::Publish {
                token: token(u)?,
                name: text(u, CRATES)?,
                version: text(u, VERSIONS)?,
                checksum: text(u, CHECKSUMS)?,
            },
            2 => RegistryCall::SetYanked {
                token: token(u)?,
                name: text(u, CRATES)?,
                version: text(u, VERSIONS)?,
                yanked: bool::arbitrary(u)?,
            },
            3 => RegistryCall::AddOwner {
                token: token(u)?,
                name: text(u, CRATES)?,
                login: text(u, LOGINS)?,
            },
            4 => RegistryCall::RemoveOwner {
                token: token(u)?,
                name: text(u, CRATES)?,
                login: text(u, LOGINS)?,
            },
            5 => RegistryCall::Download {
                name: text(u, CRATES)?,
                version: text(u, VERSIONS)?,
            },
            6 => RegistryCall::Versions {
                name: text(u, CRATES)?,
            },
            _ => RegistryCall::CrateInfo {
                name: text(u, CRATES)?,
            },
        })
    }
}

impl<'a> Arbitrary<'a> for RegistryInput {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        let mut calls = Vec::new();
        while calls.len() < MAX_CALLS && !u.is_empty() {
            calls.push(RegistryCall::arbitrary(u)?);
        }
        Ok(Self { calls })
    }

    fn arbitrary_take_rest(mut u: Unstructured<'a>) -> Result<Self> {
        Self::arbitrary(&mut u)
    }
}

/// Decodes and runs one input: the rules first, then the calls on both sides.
pub fn run_registry_input(world: &World, data: &[u8]) -> std::result::Result<(), String> {
    let Ok(input) = RegistryInput::arbitrary_take_rest(Unstructured::new(data)) else {
        return Ok(());
    };
    for call in &input.calls {
        let (name, version, checksum, login) = match call {
            RegistryCall::CreateUser { login } => (None, None, None, Some(login)),
            RegistryCall::Publish {
                name,
                version,
                checksum,
                ..
            } => (Some(name), Some(version), Some(checksum), None),
            RegistryCall::SetYanked { name, version, .. }
            | RegistryCall::Download { name, version } => (Some(name), Some(version), None, None),
            RegistryCall::AddOwner { name, login, .. }
            | RegistryCall::RemoveOwner { name, login, .. } => {
                (Some(name), None, None, Some(login))
            }
            RegistryCall::Versions { name } | RegistryCall::CrateInfo { name } => {
                (Some(name), None, None, None)
            }
        };
        name.map_or(Ok(()), |n| check_crate_name(n))?;
        version.map_or(Ok(()), |v| check_version(v))?;
        checksum.map_or(Ok(()), |c| check_checksum(c))?;
        login.map_or(Ok(()), |l| check_login(l))?;
    }
    world.run(|cast| input.calls.iter().map(|c| checked(cast, c)).collect())
}

fn short(s: &str) -> String {
    let cut = truncate(s, 80);
    if cut.len() < s.len() {
        format!("{cut:?}…({} bytes)", s.len())
    } else {
        format!("{s:?}")
    }
}

/// Crate names: the parser agrees with cargo's rule, and two valid names share a key exactly
/// when they are the same crate up to case and `-`/`_`.
pub fn check_crate_name(raw: &str) -> std::result::Result<(), String> {
    let parsed = CrateName::parse(raw);
    let fail = |why: String| Err(format!("crate name {}: {why}", short(raw)));
    match (&parsed, spec::crate_name(raw)) {
        (Ok(name), true) => {
            if name.display != raw {
                return fail(format!("displayed as {:?}", name.display));
            }
            if CrateName::parse(&name.key).map(|k| k.key).as_ref() != Ok(&name.key) {
                return fail(format!("its key {:?} is not its own key", name.key));
            }
            for other in CRATES.iter().filter(|o| spec::crate_name(o)) {
                let same = CrateName::parse(other).is_ok_and(|o| o.key == name.key);
                if same != spec::same_crate(raw, other) {
                    return fail(format!("same crate as {other:?}: parser {same}"));
                }
            }
            Ok(())
        }
        (Err(Rejection::InvalidCrateName), false) => Ok(()),
        _ => fail(format!("parser {parsed:?}")),
    }
}

/// Versions: the parser agrees with semver.org's grammar; a valid version prints as it was
/// written, and its key is the release without build metadata.
pub fn check_version(raw: &str) -> std::result::Result<(), String> {
    let parsed = Version::parse(raw);
    let fail = |why: String| Err(format!("version {}: {why}", short(raw)));
    match (&parsed, spec::version(raw)) {
        (Ok(v), true) => {
            if v.display != raw {
                return fail(format!("displayed as {:?}", v.display));
            }
            if v.key != spec::release(raw) {
                return fail(format!("keyed as {:?}", v.key));
            }
            if Version::parse(&v.key).map(|k| k.key).as_ref() != Ok(&v.key) {
                return fail(format!("its key {:?} is not its own key", v.key));
            }
            Ok(())
        }
        (Err(Rejection::InvalidVersion), false) => Ok(()),
        _ => fail(format!("parser {parsed:?}")),
    }
}

pub fn check_checksum(raw: &str) -> std::result::Result<(), String> {
    let parsed = Checksum::parse(raw);
    let of = Checksum::of(raw.as_bytes());
    if Checksum::parse(&of.0).as_ref() != Ok(&of) {
        return Err(format!("the checksum of {} is refused", short(raw)));
    }
    match (&parsed, spec::checksum(raw)) {
        (Ok(c), true) if c.0 == raw => Ok(()),
        (Err(Rejection::InvalidChecksum), false) => Ok(()),
        _ => Err(format!("checksum {}: parser {parsed:?}", short(raw))),
    }
}

pub fn check_login(raw: &str) -> std::result::Result<(), String> {
    let parsed = Login::parse(raw);
    match (&parsed, spec::login(raw)) {
        (Ok(login), true) if login.key == raw.to_ascii_lowercase() && login.display == raw => {
            Ok(())
        }
        (Err(Rejection::InvalidLogin), false) => Ok(()),
        _ => Err(format!("login {}: parser {parsed:?}", short(raw))),
    }
}

fn checked(cast: &Cast, call: &RegistryCall) -> Checked {
    let shown = truncate(&format!("{call:?}"), 300).to_owned();
    let call = match call {
        RegistryCall::CreateUser { login } => Call::CreateUser(login.clone()),
        RegistryCall::Publish {
            token,
            name,
            version,
            checksum,
        } => Call::Publish {
            token: cast.bearer(token),
            request: PublishRequest {
                name: name.clone(),
                version: version.clone(),
                checksum: checksum.clone(),
            },
        },
        RegistryCall::SetYanked {
            token,
            name,
            version,
            yanked,
        } => Call::SetYanked {
            token: cast.bearer(token),
            name: name.clone(),
            version: version.clone(),
            yanked: *yanked,
        },
        RegistryCall::AddOwner { token, name, login } => Call::AddOwner {
            token: cast.bearer(token),
            name: name.clone(),
            login: login.clone(),
        },
        RegistryCall::RemoveOwner { token, name, login } => Call::RemoveOwner {
            token: cast.bearer(token),
            name: name.clone(),
            login: login.clone(),
        },
        RegistryCall::Download { name, version } => Call::Download {
            name: name.clone(),
            version: version.clone(),
        },
        RegistryCall::Versions { name } => Call::Versions(name.clone()),
        RegistryCall::CrateInfo { name } => Call::CrateInfo(name.clone()),
    };
    Checked::call(shown, call)
}
