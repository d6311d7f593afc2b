use super::*;
use sluice_lp::{Precision, parse};

fn lines(lp: &str) -> Vec<Line> {
    let parsed = parse(lp, Precision::Nanosecond, 0);
    assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
    parsed.lines
}

#[test]
fn writes_create_databases_tables_and_columns_in_order() {
    let catalog = Catalog::default();
    let outcome = catalog
        .validate_write(
            "db",
            &lines("cpu,host=a usage=1i 1\ncpu,region=w usage=2i,idle=0.5 2\nmem free=1u"),
            true,
        )
        .expect("valid");
    assert_eq!(
        outcome,
        WriteValidation {
            accepted: vec![0, 1, 2],
            errors: vec![],
            // Each line's table, once its columns are added: cpu 3 then 5, mem 2.
            cells: 3 + 5 + 2,
        }
    );
    let cpu = &catalog.database("db").expect("created").tables["cpu"];
    let names: Vec<(&str, ColumnType)> =
        cpu.columns.iter().map(|(n, t)| (n.as_str(), *t)).collect();
    assert_eq!(
        names,
        [
            ("host", ColumnType::Tag),
            ("region", ColumnType::Tag),
            ("usage", ColumnType::Int),
            ("idle", ColumnType::Float),
            ("time", ColumnType::Time),
        ]
    );
    assert_eq!(catalog.database_names(), ["db"]);
}

#[test]
fn conflicting_lines_are_refused_and_name_the_column() {
    let catalog = Catalog::default();
    catalog
        .validate_write("db", &lines("m,t=x f=1i"), true)
        .expect("valid");
    let outcome = catalog
        .validate_write(
            "db",
            &lines("m f=1.5\nm,f=tag g=1i\nm t=1i\nm time=1i\nm f=2i,f=3i\nm f=4i"),
            true,
        )
        .expect("valid");
    assert_eq!(outcome.accepted, vec![5]);
    let messages: Vec<(usize, &str)> = outcome
        .errors
        .iter()
        .map(|e| (e.line_number, e.message.as_str()))
        .collect();
    assert_eq!(
        messages,
        [
            (
                1,
                "invalid column type for column 'f', expected integer, got float"
            ),
            (
                2,
                "invalid column type for column 'f', expected integer, got tag"
            ),
            (
                3,
                "invalid column type for column 't', expected tag, got integer"
            ),
            (
                4,
                "invalid column type for column 'time', expected time, got integer"
            ),
            (5, "column 'f' appears more than once"),
        ]
    );
    // The refused line added no column.
    assert_eq!(catalog.column_type("db", "m", "g"), None);
}

#[test]
fn bad_names_and_missing_databases_are_errors() {
    let catalog = Catalog::default();
    assert!(matches!(
        catalog.validate_write("bad db", &lines("m f=1i"), true),
        Err(Error::InvalidDatabaseName(_))
    ));
    assert_eq!(
        catalog.delete_database("nope"),
        Err(Error::DatabaseNotFound("nope".into()))
    );
    catalog.create_database("db").expect("created");
    assert_eq!(catalog.create_database("db"), Err(Error::AlreadyExists));
    assert_eq!(
        catalog.create_table("other", "t", &[], &[]),
        Err(Error::DatabaseNotFound("other".into()))
    );
    catalog
        .create_table(
            "db",
            "t",
            &["host".into()],
            &[("v".into(), ColumnType::Float)],
        )
        .expect("created");
    assert_eq!(catalog.column_type("db", "t", "v"), Some(ColumnType::Float));
    assert_eq!(
        catalog.create_table("db", "t", &[], &[]),
        Err(Error::AlreadyExists)
    );
    for (tags, fields) in [
        (
            vec!["a".to_string()],
            vec![("a".to_string(), ColumnType::Int)],
        ),
        (vec!["time".to_string()], vec![]),
        (vec![], vec![("t".to_string(), ColumnType::Time)]),
    ] {
        assert!(
            matches!(
                catalog.create_table("db", "u", &tags, &fields),
                Err(Error::InvalidTable(_))
            ),
            "{tags:?} {fields:?}"
        );
    }
    assert!(matches!(
        catalog.create_table("db", "", &[], &[]),
        Err(Error::InvalidTable(_))
    ));
}

#[test]
fn a_refused_write_changes_nothing() {
    let catalog = Catalog::default();
    catalog
        .validate_write("db", &lines("m f=1i"), true)
        .expect("valid");
    let refused = catalog
        .validate_write("db", &lines("new g=1i\nm f=1.5"), false)
        .expect("a valid name");
    assert_eq!(refused.errors.len(), 1);
    assert!(
        catalog
            .database("db")
            .is_some_and(|db| !db.tables.contains_key("new")),
        "the valid line's table is not kept"
    );
    let nothing = catalog
        .validate_write("other", &lines("m f=1i,f=2.5"), true)
        .expect("a valid name");
    assert!(nothing.accepted.is_empty());
    assert!(
        !catalog.has_database("other"),
        "a write of no valid line creates nothing"
    );
    catalog.delete_database("db").expect("deleted");
    assert!(catalog.database_names().is_empty());
}

#[test]
fn snapshots_round_trip_and_refuse_damage() {
    let catalog = Catalog::default();
    catalog
        .validate_write("db", &lines("cpu,host=a usage=1i,ok=true,s=\"x\""), true)
        .expect("valid");
    let admin = catalog
        .change_tokens(|tokens| tokens.create_admin(5))
        .expect("created");
    let bytes = catalog.to_bytes();
    let loaded = Catalog::from_bytes(&bytes).expect("loads");
    let persisted = |db: Option<Database>| db.map(|db| (db.tables, db.triggers));
    assert_eq!(
        persisted(loaded.database("db")),
        persisted(catalog.database("db"))
    );
    assert_eq!(
        loaded.authenticate(&admin.token, 6),
        Some(Access::Admin),
        "tokens survive"
    );

    let mut flipped = bytes.clone();
    let last = flipped.len() - 2;
    flipped[last] ^= 1;
    assert_eq!(
        Catalog::from_bytes(&flipped).err(),
        Some(SnapshotError::Corrupt)
    );
    assert_eq!(
        Catalog::from_bytes(&bytes[..10]).err(),
        Some(SnapshotError::NotASnapshot)
    );
    assert_eq!(
        Catalog::from_bytes(&bytes[..bytes.len() - 1]).err(),
        Some(SnapshotError::Corrupt)
    );
    let mut future = bytes.clone();
    future[8] = 9;
    assert_eq!(
        Catalog::from_bytes(&future).err(),
        Some(SnapshotError::UnsupportedVersion(9))
    );
}

#[test]
fn version_1_snapshots_still_load() {
    let body = br#"{"db":{"tables":{"cpu":{"columns":[["host","tag"],["time","time"]]}}}}"#;
    let mut bytes = b"SLUICECT".to_vec();
    bytes.extend_from_slice(&1_u32.to_le_bytes());
    bytes.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
    bytes.extend_from_slice(body);
    let loaded = Catalog::from_bytes(&bytes).expect("loads");
    assert_eq!(
        loaded.column_type("db", "cpu", "host"),
        Some(ColumnType::Tag)
    );
    assert!(loaded.token_records().is_empty());
}

#[test]
fn ids_are_given_once_and_survive_a_restart() {
    let catalog = Catalog::default();
    catalog.create_database("db").expect("created");
    let first = catalog.database_id("db").expect("has one");
    catalog
        .validate_write("db", &lines("cpu usage=1i"), true)
        .expect("valid");
    assert_eq!(catalog.database_id("db"), Some(first), "a change keeps it");
    let table =
        |catalog: &Catalog, db: &str| catalog.database(db).expect("exists").tables["cpu"].id;
    let first_table = table(&catalog, "db");

    catalog.delete_database("db").expect("deleted");
    catalog
        .validate_write("db", &lines("cpu usage=1i"), true)
        .expect("created by a write");
    let second = catalog.database_id("db").expect("has one");
    assert_ne!(second, first, "created again: another database");
    assert_ne!(table(&catalog, "db"), first_table);

    // The counters are persisted: a restart never gives an id again.
    let restarted = Catalog::from_bytes(&catalog.to_bytes()).expect("loads");
    assert_eq!(restarted.database_id("db"), Some(second));
    restarted.delete_database("db").expect("deleted");
    restarted.create_database("db").expect("created");
    let third = restarted.database_id("db").expect("has one");
    assert!(third > second && second > first, "{first} {second} {third}");
}

#[test]
fn catalogs_written_before_ids_get_them_on_load() {
    let body = br#"{"databases":{"a":{"tables":{"cpu":{"columns":[["time","time"]]}},"triggers":{"t":{"trigger_name":"t","plugin_filename":"p.py","trigger":"all_tables_wal_write","trigger_settings":{"run_async":false,"error_behavior":"log"},"trigger_arguments":null,"disabled":false}}},"b":{"tables":{}}},"tokens":{"records":[],"next_id":0}}"#;
    let mut bytes = b"SLUICECT".to_vec();
    bytes.extend_from_slice(&2_u32.to_le_bytes());
    bytes.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
    bytes.extend_from_slice(body);
    let loaded = Catalog::from_bytes(&bytes).expect("a version 2 file loads");
    let (a, b) = (loaded.database_id("a"), loaded.database_id("b"));
    assert!(a.is_some_and(|a| a.get() > 0) && b.is_some_and(|b| b.get() > 0));
    assert_ne!(a, b);
    let trigger = &loaded.triggers("a").expect("exists")[0];
    assert!(trigger.id.get() > 0);
    // Given once: the same ids after the next save and load, and new ones past them.
    let again = Catalog::from_bytes(&loaded.to_bytes()).expect("loads");
    assert_eq!((again.database_id("a"), again.database_id("b")), (a, b));
    again.create_database("c").expect("created");
    assert!(again.database_id("c") > b.max(a));
}
