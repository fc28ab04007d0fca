//! The registry, as rules.

use super::{Crate, Ix, Model, Release, User};
use crate::domain::{Checksum, CrateName, Endpoint, Login, Rejection, Version};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishKind {
    NewCrate,
    NewVersion,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionSummary {
    pub num: String,
    pub checksum: String,
    pub yanked: bool,
    pub downloads: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrateSummary {
    pub name: String,
    pub downloads: i64,
    /// Logins, ordered case-insensitively.
    pub owners: Vec<String>,
}

impl Model {
    /// Logins are unique without regard to case.
    pub fn create_user(&mut self, login: &str) -> Result<Ix, Rejection> {
        let login = Login::parse(login)?;
        if self.user_by_login(&login.key).is_some() {
            return Err(Rejection::UserExists);
        }
        self.users.push(User { login });
        Ok(self.users.len() - 1)
    }

    /// Publishing: a new crate needs `publish-new` and makes the publisher its owner; a new
    /// version needs `publish-update` and ownership. Versions are unique per crate, build
    /// metadata aside.
    pub fn publish(
        &mut self,
        token: Option<Ix>,
        name: &str,
        version: &str,
        checksum: &str,
    ) -> Result<PublishKind, Rejection> {
        let name = CrateName::parse(name)?;
        let version = Version::parse(version)?;
        let checksum = Checksum::parse(checksum)?;
        let (user, scope) = self.bearer(token)?;
        let release = Release {
            num: version.display,
            key: version.key,
            checksum: checksum.0,
            yanked: false,
            downloads: 0,
        };
        match self.crate_by_key(&name.key) {
            None => {
                if !scope.allows(Endpoint::PublishNew, &name.key) {
                    return Err(Rejection::InsufficientScope);
                }
                self.crates.push(Crate {
                    name: name.display,
                    key: name.key,
                    owners: vec![user],
                    versions: vec![release],
                    downloads: 0,
                });
                Ok(PublishKind::NewCrate)
            }
            Some(c) => {
                if !scope.allows(Endpoint::PublishUpdate, &name.key) {
                    return Err(Rejection::InsufficientScope);
                }
                let krate = &mut self.crates[c];
                if !krate.owners.contains(&user) {
                    return Err(Rejection::NotOwner);
                }
                if krate.versions.iter().any(|v| v.key == release.key) {
                    return Err(Rejection::VersionExists);
                }
                krate.versions.push(release);
                Ok(PublishKind::NewVersion)
            }
        }
    }

    /// Yanking and unyanking: `yank` scope, ownership; idempotent.
    pub fn set_yanked(
        &mut self,
        token: Option<Ix>,
        name: &str,
        version: &str,
        yanked: bool,
    ) -> Result<(), Rejection> {
        let name = CrateName::parse(name)?;
        let version = Version::parse(version)?;
        let c = self.owned_crate(token, Endpoint::Yank, &name.key)?;
        let krate = &mut self.crates[c];
        let release = krate
            .versions
            .iter_mut()
            .find(|v| v.key == version.key)
            .ok_or(Rejection::UnknownVersion)?;
        release.yanked = yanked;
        Ok(())
    }

    /// Adding an owner: `change-owners` scope, ownership, a known user not yet an owner.
    pub fn add_owner(
        &mut self,
        token: Option<Ix>,
        name: &str,
        login: &str,
    ) -> Result<(), Rejection> {
        let (c, target) = self.owner_change(token, name, login)?;
        let owners = &mut self.crates[c].owners;
        if owners.contains(&target) {
            return Err(Rejection::AlreadyOwner);
        }
        owners.push(target);
        Ok(())
    }

    /// Removing an owner: as adding, and a crate never has zero owners.
    pub fn remove_owner(
        &mut self,
        token: Option<Ix>,
        name: &str,
        login: &str,
    ) -> Result<(), Rejection> {
        let (c, target) = self.owner_change(token, name, login)?;
        let owners = &mut self.crates[c].owners;
        let Some(at) = owners.iter().position(|&o| o == target) else {
            return Err(Rejection::NotAnOwner);
        };
        if owners.len() <= 1 {
            return Err(Rejection::LastOwner);
        }
        owners.remove(at);
        Ok(())
    }

    fn owner_change(
        &self,
        token: Option<Ix>,
        name: &str,
        login: &str,
    ) -> Result<(usize, Ix), Rejection> {
        let name = CrateName::parse(name)?;
        let login = Login::parse(login)?;
        let c = self.owned_crate(token, Endpoint::ChangeOwners, &name.key)?;
        let target = self
            .user_by_login(&login.key)
            .ok_or(Rejection::UnknownUser)?;
        Ok((c, target))
    }

    /// A download counts for the version and for the crate; yanked versions stay downloadable.
    pub fn download(&mut self, name: &str, version: &str) -> Result<String, Rejection> {
        let name = CrateName::parse(name)?;
        let version = Version::parse(version)?;
        let c = self
            .crate_by_key(&name.key)
            .ok_or(Rejection::UnknownCrate)?;
        let krate = &mut self.crates[c];
        let release = krate
            .versions
            .iter_mut()
            .find(|v| v.key == version.key)
            .ok_or(Rejection::UnknownVersion)?;
        release.downloads += 1;
        krate.downloads += 1;
        Ok(release.checksum.clone())
    }

    /// A crate's versions in publication order.
    pub fn versions(&self, name: &str) -> Result<Vec<VersionSummary>, Rejection> {
        let name = CrateName::parse(name)?;
        let c = self
            .crate_by_key(&name.key)
            .ok_or(Rejection::UnknownCrate)?;
        Ok(self.crates[c]
            .versions
            .iter()
            .map(|v| VersionSummary {
                num: v.num.clone(),
                checksum: v.checksum.clone(),
                yanked: v.yanked,
                downloads: v.downloads,
            })
            .collect())
    }

    pub fn crate_info(&self, name: &str) -> Result<CrateSummary, Rejection> {
        let name = CrateName::parse(name)?;
        let c = self
            .crate_by_key(&name.key)
            .ok_or(Rejection::UnknownCrate)?;
        let krate = &self.crates[c];
        let mut owners: Vec<&Login> = krate.owners.iter().map(|&u| &self.users[u].login).collect();
        owners.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(CrateSummary {
            name: krate.name.clone(),
            downloads: krate.downloads,
            owners: owners.into_iter().map(|l| l.display.clone()).collect(),
        })
    }

    /// Every crate's name key, for reading the whole state back.
    pub fn crate_keys(&self) -> Vec<String> {
        self.crates.iter().map(|c| c.key.clone()).collect()
    }

    /// An owner's write to an existing crate: a valid token acting for a user, with the
    /// endpoint's scope for this crate; the crate exists; the user owns it. In that order.
    fn owned_crate(
        &self,
        token: Option<Ix>,
        endpoint: Endpoint,
        key: &str,
    ) -> Result<usize, Rejection> {
        let (user, scope) = self.bearer(token)?;
        if !scope.allows(endpoint, key) {
            return Err(Rejection::InsufficientScope);
        }
        let c = self.crate_by_key(key).ok_or(Rejection::UnknownCrate)?;
        if !self.crates[c].owners.contains(&user) {
            return Err(Rejection::NotOwner);
        }
        Ok(c)
    }

    fn crate_by_key(&self, key: &str) -> Option<usize> {
        self.crates.iter().position(|c| c.key == key)
    }
}
