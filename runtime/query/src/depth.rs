//! How deep a query's trees can be, read from its text before it is parsed.
//!
//! DataFusion walks expressions and plans recursively, and not every walk grows its
//! stack (cloning, comparing and dropping an `Expr` do not): a chain of 2,000 `+` terms
//! overflows a thread's stack, which aborts the process. The parser bounds the nesting
//! it builds by recursion (parentheses, function calls, subqueries) but builds chains
//! in loops: infix operators (`+`, `AND`, `::`, `[…]`), set operations (`UNION`) and
//! joins, each link one level deeper. So the text is measured first, from its tokens
//! alone (no tree is built, so nothing deep is ever dropped), and a query whose trees
//! could pass [`MAX_QUERY_DEPTH`] is refused. Query threads have stacks sized for that
//! depth ([`QUERY_THREAD_STACK_BYTES`]).
//!
//! The measure is an upper bound: within one comma-separated item of a parenthesised
//! group, every token that is not a name or a value may be a link of a chain (operators
//! and keywords alike); a group adds its deepest item to the item it sits in; set
//! operations, joins, the tables listed after `FROM` and the queries of a `WITH` list
//! (each may build on the ones before) count for their whole group, since commas do not
//! end their chains.
//!
//! A `WITH` query is copied into every place that names it, so a chain of them, each
//! naming the one before twice, makes a plan that doubles with every link: the names of
//! `WITH` queries may be used at most [`MAX_WITH_REFERENCES`] times in all.

use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

/// The deepest a query's expression or plan may nest, as [`depth_of`] measures it: far
/// beyond hand-written and generated queries (a filter of 300 `OR`ed comparisons
/// measures about 600), far below what overflows a query thread's stack.
pub const MAX_QUERY_DEPTH: usize = 1_000;

/// The stack of the threads queries run on: [`MAX_QUERY_DEPTH`] levels take under
/// 4 MiB in a debug build, where frames are largest. Only what is used is ever touched,
/// so the size costs address space, not memory.
pub const QUERY_THREAD_STACK_BYTES: usize = 16 << 20;

/// The longest query text taken: tokenizing costs memory in proportion to it (about 60
/// bytes a token).
pub const MAX_QUERY_BYTES: usize = 256 << 10;

/// How often a query may name its `WITH` queries: with `r` uses the plan holds at most
/// about `3^(r/3)` copies of one, a few hundred for this bound.
pub const MAX_WITH_REFERENCES: usize = 16;

/// Why a query's text is refused before parsing.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum TextRefused {
    #[error(
        "the query text is {0} bytes; a query may be at most {limit} KiB",
        limit = MAX_QUERY_BYTES >> 10
    )]
    Length(usize),
    #[error(
        "the query nests {0} levels deep (operators chained, set operations, joins and \
         parentheses); a query may nest at most {MAX_QUERY_DEPTH}"
    )]
    Depth(usize),
    #[error(
        "the query names its WITH queries {0} times; a query may name them at most \
         {MAX_WITH_REFERENCES} times (each use copies the query into the plan)"
    )]
    WithReferences(usize),
}

/// Refuses `sql` if it is longer than [`MAX_QUERY_BYTES`] or could nest deeper than
/// [`MAX_QUERY_DEPTH`]. Text that does not tokenize passes: the parser says what is
/// wrong with it.
pub fn check(sql: &str) -> Result<(), TextRefused> {
    if sql.len() > MAX_QUERY_BYTES {
        return Err(TextRefused::Length(sql.len()));
    }
    let Ok(tokens) = Tokenizer::new(&GenericDialect {}, sql).tokenize() else {
        return Ok(());
    };
    let depth = depth_of(&tokens);
    if depth > MAX_QUERY_DEPTH {
        return Err(TextRefused::Depth(depth));
    }
    let references = with_references(&tokens);
    if references > MAX_WITH_REFERENCES {
        return Err(TextRefused::WithReferences(references));
    }
    Ok(())
}

/// How often `tokens` name the `WITH` queries they define (`name AS (` or
/// `name (columns) AS (`), the definitions left out.
fn with_references(tokens: &[Token]) -> usize {
    let words: Vec<&Token> = tokens
        .iter()
        .filter(|token| !matches!(token, Token::Whitespace(_)))
        .collect();
    let is_as = |token: Option<&&Token>| matches!(token, Some(Token::Word(word)) if word.keyword == Keyword::AS);
    let mut names: Vec<String> = Vec::new();
    for (at, token) in words.iter().enumerate() {
        let Token::Word(word) = token else { continue };
        let mut next = at + 1;
        // A column list: `name (a, b) AS (`.
        if matches!(words.get(next), Some(Token::LParen)) {
            let mut open = 0_usize;
            while let Some(token) = words.get(next) {
                match token {
                    Token::LParen => open += 1,
                    Token::RParen => open -= 1,
                    _ => {}
                }
                next += 1;
                if open == 0 {
                    break;
                }
            }
        }
        if is_as(words.get(next)) && matches!(words.get(next + 1), Some(Token::LParen)) {
            names.push(word.value.to_lowercase());
        }
    }
    if names.is_empty() {
        return 0;
    }
    let uses = words
        .iter()
        .filter(|token| {
            matches!(token, Token::Word(word) if names.contains(&word.value.to_lowercase()))
        })
        .count();
    uses.saturating_sub(names.len())
}

/// The depth of the module's header, of tokenized text.
fn depth_of(tokens: &[Token]) -> usize {
    let mut groups = vec![Group::default()];
    for token in tokens {
        let group = groups
            .last_mut()
            .expect("the outermost group is never closed");
        match token {
            Token::LParen | Token::LBracket | Token::LBrace => {
                group.item_links += 1;
                groups.push(Group::default());
            }
            Token::RParen | Token::RBracket | Token::RBrace => {
                if groups.len() > 1 {
                    let inner = groups.pop().map_or(0, Group::depth);
                    let outer = groups.last_mut().expect("an outer group is left");
                    outer.item_inner = outer.item_inner.max(inner);
                }
            }
            Token::Comma => {
                if group.commas_chain {
                    group.whole_links += 1;
                }
                group.end_item();
            }
            Token::Word(word) if word.quote_style.is_some() => {}
            Token::Word(word) => match word.keyword {
                Keyword::NoKeyword => {}
                Keyword::UNION | Keyword::EXCEPT | Keyword::INTERSECT | Keyword::MINUS => {
                    group.whole_links += 1;
                    group.commas_chain = false;
                }
                Keyword::JOIN => group.whole_links += 1,
                Keyword::FROM | Keyword::WITH => {
                    group.item_links += 1;
                    group.commas_chain = true;
                }
                Keyword::WHERE
                | Keyword::GROUP
                | Keyword::HAVING
                | Keyword::ORDER
                | Keyword::LIMIT
                | Keyword::OFFSET
                | Keyword::WINDOW
                | Keyword::QUALIFY
                | Keyword::SELECT => {
                    group.item_links += 1;
                    group.commas_chain = false;
                }
                _ => group.item_links += 1,
            },
            token if is_value(token) => {}
            _ => group.item_links += 1,
        }
    }
    // Groups left open count as closed: the parser refuses the text anyway.
    let mut depth = 0;
    while let Some(group) = groups.pop() {
        let mut group = group;
        group.item_inner = group.item_inner.max(depth);
        depth = group.depth();
    }
    depth
}

/// What [`depth_of`] knows of one parenthesised group (or the whole text).
#[derive(Default)]
struct Group {
    /// Links of the current comma-separated item.
    item_links: usize,
    /// The deepest group closed inside the current item.
    item_inner: usize,
    /// The deepest item ended so far.
    deepest_item: usize,
    /// Links that chain across commas: set operations, joins, tables after `FROM`,
    /// queries of a `WITH` list.
    whole_links: usize,
    /// Whether the group is in a `FROM` list, where commas join tables, or a `WITH`
    /// list, where each query may build on the ones before.
    commas_chain: bool,
}

impl Group {
    fn end_item(&mut self) {
        self.deepest_item = self.deepest_item.max(self.item_links + self.item_inner);
        self.item_links = 0;
        self.item_inner = 0;
    }

    fn depth(mut self) -> usize {
        self.end_item();
        1 + self.whole_links + self.deepest_item
    }
}

/// Names and values: the leaves of a tree, which add no depth.
fn is_value(token: &Token) -> bool {
    matches!(
        token,
        Token::Number(..)
            | Token::Placeholder(_)
            | Token::Whitespace(_)
            | Token::SingleQuotedString(_)
            | Token::DoubleQuotedString(_)
            | Token::TripleSingleQuotedString(_)
            | Token::TripleDoubleQuotedString(_)
            | Token::DollarQuotedString(_)
            | Token::SingleQuotedByteStringLiteral(_)
            | Token::DoubleQuotedByteStringLiteral(_)
            | Token::TripleSingleQuotedByteStringLiteral(_)
            | Token::TripleDoubleQuotedByteStringLiteral(_)
            | Token::SingleQuotedRawStringLiteral(_)
            | Token::DoubleQuotedRawStringLiteral(_)
            | Token::TripleSingleQuotedRawStringLiteral(_)
            | Token::TripleDoubleQuotedRawStringLiteral(_)
            | Token::NationalStringLiteral(_)
            | Token::EscapedStringLiteral(_)
            | Token::UnicodeStringLiteral(_)
            | Token::HexStringLiteral(_)
            | Token::EOF
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The depth of the module's header, or `None` if `sql` does not tokenize.
    fn depth(sql: &str) -> Option<usize> {
        let tokens = Tokenizer::new(&GenericDialect {}, sql).tokenize().ok()?;
        Some(depth_of(&tokens))
    }

    fn chain(term: &str, separator: &str, n: usize) -> String {
        vec![term; n].join(separator)
    }

    #[test]
    fn ordinary_queries_measure_shallow() {
        for sql in [
            "SELECT * FROM cpu",
            "SELECT host, avg(usage) FROM cpu WHERE time > now() - INTERVAL '1 hour' \
             GROUP BY host ORDER BY host LIMIT 10",
            "SELECT a.v FROM cpu AS a JOIN mem AS b ON a.host = b.host",
        ] {
            let measured = depth(sql).expect("tokenizes");
            assert!(measured < 40, "{sql}: {measured}");
        }
    }

    #[test]
    fn every_chain_the_parser_builds_in_a_loop_counts() {
        let n = 2 * MAX_QUERY_DEPTH;
        for sql in [
            format!("SELECT {}", chain("1", " + ", n)),
            format!("SELECT v FROM cpu WHERE {}", chain("v <> 1", " AND ", n)),
            format!("SELECT v{} FROM cpu", "::double".repeat(n)),
            format!("SELECT a{}", "[1]".repeat(n)),
            chain("SELECT 1, 2", " UNION ALL ", n),
            format!("SELECT 1 FROM {}", chain("cpu", ", ", n)),
            format!("SELECT 1 FROM cpu {}", chain("JOIN cpu USING (v)", " ", n)),
            format!(
                "WITH t0 AS (SELECT 1) {} SELECT 1",
                (1..n)
                    .map(|i| format!(", t{i} AS (SELECT 2)"))
                    .collect::<String>()
            ),
            format!("SELECT f({})", chain("1 + 1", ", ", n)) + &" + 1".repeat(n),
        ] {
            let measured = depth(&sql).expect("tokenizes");
            assert!(measured >= n, "{}…: {measured}", &sql[..40]);
            assert_eq!(check(&sql), Err(TextRefused::Depth(measured)));
        }
    }

    #[test]
    fn lists_are_wide_not_deep() {
        let n = 10 * MAX_QUERY_DEPTH;
        for sql in [
            format!("SELECT {} FROM cpu", chain("v + 1", ", ", n)),
            format!("SELECT v FROM cpu WHERE v IN ({})", chain("'a'", ", ", n)),
            format!("SELECT coalesce({})", chain("v * 2", ", ", n)),
        ] {
            let measured = depth(&sql).expect("tokenizes");
            assert!(measured < 10, "{}…: {measured}", &sql[..40]);
        }
    }

    #[test]
    fn with_queries_may_be_named_a_bounded_number_of_times() {
        let doubling = |n: usize| {
            let links: String = (1..n)
                .map(|i| {
                    let before = i - 1;
                    format!(", t{i} AS (SELECT * FROM t{before} UNION ALL SELECT * FROM T{before})")
                })
                .collect();
            format!("WITH t0 AS (SELECT 1 AS x){links} SELECT * FROM t{}", n - 1)
        };
        // Each link names the one before twice (in any case), and the last is named once.
        assert_eq!(check(&doubling(8)), Ok(()));
        assert_eq!(check(&doubling(9)), Err(TextRefused::WithReferences(17)));
        let columns = "WITH a (x) AS (SELECT 1), b AS (SELECT x FROM a) SELECT * FROM a, b";
        assert_eq!(
            with_references(
                &Tokenizer::new(&GenericDialect {}, columns)
                    .tokenize()
                    .expect("tokens")
            ),
            3
        );
    }

    #[test]
    fn groups_add_up_through_the_items_they_sit_in() {
        // The text: 1, and its item: `SELECT`, `+`, `(`, and the group: 1 + `*` and `-`.
        assert_eq!(depth("SELECT 1 + (2 * 3 - 4)"), Some(1 + 3 + 3));
        // Groups left open close at the end: 1 + `SELECT` `(`, then 1 + `(` twice, then 1.
        assert_eq!(depth("SELECT (((1"), Some(1 + 2 + (1 + 1) + (1 + 1) + 1));
        let long = "x".repeat(MAX_QUERY_BYTES + 1);
        assert_eq!(check(&long), Err(TextRefused::Length(long.len())));
    }
}
