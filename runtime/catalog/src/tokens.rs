//! API tokens: the admin token and tokens scoped to databases.
//!
//! A token is `apiv3_` followed by 64 hex digits of randomness, shown once when it is
//! created. The catalog keeps only its SHA-256: a copy of the catalog file does not let
//! anyone in. The randomness is what makes a fast hash enough here; no password is ever
//! a token.

use crate::Error;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The name of the admin token.
pub const ADMIN_TOKEN_NAME: &str = "_admin";

const TOKEN_PREFIX: &str = "apiv3_";

/// What a scoped token may do in the databases it names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// Database names; `*` stands for every database.
    pub databases: Vec<String>,
    /// May query them.
    pub read: bool,
    /// May write to them.
    pub write: bool,
    /// May manage their processing engine: create, update, enable, disable, delete and
    /// test triggers, and read their system tables.
    #[serde(default)]
    pub manage: bool,
    /// May call their request triggers (as `read` does too), without reading them.
    #[serde(default)]
    pub invoke: bool,
    /// May read the server's metrics (`/metrics`): a `system:metrics:read` permission,
    /// which names no database.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub metrics: bool,
}

impl Grant {
    fn covers(&self, database: &str) -> bool {
        self.databases
            .iter()
            .any(|name| name == "*" || name == database)
    }

    /// The actions it allows, by name.
    pub fn actions(&self) -> Vec<&'static str> {
        [
            (self.read, "read"),
            (self.write, "write"),
            (self.manage, "manage"),
            (self.invoke, "invoke"),
        ]
        .into_iter()
        .filter(|(on, _)| *on)
        .map(|(_, action)| action)
        .collect()
    }

    /// The permission to read the server's metrics, and nothing else.
    pub fn metrics() -> Self {
        Self {
            databases: Vec::new(),
            read: false,
            write: false,
            manage: false,
            invoke: false,
            metrics: true,
        }
    }

    /// As the command line writes it: `db:NAMES:ACTIONS`, or `system:metrics:read`.
    pub fn describe(&self) -> String {
        if self.metrics {
            return "system:metrics:read".into();
        }
        format!(
            "db:{}:{}",
            self.databases.join(","),
            self.actions().join(",")
        )
    }
}

/// What a request may do, decided by its token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    /// Everything: the admin token, or a server started without authentication.
    Admin,
    /// Only what the grants allow; never administration.
    Scoped(Vec<Grant>),
}

impl Access {
    /// Whether queries of `database` are allowed.
    pub fn can_read(&self, database: &str) -> bool {
        match self {
            Self::Admin => true,
            Self::Scoped(grants) => grants.iter().any(|g| g.read && g.covers(database)),
        }
    }

    /// Whether writes to `database` are allowed.
    pub fn can_write(&self, database: &str) -> bool {
        match self {
            Self::Admin => true,
            Self::Scoped(grants) => grants.iter().any(|g| g.write && g.covers(database)),
        }
    }

    /// Whether the request triggers of `database` may be called.
    pub fn can_invoke(&self, database: &str) -> bool {
        match self {
            Self::Admin => true,
            Self::Scoped(grants) => grants
                .iter()
                .any(|g| (g.read || g.invoke) && g.covers(database)),
        }
    }

    /// Whether the processing engine of `database` may be managed (its triggers).
    pub fn can_manage(&self, database: &str) -> bool {
        match self {
            Self::Admin => true,
            Self::Scoped(grants) => grants.iter().any(|g| g.manage && g.covers(database)),
        }
    }

    /// Whether the server's metrics may be read.
    pub fn can_read_metrics(&self) -> bool {
        match self {
            Self::Admin => true,
            Self::Scoped(grants) => grants.iter().any(|g| g.metrics),
        }
    }

    /// Whether administration (databases, tables, tokens, plugins) is allowed.
    pub fn is_admin(&self) -> bool {
        matches!(self, Self::Admin)
    }
}

/// A token as the catalog keeps it: never the token itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Unique, never reused.
    pub id: u64,
    /// Unique name; the admin token is [`ADMIN_TOKEN_NAME`].
    pub name: String,
    /// SHA-256 of the token, in hex.
    pub hash: String,
    /// Milliseconds since the Unix epoch.
    pub created_at_ms: i64,
    /// After this instant (milliseconds since the epoch) the token is refused.
    pub expiry_ms: Option<i64>,
    /// What the token allows.
    pub access: Access,
}

/// A token just created: the only moment its text is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewToken {
    /// The token to send as `Authorization: Bearer <token>`.
    pub token: String,
    /// What the catalog keeps.
    pub record: TokenRecord,
}

/// The tokens of a server.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tokens {
    records: Vec<TokenRecord>,
    next_id: u64,
}

fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn generate() -> Result<String, Error> {
    let mut secret = [0_u8; 32];
    getrandom::fill(&mut secret)
        .map_err(|e| Error::Io(format!("no randomness for a token: {e}")))?;
    Ok(format!("{TOKEN_PREFIX}{}", hex::encode(secret)))
}

impl Tokens {
    /// Every token, in creation order.
    pub fn records(&self) -> &[TokenRecord] {
        &self.records
    }

    /// The access `token` gives at `now_ms`, or `None` when it is unknown or expired.
    pub fn authenticate(&self, token: &str, now_ms: i64) -> Option<Access> {
        let hash = hash(token);
        // Every record is compared, each in constant time: how long this takes tells
        // nothing of how much of a stored hash the guess matched, nor which record.
        let record = self.records.iter().fold(None, |found, r| {
            let matches: bool = r.hash.as_bytes().ct_eq(hash.as_bytes()).into();
            if matches { Some(r) } else { found }
        })?;
        match record.expiry_ms {
            Some(expiry) if expiry <= now_ms => None,
            _ => Some(record.access.clone()),
        }
    }

    /// Creates the admin token.
    ///
    /// # Errors
    ///
    /// [`Error::TokenExists`] when there is one already (regenerate it instead).
    pub fn create_admin(&mut self, now_ms: i64) -> Result<NewToken, Error> {
        self.insert(ADMIN_TOKEN_NAME, Access::Admin, now_ms, None)
    }

    /// Replaces the admin token by a new one; the old one stops working.
    ///
    /// # Errors
    ///
    /// [`Error::TokenNotFound`] when there is no admin token yet.
    pub fn regenerate_admin(&mut self) -> Result<NewToken, Error> {
        let token = generate()?;
        let record = self
            .records
            .iter_mut()
            .find(|r| r.name == ADMIN_TOKEN_NAME)
            .ok_or_else(|| Error::TokenNotFound(ADMIN_TOKEN_NAME.into()))?;
        record.hash = hash(&token);
        Ok(NewToken {
            token,
            record: record.clone(),
        })
    }

    /// Creates a token named `name` with `grants`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidToken`] for an empty or reserved name, no grant, a grant without
    /// action or a bad database name; [`Error::TokenExists`].
    pub fn create_scoped(
        &mut self,
        name: &str,
        grants: Vec<Grant>,
        now_ms: i64,
        expiry_ms: Option<i64>,
    ) -> Result<NewToken, Error> {
        if name.is_empty() || name.starts_with('_') {
            return Err(Error::InvalidToken(format!(
                "`{name}` cannot name a token: give a name that does not start with `_`"
            )));
        }
        if grants.is_empty() {
            return Err(Error::InvalidToken(
                "a token needs at least one permission".into(),
            ));
        }
        for grant in &grants {
            if grant.metrics {
                // Names no database, allows nothing else.
                if *grant != Grant::metrics() {
                    return Err(Error::InvalidToken(
                        "a metrics permission names no database and allows nothing else".into(),
                    ));
                }
                continue;
            }
            if grant.actions().is_empty() {
                return Err(Error::InvalidToken(
                    "a permission needs at least one of the actions read, write, manage and invoke"
                        .into(),
                ));
            }
            if grant.databases.is_empty() {
                return Err(Error::InvalidToken(
                    "a permission needs at least one database, or `*`".into(),
                ));
            }
            for database in grant.databases.iter().filter(|d| *d != "*") {
                crate::validate_database_name(database)?;
            }
        }
        self.insert(name, Access::Scoped(grants), now_ms, expiry_ms)
    }

    /// Deletes the token named `name`.
    ///
    /// # Errors
    ///
    /// [`Error::TokenNotFound`]; [`Error::InvalidToken`] for the admin token, which can
    /// only be regenerated (deleting it would lock everyone out).
    pub fn delete(&mut self, name: &str) -> Result<(), Error> {
        if name == ADMIN_TOKEN_NAME {
            return Err(Error::InvalidToken(
                "the admin token cannot be deleted; regenerate it instead".into(),
            ));
        }
        let before = self.records.len();
        self.records.retain(|r| r.name != name);
        if self.records.len() == before {
            return Err(Error::TokenNotFound(name.into()));
        }
        Ok(())
    }

    fn insert(
        &mut self,
        name: &str,
        access: Access,
        now_ms: i64,
        expiry_ms: Option<i64>,
    ) -> Result<NewToken, Error> {
        if self.records.iter().any(|r| r.name == name) {
            return Err(Error::TokenExists(name.into()));
        }
        let token = generate()?;
        let record = TokenRecord {
            id: self.next_id,
            name: name.into(),
            hash: hash(&token),
            created_at_ms: now_ms,
            expiry_ms,
            access,
        };
        self.next_id += 1;
        self.records.push(record.clone());
        Ok(NewToken { token, record })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(databases: &[&str], read: bool, write: bool) -> Grant {
        Grant {
            manage: false,
            invoke: false,
            metrics: false,
            databases: databases.iter().map(|d| d.to_string()).collect(),
            read,
            write,
        }
    }

    #[test]
    fn only_the_hash_is_kept_and_the_token_authenticates() {
        let mut tokens = Tokens::default();
        let admin = tokens.create_admin(1).expect("created");
        assert!(admin.token.starts_with("apiv3_") && admin.token.len() == 6 + 64);
        let kept = serde_json::to_string(&tokens).expect("serialises");
        assert!(
            !kept.contains(&admin.token[6..]),
            "the token itself must not be stored"
        );
        assert_eq!(tokens.authenticate(&admin.token, 2), Some(Access::Admin));
        assert_eq!(tokens.authenticate("apiv3_wrong", 2), None);
        assert_eq!(
            tokens.create_admin(3),
            Err(Error::TokenExists("_admin".into()))
        );
    }

    #[test]
    fn regenerating_the_admin_token_revokes_the_old_one() {
        let mut tokens = Tokens::default();
        assert_eq!(
            tokens.regenerate_admin(),
            Err(Error::TokenNotFound("_admin".into()))
        );
        let old = tokens.create_admin(1).expect("created");
        let new = tokens.regenerate_admin().expect("regenerated");
        assert_eq!(tokens.authenticate(&old.token, 2), None);
        assert_eq!(tokens.authenticate(&new.token, 2), Some(Access::Admin));
        assert_eq!(new.record.id, old.record.id);
    }

    #[test]
    fn scoped_tokens_allow_what_they_grant_until_they_expire() {
        let mut tokens = Tokens::default();
        let reader = tokens
            .create_scoped(
                "reader",
                vec![grant(&["a", "b"], true, false)],
                1,
                Some(100),
            )
            .expect("created");
        let access = tokens
            .authenticate(&reader.token, 99)
            .expect("valid before expiry");
        assert!(access.can_read("a") && access.can_read("b") && !access.can_read("c"));
        assert!(!access.can_write("a") && !access.is_admin());
        assert_eq!(tokens.authenticate(&reader.token, 100), None, "expired");

        let writer = tokens
            .create_scoped("writer", vec![grant(&["*"], false, true)], 1, None)
            .expect("created");
        let access = tokens
            .authenticate(&writer.token, 1_000)
            .expect("no expiry");
        assert!(access.can_write("anything") && !access.can_read("anything"));

        assert_eq!(
            tokens
                .create_scoped("reader", vec![grant(&["a"], true, false)], 1, None)
                .map(drop),
            Err(Error::TokenExists("reader".into()))
        );
        for (name, grants) in [
            ("_x", vec![grant(&["a"], true, false)]),
            ("", vec![grant(&["a"], true, false)]),
            ("none", vec![]),
            ("idle", vec![grant(&["a"], false, false)]),
            ("nodb", vec![grant(&[], true, false)]),
        ] {
            assert!(
                matches!(
                    tokens.create_scoped(name, grants, 1, None),
                    Err(Error::InvalidToken(_))
                ),
                "{name}"
            );
        }
        assert!(matches!(
            tokens.create_scoped("bad", vec![grant(&["_bad"], true, false)], 1, None),
            Err(Error::InvalidDatabaseName(_))
        ));
    }

    #[test]
    fn deleting_a_token_revokes_it_but_the_admin_token_stays() {
        let mut tokens = Tokens::default();
        tokens.create_admin(1).expect("created");
        let scoped = tokens
            .create_scoped("t", vec![grant(&["a"], true, true)], 1, None)
            .expect("created");
        tokens.delete("t").expect("deleted");
        assert_eq!(tokens.authenticate(&scoped.token, 2), None);
        assert_eq!(tokens.delete("t"), Err(Error::TokenNotFound("t".into())));
        assert!(matches!(
            tokens.delete("_admin"),
            Err(Error::InvalidToken(_))
        ));
        let again = tokens
            .create_scoped("t", vec![grant(&["a"], true, true)], 1, None)
            .expect("name is free again");
        assert_eq!(again.record.id, 2, "ids are never reused");
    }
}
