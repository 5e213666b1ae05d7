use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;

use super::*;

const PASSWORD: &str = "Tr0ub4dor&3-very-secret";

fn file_with(mode: u32, text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    fs::set_permissions(f.path(), fs::Permissions::from_mode(mode)).unwrap();
    f
}

fn sample() -> String {
    format!(
        r#"
[[credential]]
realm = "asterisk"
username = "1001"
password = "{PASSWORD}"

[[credential]]
username = "1001"
password = "fallback-any-realm"

[[credential]]
realm = "biloxi.com"
username = "bob"
ha1 = "12AF60467A33E8518DA5C68BBFF12B11"

[[credential]]
realm = "biloxi.com"
username = "carol"
ha1 = "ef30b2bdceebdaea9bb276ef3e51ff008fb32c94f40b4dba6b165069bca85d22"
algorithm = "SHA-256"
"#
    )
}

#[test]
fn loads_password_and_ha1_entries_from_a_private_file() {
    let f = file_with(0o600, &sample());
    let store = CredentialStore::load(f.path()).unwrap();
    assert_eq!(store.len(), 4);
    match store.lookup("asterisk", "1001") {
        Some(Secret::Password(p)) => assert_eq!(p.expose_secret(), PASSWORD),
        other => panic!("{other:?}"),
    }
    match store.lookup("elsewhere", "1001") {
        Some(Secret::Password(p)) => assert_eq!(p.expose_secret(), "fallback-any-realm"),
        other => panic!("{other:?}"),
    }
    match store.lookup("biloxi.com", "bob") {
        Some(Secret::Ha1 { ha1, algorithm }) => {
            assert_eq!(ha1.expose_secret(), "12af60467a33e8518da5c68bbff12b11");
            assert_eq!(*algorithm, Algorithm::Md5);
        }
        other => panic!("{other:?}"),
    }
    match store.lookup("biloxi.com", "carol") {
        Some(Secret::Ha1 { algorithm, .. }) => assert_eq!(*algorithm, Algorithm::Sha256),
        other => panic!("{other:?}"),
    }
    assert!(
        store.lookup("biloxi.com", "Bob").is_none(),
        "usernames are exact"
    );
    assert!(store.lookup("other", "bob").is_none());
}

#[test]
fn a_stored_ha1_verifies_a_real_response() {
    use crate::analysis::digest::{Credentials, Verdict, verify};
    let store = CredentialStore::from_toml_str(&sample()).unwrap();
    // draft-smith-sipping-auth-examples 3.1 (bob / zanzibar, HA1 above).
    let creds = Credentials::parse(
        "Digest username=\"bob\", realm=\"biloxi.com\", nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", \
         uri=\"sip:bob@biloxi.com\", response=\"bf57e4e0d0bffc0fbaedce64d59add5e\"",
    )
    .unwrap();
    let secret = store.lookup(&creds.realm, &creds.username).unwrap();
    assert_eq!(verify(&creds, "INVITE", None, secret), Verdict::Match);
}

#[test]
fn group_or_world_accessible_file_is_refused_with_chmod_advice() {
    for mode in [0o644, 0o640, 0o604, 0o660, 0o610] {
        let f = file_with(mode, &sample());
        let err = CredentialStore::load(f.path()).unwrap_err();
        assert!(
            matches!(err, CredentialsError::InsecurePermissions { mode: m, .. } if m == mode),
            "{mode:o}: {err}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("chmod 600 {}", f.path().display())),
            "{msg}"
        );
        assert!(msg.contains(&format!("{mode:04o}")), "{msg}");
    }
    assert!(CredentialStore::load(file_with(0o400, &sample()).path()).is_ok());
}

#[test]
fn missing_file_and_directory_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.toml");
    let err = CredentialStore::load(&missing).unwrap_err();
    assert!(
        err.to_string().contains("cannot read credentials file"),
        "{err}"
    );
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700)).unwrap();
    let err = CredentialStore::load(dir.path()).unwrap_err();
    assert!(matches!(err, CredentialsError::NotAFile { .. }), "{err}");
}

#[test]
fn entry_errors_name_the_entry_not_the_secret() {
    let cases = [
        (format!("[[credential]]\nusername = \"u\"\npassword = \"{PASSWORD}\"\nha1 = \"{PASSWORD}\"\n"), "not both"),
        ("[[credential]]\nusername = \"u\"\n".to_owned(), "needs `password` or `ha1`"),
        (format!("[[credential]]\nusername = \"u\"\nha1 = \"{PASSWORD}\"\n"), "32 hex digits"),
        (
            "[[credential]]\nusername = \"u\"\nha1 = \"12af60467a33e8518da5c68bbff12b11\"\nalgorithm = \"SHA-256\"\n".to_owned(),
            "64 hex digits for SHA-256",
        ),
        (
            "[[credential]]\nusername = \"u\"\nha1 = \"12af60467a33e8518da5c68bbff12b11\"\nalgorithm = \"AKAv1-MD5\"\n".to_owned(),
            "unknown `algorithm`",
        ),
        (format!("[[credential]]\nusername = \"u\"\npassword = \"{PASSWORD}\"\nalgorithm = \"MD5\"\n"), "only applies to `ha1`"),
        (
            format!("[[credential]]\nusername = \"u\"\npassword = \"{PASSWORD}\"\n[[credential]]\nusername = \"u\"\npassword = \"x\"\n"),
            "given twice",
        ),
    ];
    for (text, want) in cases {
        let err = CredentialStore::from_toml_str(&text)
            .unwrap_err()
            .to_string();
        assert!(err.contains(want), "want {want:?} in {err:?}");
        assert!(!err.contains(PASSWORD), "secret leaked: {err}");
    }
}

#[test]
fn syntax_errors_give_a_position_and_never_quote_the_secret() {
    let cases = [
        // Unquoted password.
        format!("[[credential]]\nusername = \"u\"\npassword = {PASSWORD}\n"),
        // Unterminated string.
        format!("[[credential]]\nusername = \"u\"\npassword = \"{PASSWORD}\n"),
        // Wrong type (serde would normally echo the value).
        "[[credential]]\nusername = \"u\"\npassword = 123456789\n".to_owned(),
        "[[credential]]\nusername = \"u\"\npassword = 3.25\n".to_owned(),
        "[[credential]]\nusername = \"u\"\nha1 = true\n".to_owned(),
        // Typo in a key.
        format!("[[credential]]\nusername = \"u\"\npasword = \"{PASSWORD}\"\n"),
    ];
    for text in cases {
        let err = CredentialStore::from_toml_str(&text).unwrap_err();
        let shown = format!("{err}\n{err:?}");
        assert!(!shown.contains(PASSWORD), "secret leaked: {shown}");
        assert!(
            !shown.contains("123456789") && !shown.contains("3.25"),
            "value leaked: {shown}"
        );
        match err {
            CredentialsError::Syntax { line, .. } => assert!(line >= 1, "{shown}"),
            other => panic!("expected a syntax error, got {other}"),
        }
    }
}

#[test]
fn secrets_are_redacted_in_debug_display_and_serde() {
    let store = CredentialStore::from_toml_str(&sample()).unwrap();
    let shown = format!(
        "{store:?}\n{}\n{}",
        store
            .lookup("asterisk", "1001")
            .map(|s| format!("{s:?}"))
            .unwrap(),
        serde_json::to_string(&SecretString::new(PASSWORD)).unwrap()
    );
    assert!(!shown.contains(PASSWORD), "{shown}");
    assert!(
        !shown.contains("12af6046") && !shown.contains("12AF6046"),
        "{shown}"
    );
    assert!(shown.contains("<redacted>"));
    assert_eq!(SecretString::new(PASSWORD).to_string(), "<redacted>");
    assert_eq!(
        serde_json::to_string(&SecretString::new("x")).unwrap(),
        "\"<redacted>\""
    );
}

#[test]
fn empty_file_is_an_empty_store() {
    let store = CredentialStore::from_toml_str("# nothing yet\n").unwrap();
    assert!(store.is_empty());
}

#[test]
fn a_value_where_a_table_is_expected_is_not_quoted_in_the_error() {
    // serde's own message would be `invalid type: string "hunter2-LEAK",
    // expected a sequence`.
    let cases = [
        "credential = \"hunter2-LEAK\"\n".to_owned(),
        "credential = [\"hunter2-LEAK\"]\n".to_owned(),
        "[[credential]]\nusername = \"u\"\npassword = \"x\"\nrealm = [\"hunter2-LEAK\"]\n"
            .to_owned(),
        "[[credential]]\nusername = \"u\"\npassword = \"x\"\nhunter2-LEAK = 1\n".to_owned(),
        "[[credential]]\nusername = 'hunter2-LEAK\n".to_owned(),
        "hunter2-LEAK\n".to_owned(),
        "[hunter2-LEAK]\n".to_owned(),
    ];
    for text in &cases {
        let err = CredentialStore::from_toml_str(text).unwrap_err();
        let shown = format!("{err}\n{err:?}");
        assert!(!shown.contains("hunter2"), "file content quoted: {shown}");
        assert!(
            matches!(err, CredentialsError::Syntax { line: 1.., .. }),
            "{shown}"
        );
    }
    // What the message still says: the kind of mistake, and our own keys.
    let err = CredentialStore::from_toml_str(&cases[0]).unwrap_err();
    assert!(
        err.to_string()
            .contains("invalid type: string \"<redacted>\", expected a sequence"),
        "{err}"
    );
    let err = CredentialStore::from_toml_str("[[credential]]\nusername = \"u\"\npasword = \"x\"\n")
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("expected one of `username`, `realm`, `password`"),
        "{err}"
    );
}

#[test]
fn a_fifo_is_refused_at_once_not_waited_on() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("creds.toml");
    let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    // Opening a FIFO for reading blocks until a writer comes: load on a
    // thread, and fail past a deadline instead of hanging the test run.
    let (tx, rx) = std::sync::mpsc::channel();
    let path = fifo.clone();
    std::thread::spawn(move || tx.send(CredentialStore::load(&path)).unwrap());
    let result = rx
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("loading a FIFO blocked");
    assert!(
        matches!(result, Err(CredentialsError::NotAFile { .. })),
        "{result:?}"
    );
}
