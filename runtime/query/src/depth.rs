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
//! operations, joins and the tables listed after `FROM` count for their whole group,
//! since commas do not end their chains.

use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

/// The deepest a query's expression or plan may nest, as [`depth`] measures it: far
/// beyond hand-written and generated queries (a filter of 300 `OR`ed comparisons
/// measures about 600), far below what overflows a query thread's stack.
pub const MAX_QUERY_DEPTH: usize = 1_000;

/// The stack of the threads queries run on: [`MAX_QUERY_DEPTH`] levels take under
/// 4 MiB in a debug build, where frames are largest. Only what is used is ever touched,
/// so the size costs address space, not memory.
pub const QUERY_THREAD_STACK_BYTES: usize = 16 << 20;

/// The longest query text taken: tokenizing costs memory in proportion to it.
pub const MAX_QUERY_BYTES: usize = 1 << 20;

/// Why a query's text is refused before parsing.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum TextRefused {
    #[error(
        "the query text is {0} bytes; a query may be at most {limit} KiB",
        limit = MAX_QUERY_BYTES >> 10
    )]
    TooLong(usize),
    #[error(
        "the query nests {0} levels deep (operators chained, set operations, joins and \
         parentheses); a query may nest at most {MAX_QUERY_DEPTH}"
    )]
    TooDeep(usize),
}

/// Refuses `sql` if it is longer than [`MAX_QUERY_BYTES`] or could nest deeper than
/// [`MAX_QUERY_DEPTH`]. Text that does not tokenize passes: the parser says what is
/// wrong with it.
pub fn check(sql: &str) -> Result<(), TextRefused> {
    if sql.len() > MAX_QUERY_BYTES {
        return Err(TextRefused::TooLong(sql.len()));
    }
    match depth(sql) {
        Some(depth) if depth > MAX_QUERY_DEPTH => Err(TextRefused::TooDeep(depth)),
        _ => Ok(()),
    }
}

/// The measure of the module's header, or `None` if `sql` does not tokenize.
pub fn depth(sql: &str) -> Option<usize> {
    let tokens = Tokenizer::new(&GenericDialect {}, sql).tokenize().ok()?;
    let mut groups = vec![Group::default()];
    for token in &tokens {
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
                if group.in_from {
                    group.whole_links += 1;
                }
                group.end_item();
            }
            Token::Word(word) if word.quote_style.is_some() => {}
            Token::Word(word) => match word.keyword {
                Keyword::NoKeyword => {}
                Keyword::UNION | Keyword::EXCEPT | Keyword::INTERSECT | Keyword::MINUS => {
                    group.whole_links += 1;
                    group.in_from = false;
                }
                Keyword::JOIN => group.whole_links += 1,
                Keyword::FROM => {
                    group.item_links += 1;
                    group.in_from = true;
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
                    group.in_from = false;
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
    Some(depth)
}

/// What [`depth`] knows of one parenthesised group (or the whole text).
#[derive(Default)]
struct Group {
    /// Links of the current comma-separated item.
    item_links: usize,
    /// The deepest group closed inside the current item.
    item_inner: usize,
    /// The deepest item ended so far.
    deepest_item: usize,
    /// Links that chain across commas: set operations, joins, tables after `FROM`.
    whole_links: usize,
    /// Whether the group is in a `FROM` list, where commas join tables.
    in_from: bool,
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
            format!("SELECT f({})", chain("1 + 1", ", ", n)) + &" + 1".repeat(n),
        ] {
            let measured = depth(&sql).expect("tokenizes");
            assert!(measured >= n, "{}…: {measured}", &sql[..40]);
            assert_eq!(check(&sql), Err(TextRefused::TooDeep(measured)));
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
    fn groups_add_up_through_the_items_they_sit_in() {
        // The text: 1, and its item: `SELECT`, `+`, `(`, and the group: 1 + `*` and `-`.
        assert_eq!(depth("SELECT 1 + (2 * 3 - 4)"), Some(1 + 3 + 3));
        // Groups left open close at the end: 1 + `SELECT` `(`, then 1 + `(` twice, then 1.
        assert_eq!(depth("SELECT (((1"), Some(1 + 2 + (1 + 1) + (1 + 1) + 1));
        let long = "x".repeat(MAX_QUERY_BYTES + 1);
        assert_eq!(check(&long), Err(TextRefused::TooLong(long.len())));
    }
}
