//! The tokens file and the token set it holds.
//!
//! Format, one client per line: `NAME SCOPES SHA256HEX`, where SCOPES is a comma-separated subset
//! of `read`, `mint`, `admin` and SHA256HEX the hex SHA-256 of the client's token; `#` starts a
//! comment, blank lines are ignored. A NAME may appear on several lines (one per token), which is
//! how a token is rotated: add the new line, move the client over, remove the old line.
//!
//! The server never holds a token, only its hash: a presented token is hashed and compared with
//! every hash of the set in constant time, so neither the comparison nor the order of the lines
//! tells an attacker how close a guess was. Error messages name line numbers, never the content of
//! a line (a token pasted into the file by mistake must not reach the logs).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio_util::sync::CancellationToken;

use super::{ANONYMOUS, IMPORT, Principal, Scope};

/// Random bytes in a fresh token: 256 bits (the contract asks for at least 128).
const TOKEN_BYTES: usize = 32;
/// Prefix of our tokens, so that secret scanners and people can recognise one.
const TOKEN_PREFIX: &str = "idm_";
/// The longest NAME: it becomes a metric label and `created_by` (at most 255 bytes in the table).
const MAX_NAME_LEN: usize = 64;

/// One line of the tokens file.
#[derive(Debug, Clone)]
struct Entry {
    principal: Principal,
    /// The highest scope listed; it includes the ones below it.
    scope: Scope,
    hash: [u8; 32],
}

/// The clients of a tokens file, by token hash.
#[derive(Debug, Clone, Default)]
pub struct TokenSet {
    entries: Vec<Entry>,
}

impl TokenSet {
    /// Parses the content of a tokens file.
    ///
    /// # Errors
    /// The first malformed line, by number; the message never repeats the line's content.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut entries: Vec<Entry> = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let n = n + 1;
            let line = line.split_once('#').map_or(line, |(before, _)| before);
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.is_empty() {
                continue;
            }
            let [name, scopes, hash] = fields[..] else {
                return Err(format!(
                    "line {n}: expected `NAME SCOPES SHA256HEX` (3 fields), found {} field(s)",
                    fields.len()
                ));
            };
            validate_name(name).map_err(|e| format!("line {n}: {e}"))?;
            let scope = parse_scopes(scopes).map_err(|e| format!("line {n}: {e}"))?;
            let hash = parse_hash(hash).ok_or_else(|| {
                format!("line {n}: the third field must be 64 hex digits (the token's SHA-256)")
            })?;
            if let Some(other) = entries.iter().find(|e| e.hash == hash) {
                return Err(format!(
                    "line {n}: the same token hash is already listed for `{}`",
                    other.principal
                ));
            }
            entries.push(Entry {
                principal: Principal::named(name),
                scope,
                hash,
            });
        }
        Ok(Self { entries })
    }

    /// The principal and scope of `token`, or `None` for a token not in the set. Hashes the token
    /// once and compares with every entry in constant time, without stopping at a match.
    pub fn authenticate(&self, token: &str) -> Option<(&Principal, Scope)> {
        let presented: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        for entry in &self.entries {
            if bool::from(entry.hash.ct_eq(&presented)) {
                found = Some((&entry.principal, entry.scope));
            }
        }
        found
    }

    /// How many tokens the set holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Checks a client NAME: 1 to 64 of `A-Z a-z 0-9 . _ -`, and not one of the principals the server
/// uses itself (`anonymous`, `import`), so that provenance never lies.
///
/// # Errors
/// Why the name is refused.
pub fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(format!("a NAME has 1 to {MAX_NAME_LEN} characters"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err("a NAME has only the characters A-Z a-z 0-9 . _ -".to_owned());
    }
    if name == ANONYMOUS || name == IMPORT {
        return Err(format!(
            "`{name}` is reserved: the server records it for rows it did not get from a client"
        ));
    }
    Ok(())
}

/// Parses SCOPES (`read`, `mint,read`, ...) into the highest scope named.
///
/// # Errors
/// An empty list or a name that is not a scope.
pub fn parse_scopes(scopes: &str) -> Result<Scope, String> {
    let mut highest = None;
    for name in scopes.split(',') {
        let scope = Scope::parse(name).ok_or_else(|| {
            "SCOPES is a comma-separated subset of read, mint, admin (no spaces)".to_owned()
        })?;
        highest = highest.max(Some(scope));
    }
    highest.ok_or_else(|| "SCOPES must name at least one scope".to_owned())
}

fn parse_hash(hex_digits: &str) -> Option<[u8; 32]> {
    let mut hash = [0u8; 32];
    hex::decode_to_slice(hex_digits, &mut hash).ok()?;
    Some(hash)
}

/// The hex SHA-256 of a token, as the tokens file lists it.
pub fn hash_hex(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A fresh token: `idm_` and 64 hex digits from the operating system's CSPRNG (through `rand`'s
/// thread generator, a CSPRNG seeded from it).
pub fn new_token() -> String {
    let mut bytes = [0u8; TOKEN_BYTES];
    rand::rng().fill_bytes(&mut bytes);
    format!("{TOKEN_PREFIX}{}", hex::encode(bytes))
}

/// `idminter token new NAME --scopes S`: a fresh token and its line for the tokens file.
///
/// # Errors
/// An invalid NAME or SCOPES.
pub fn new_line(name: &str, scopes: &str) -> Result<(String, String), String> {
    validate_name(name)?;
    parse_scopes(scopes)?;
    let token = new_token();
    let line = format!("{name} {scopes} {}", hash_hex(&token));
    Ok((token, line))
}

// === Auth ===

/// Whether the server checks tokens, and against which set (swapped whole when the file changes).
#[derive(Debug, Clone)]
pub enum Auth {
    /// No tokens file: every call is allowed, as `anonymous`.
    Disabled,
    Enabled(Arc<ArcSwap<TokenSet>>),
}

impl Auth {
    /// Reads the tokens file at `path`.
    ///
    /// # Errors
    /// The file cannot be read or is malformed.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let set = read(path)?;
        Ok(Auth::Enabled(Arc::new(ArcSwap::from_pointee(set))))
    }

    pub fn is_enabled(&self) -> bool {
        matches!(self, Auth::Enabled(_))
    }
}

fn read(path: &Path) -> anyhow::Result<TokenSet> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read the tokens file {}: {e}", path.display()))?;
    TokenSet::parse(&text)
        .map_err(|e| anyhow::anyhow!("the tokens file {} is malformed: {e}", path.display()))
}

/// Re-reads the tokens file whenever its content changes, until `stop`: a valid new content
/// replaces the set for the next call; a malformed one is logged and the previous set stays.
pub async fn watch(
    path: PathBuf,
    set: Arc<ArcSwap<TokenSet>>,
    interval: Duration,
    stop: CancellationToken,
) {
    crate::reload::on_change(vec![path.clone()], interval, stop, move |contents| {
        let text = std::str::from_utf8(&contents[0])
            .map_err(|_| anyhow::anyhow!("the tokens file is not UTF-8"))?;
        let new = TokenSet::parse(text).map_err(anyhow::Error::msg)?;
        tracing::info!(path = %path.display(), tokens = new.len(), "tokens file re-read");
        set.store(Arc::new(new));
        Ok(())
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(name: &str, scopes: &str, token: &str) -> String {
        format!("{name} {scopes} {}\n", hash_hex(token))
    }

    #[test]
    fn a_token_is_found_by_its_hash_with_its_name_and_highest_scope() {
        let text = format!(
            "# clients\n\n{}{}   {}",
            line("adapter", "mint", "t1"),
            line("ops", "read,admin", "t2"),
            line("reader", "read", "t3").trim_end().to_owned() + "  # trailing comment",
        );
        let set = TokenSet::parse(&text).unwrap();
        assert_eq!(set.len(), 3);
        let (who, scope) = set.authenticate("t1").unwrap();
        assert_eq!((who.as_str(), scope), ("adapter", Scope::Mint));
        assert_eq!(set.authenticate("t2").unwrap().1, Scope::Admin);
        assert_eq!(set.authenticate("t3").unwrap().1, Scope::Read);
        assert!(set.authenticate("t4").is_none(), "an unknown token");
        assert!(set.authenticate("").is_none(), "an empty token");
    }

    #[test]
    fn one_name_may_hold_two_tokens_during_a_rotation() {
        let text = line("adapter", "mint", "old") + &line("adapter", "mint", "new");
        let set = TokenSet::parse(&text).unwrap();
        assert_eq!(set.authenticate("old").unwrap().0.as_str(), "adapter");
        assert_eq!(set.authenticate("new").unwrap().0.as_str(), "adapter");
    }

    #[test]
    fn malformed_lines_are_named_by_number_without_their_content() {
        let secret = "idm_0123456789abcdef";
        let good = line("a", "read", "t");
        for (text, expected) in [
            (format!("{good}{secret}\n"), "line 2: expected"),
            (format!("{good}b read nothex\n"), "line 2: the third field"),
            (
                format!("{good}b write {}\n", hash_hex("u")),
                "line 2: SCOPES",
            ),
            (
                format!("{good}b read, {}\n", hash_hex("u")),
                "line 2: SCOPES",
            ),
            (
                format!("{good}b read , {}\n", hash_hex("u")),
                "line 2: expected",
            ),
            (
                format!("b,c read {}\n", hash_hex("u")),
                "line 1: a NAME has only",
            ),
            (
                format!("anonymous read {}\n", hash_hex("u")),
                "line 1: `anonymous` is reserved",
            ),
            (
                format!("import mint {}\n", hash_hex("u")),
                "line 1: `import` is reserved",
            ),
            (
                format!("{good}{}", line("b", "read", "t")),
                "line 2: the same token hash",
            ),
        ] {
            let err = TokenSet::parse(&text).unwrap_err();
            assert!(err.starts_with(expected), "{text:?}: {err}");
            assert!(!err.contains(secret), "{err}");
        }
    }

    #[test]
    fn scopes_include_the_ones_below_them() {
        assert_eq!(parse_scopes("read").unwrap(), Scope::Read);
        assert_eq!(parse_scopes("read,mint").unwrap(), Scope::Mint);
        assert_eq!(parse_scopes("admin").unwrap(), Scope::Admin);
        assert!(Scope::Admin > Scope::Mint && Scope::Mint > Scope::Read);
        assert!(parse_scopes("").is_err());
        assert!(parse_scopes("Read").is_err(), "scope names are exact");
    }

    #[test]
    fn a_new_token_is_256_random_bits_and_its_line_parses_back() {
        let (token, line) = new_line("adapter", "mint").unwrap();
        assert_eq!(token.len(), TOKEN_PREFIX.len() + 64);
        assert_ne!(new_token(), new_token());
        assert!(!line.contains(&token));
        let set = TokenSet::parse(&line).unwrap();
        assert_eq!(set.authenticate(&token).unwrap().1, Scope::Mint);
        assert!(new_line("anonymous", "read").is_err());
        assert!(new_line("ok", "everything").is_err());
    }
}
