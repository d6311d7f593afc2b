//! Database naming rules.

use crate::Error;

/// The longest database name, in bytes.
pub const MAX_DATABASE_NAME_BYTES: usize = 511;

/// Checks a database name: ASCII letters, digits, `_` and `-`, optionally one `/` (for
/// a retention policy); the first character a letter or digit; at most 511 bytes.
///
/// # Errors
///
/// [`Error::InvalidDatabaseName`] saying which rule the name breaks.
pub fn validate_database_name(name: &str) -> Result<(), Error> {
    let invalid = |why: String| Err(Error::InvalidDatabaseName(format!("'{name}' {why}")));
    let Some(first) = name.chars().next() else {
        return Err(Error::InvalidDatabaseName("the name is empty".into()));
    };
    if name.len() > MAX_DATABASE_NAME_BYTES {
        return invalid(format!("is longer than {MAX_DATABASE_NAME_BYTES} bytes"));
    }
    if !first.is_ascii_alphanumeric() {
        return invalid("must start with a letter or a digit".into());
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '/')))
    {
        return invalid(format!("contains invalid character '{bad}'"));
    }
    if name.matches('/').count() > 1 {
        return invalid("contains more than one '/'".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_rules() {
        for good in ["db", "my_db-2", "9lives", "db/rp", &"a".repeat(511)] {
            assert_eq!(validate_database_name(good), Ok(()), "{good}");
        }
        let cases = [
            ("", "invalid database name: the name is empty"),
            (
                "bad db",
                "invalid database name: 'bad db' contains invalid character ' '",
            ),
            (
                "_db",
                "invalid database name: '_db' must start with a letter or a digit",
            ),
            (
                "a/b/c",
                "invalid database name: 'a/b/c' contains more than one '/'",
            ),
            (
                "dé",
                "invalid database name: 'dé' contains invalid character 'é'",
            ),
        ];
        for (name, message) in cases {
            assert_eq!(
                validate_database_name(name).map_err(|e| e.to_string()),
                Err(message.to_string())
            );
        }
        assert!(validate_database_name(&"a".repeat(512)).is_err());
    }
}
