use std::net::SocketAddr;

use serde::Deserialize;

use super::*;

const LOADER: Loader = Loader::new("T__");

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Sample {
    name: String,
    code: String,
    #[serde(default)]
    count: u32,
    http: Http,
    #[serde(default)]
    items: Vec<Item>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Http {
    listen: SocketAddr,
    #[serde(default)]
    verbose: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Item {
    id: String,
    weight: i64,
}

const TEXT: &str = r#"
name = "S001"
code = "abc"
[http]
listen = "127.0.0.1:8080"
[[items]]
id = "a"
weight = 1
"#;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn key_of(e: ConfigError) -> String {
    match e {
        ConfigError::Key { key, .. } | ConfigError::Env { key, .. } => key,
        other => panic!("no key in {other}"),
    }
}

#[test]
fn overrides_reach_every_level_and_ignore_other_variables() {
    let s: Sample = LOADER
        .from_toml(
            TEXT,
            env(&[
                ("T__COUNT", "42"),
                ("T__HTTP__LISTEN", "127.0.0.1:0"),
                ("T__HTTP__VERBOSE", "true"),
                ("T__ITEMS__0__WEIGHT", "7"),
                ("OTHER__COUNT", "x"),
            ]),
        )
        .unwrap();
    assert_eq!(s.count, 42);
    assert_eq!(s.http.listen.port(), 0);
    assert!(s.http.verbose);
    assert_eq!(s.items[0].weight, 7);
    assert_eq!(s.items[0].id, "a");
}

#[test]
fn a_whole_array_can_come_from_one_variable() {
    let s: Sample = LOADER
        .from_toml(
            TEXT,
            env(&[(
                "T__ITEMS",
                r#"[{ id = "x", weight = 2 }, { id = "y", weight = 3 }]"#,
            )]),
        )
        .unwrap();
    assert_eq!(s.items.len(), 2);
    assert_eq!(s.items[1].id, "y");
}

#[test]
fn a_string_in_the_file_stays_a_string() {
    // `123` parses as an integer, but `code` holds a string in the file.
    let s: Sample = LOADER.from_toml(TEXT, env(&[("T__CODE", "123")])).unwrap();
    assert_eq!(s.code, "123");
    // A key the file does not hold takes the parsed value: an integer is
    // not a string, so quoting forces one.
    let text = TEXT.replace("code = \"abc\"\n", "");
    let err = LOADER
        .from_toml::<Sample>(&text, env(&[("T__CODE", "123")]))
        .unwrap_err();
    assert_eq!(key_of(err), "code");
    let s: Sample = LOADER
        .from_toml(&text, env(&[("T__CODE", "\"123\"")]))
        .unwrap();
    assert_eq!(s.code, "123");
    // A value that is not TOML is a plain string.
    let s: Sample = LOADER
        .from_toml(&text, env(&[("T__CODE", "not toml")]))
        .unwrap();
    assert_eq!(s.code, "not toml");
}

#[test]
fn unknown_and_bad_keys_are_named() {
    type Env = Vec<(String, String)>;
    let cases: Vec<(String, Env, &str)> = vec![
        (
            TEXT.replace("[http]", "[http]\nbogus = 1"),
            vec![],
            "http.bogus",
        ),
        (
            TEXT.to_owned(),
            env(&[("T__HTTP__LISTNE", "1")]),
            "http.listne",
        ),
        (TEXT.to_owned(), env(&[("T__BOGUS", "1")]), "bogus"),
        (
            TEXT.replace("127.0.0.1:8080", "nope"),
            vec![],
            "http.listen",
        ),
        (TEXT.to_owned(), env(&[("T__COUNT", "many")]), "count"),
        (TEXT.replace("name = \"S001\"\n", ""), vec![], "name"),
        (
            TEXT.to_owned(),
            env(&[("T__ITEMS__5__ID", "x")]),
            "items.5.id",
        ),
        (TEXT.to_owned(), env(&[("T__HTTP____X", "1")]), "http..x"),
        (TEXT.to_owned(), env(&[("T__NAME__X", "1")]), "name.x"),
    ];
    for (text, env, want) in cases {
        let err = LOADER.from_toml::<Sample>(&text, env).unwrap_err();
        let shown = err.to_string();
        assert_eq!(key_of(err), want, "{shown}");
        assert!(shown.contains(want), "{shown}");
    }
}

#[test]
fn syntax_and_read_errors_name_the_file() {
    assert!(matches!(
        LOADER.from_toml::<Sample>("name = ", []),
        Err(ConfigError::Syntax { .. })
    ));
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.toml");
    let err = LOADER.load::<Sample>(&missing, []).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }), "{err}");
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "name = ").unwrap();
    match LOADER.load::<Sample>(&bad, []).unwrap_err() {
        ConfigError::Syntax { path, .. } => assert_eq!(path, bad),
        other => panic!("{other}"),
    }
    let good = dir.path().join("good.toml");
    std::fs::write(&good, TEXT).unwrap();
    let s: Sample = LOADER.load(&good, env(&[("T__NAME", "S002")])).unwrap();
    assert_eq!(s.name, "S002");
}
