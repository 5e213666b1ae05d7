use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use super::*;

/// A private directory for one test's files, removed at the end.
struct Dir(tempfile::TempDir);

impl Dir {
    fn new() -> Self {
        Self(tempfile::tempdir().expect("temp dir"))
    }

    fn file(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

fn argv(args: &[&str]) -> Vec<OsString> {
    std::iter::once("run")
        .chain(args.iter().copied())
        .map(OsString::from)
        .collect()
}

/// Resolves with exactly the environment `vars` (never the process's).
fn resolve_with(args: &[&str], vars: &[(&str, &str)]) -> Result<Resolved, ConfigError> {
    let vars: BTreeMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    resolve(&argv(args), &move |n| vars.get(n).cloned())
}

fn err(args: &[&str], vars: &[(&str, &str)]) -> String {
    match resolve_with(args, vars) {
        Ok(_) => panic!("{args:?} {vars:?} accepted"),
        Err(e) => e.to_string(),
    }
}

fn setting<'a>(r: &'a Resolved, key: &str) -> &'a Setting {
    r.setting(key).unwrap_or_else(|| panic!("no setting {key}"))
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A value the flag accepts: one of its possible values, its default,
/// or a number or word its parser takes.
fn sample(cmd: &Command, arg: &Arg) -> String {
    let mut candidates: Vec<String> = arg
        .get_possible_values()
        .iter()
        .map(|p| p.get_name().to_owned())
        .collect();
    candidates.extend(
        arg.get_default_values()
            .iter()
            .map(|v| v.to_string_lossy().into_owned()),
    );
    candidates
        .extend(["7", "http://collector:4317", "k=v", "127.0.0.1:9464", "x"].map(String::from));
    candidates
        .into_iter()
        .find(|c| check_values(cmd, arg, std::slice::from_ref(c)).is_ok())
        .unwrap_or_else(|| panic!("no sample value for --{:?}", arg.get_long()))
}

/// A flag added to `run` later must be a file key and an environment
/// variable too (or be listed in NOT_SETTINGS with a reason).
#[test]
fn every_long_flag_of_run_is_settable_from_the_file_and_the_environment() {
    let cmd = run_command();
    let dir = Dir::new();
    let mut checked = 0;
    for arg in cmd.get_arguments() {
        let Some(key) = arg.get_long() else { continue };
        if NOT_SETTINGS.contains(&key) {
            continue;
        }
        let shape = shape(arg).unwrap_or_else(|| {
            panic!(
                "--{key} takes its value with {:?}, which the configuration file cannot express: \
                 support it in config::shape or list it in NOT_SETTINGS",
                arg.get_action()
            )
        });
        let value = sample(&cmd, arg);
        let (toml, env) = match shape {
            Shape::Switch => ("true".to_owned(), "true".to_owned()),
            Shape::Single => (toml_scalar(&value, parses_to_text(arg)), value.clone()),
            Shape::List => (
                format!("[{}]", toml_scalar(&value, parses_to_text(arg))),
                value.clone(),
            ),
        };
        // `run` needs an interface: from the flag unless it is the key.
        let iface: &[&str] = if key == INTERFACE { &[] } else { &["-i", "lo"] };
        let file = dir.file("all.toml", &format!("# {key}\n{key} = {toml}\n"));
        let mut args = vec!["--config", path_str(&file)];
        args.extend(iface);
        let r = resolve_with(&args, &[]).unwrap_or_else(|e| panic!("{key} = {toml}: {e}"));
        assert_eq!(
            setting(&r, key).origin,
            Origin::File {
                path: file.clone(),
                line: 2
            },
            "{key}"
        );
        let expected = if shape == Shape::Switch {
            vec!["true".to_owned()]
        } else {
            vec![value.clone()]
        };
        assert_eq!(setting(&r, key).values, expected, "{key} from the file");
        let name = env_name(key);
        let r = resolve_with(iface, &[(&name, &env)]).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(setting(&r, key).origin, Origin::Env(name.clone()));
        assert_eq!(setting(&r, key).values, expected, "{name}");
        checked += 1;
    }
    assert!(checked >= 30, "only {checked} settings found");
}

#[test]
fn environment_names_follow_the_long_flag() {
    assert_eq!(env_name("sip-port"), "SIPSCOPE_SIP_PORT");
    assert_eq!(env_name("max-loss"), "SIPSCOPE_MAX_LOSS");
}

/// Flags, environment, the expected value and its origin.
type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str, Origin);

/// Each pair of sources: the higher one wins, and says so.
#[test]
fn precedence_is_flag_then_env_then_file_then_default() {
    let dir = Dir::new();
    let file = dir.file("p.toml", "iface = [\"lo\"]\n\nmax-loss = 2.0\n");
    let f = path_str(&file);
    let env = [("SIPSCOPE_MAX_LOSS", "3.0")];
    let cases: [Case; 5] = [
        (
            &["--config", f, "--max-loss", "4.0"],
            &env,
            "4.0",
            Origin::Flag,
        ),
        (
            &["--config", f, "--max-loss", "4.0"],
            &[],
            "4.0",
            Origin::Flag,
        ),
        (
            &["-i", "lo", "--max-loss", "4.0"],
            &env,
            "4.0",
            Origin::Flag,
        ),
        (
            &["--config", f],
            &env,
            "3.0",
            Origin::Env("SIPSCOPE_MAX_LOSS".into()),
        ),
        (
            &["--config", f],
            &[],
            "2.0",
            Origin::File {
                path: file.clone(),
                line: 3,
            },
        ),
    ];
    for (args, vars, value, origin) in cases {
        let r = resolve_with(args, vars).unwrap();
        let s = setting(&r, "max-loss");
        assert_eq!(
            (s.values.as_slice(), &s.origin),
            (&[value.to_owned()][..], &origin),
            "{args:?} {vars:?}"
        );
    }
    // Nothing set: the built-in default, and RunArgs has it.
    let r = resolve_with(&["-i", "lo"], &[]).unwrap();
    assert_eq!(setting(&r, "max-loss").origin, Origin::Default);
    assert_eq!(setting(&r, "max-loss").values, ["1"]);
    // A list on the command line replaces the file's, not adds to it.
    let r = resolve_with(&["--config", f, "-i", "eth9"], &[]).unwrap();
    assert_eq!(setting(&r, "iface").values, ["eth9"]);
    assert_eq!(setting(&r, "iface").origin, Origin::Flag);
}

#[test]
fn the_config_file_can_be_named_in_the_environment() {
    let dir = Dir::new();
    let file = dir.file("e.toml", "iface = [\"lo\"]\n");
    let r = resolve_with(&[], &[("SIPSCOPE_CONFIG", path_str(&file))]).unwrap();
    assert_eq!(r.file.as_deref(), Some(file.as_path()));
    // The flag wins over the variable.
    let other = dir.file("f.toml", "iface = [\"eth1\"]\n");
    let r = resolve_with(
        &["--config", path_str(&other)],
        &[("SIPSCOPE_CONFIG", path_str(&file))],
    )
    .unwrap();
    assert_eq!(setting(&r, "iface").values, ["eth1"]);
}

#[test]
fn lists_and_switches_from_the_environment() {
    let r = resolve_with(
        &[],
        &[
            ("SIPSCOPE_IFACE", "eth0, eth1"),
            ("SIPSCOPE_JSON", "yes"),
            ("SIPSCOPE_SIP_PORT", "5080,5082"),
        ],
    )
    .unwrap();
    assert_eq!(setting(&r, "iface").values, ["eth0", "eth1"]);
    assert_eq!(setting(&r, "json").values, ["true"]);
    assert_eq!(setting(&r, "sip-port").values, ["5080", "5082"]);
    assert_eq!(
        err(&["-i", "lo"], &[("SIPSCOPE_JSON", "maybe")]),
        "environment SIPSCOPE_JSON: \"maybe\" is not a switch value; use true or false (also 1/0, yes/no, on/off)"
    );
    assert_eq!(
        err(&["-i", "lo"], &[("SIPSCOPE_INGRESS", "ebpf")]),
        "environment SIPSCOPE_INGRESS: invalid value 'ebpf' for '--ingress <INGRESS>' [possible values: auto, xdp, tc]"
    );
}

#[test]
fn an_unknown_key_names_file_line_column_and_the_closest_key() {
    let dir = Dir::new();
    let f = dir.file("u.toml", "iface = [\"lo\"]\n  max-los = 2\n");
    assert_eq!(
        err(&["--config", path_str(&f)], &[]),
        format!(
            "{}:2:3: unknown key `max-los`, did you mean `max-loss`?; keys are the long flags of \
             `sipscope run` (see `sipscope run --help` or the commented /etc/sipscope/sipscope.toml)",
            f.display()
        )
    );
    // Nothing close: no suggestion; a section is a key like any other.
    let f = dir.file("s.toml", "[otlp]\nendpoint = \"http://c:4317\"\n");
    let e = err(&["--config", path_str(&f)], &[]);
    assert!(
        e.starts_with(&format!("{}:1:2: unknown key `otlp`;", f.display())),
        "{e}"
    );
    // `config` names the file; it cannot be in it.
    let f = dir.file("c.toml", "config = \"/x\"\n");
    assert_eq!(
        err(&["--config", path_str(&f), "-i", "lo"], &[]),
        format!(
            "{}:1:1: `config` names the file itself and cannot be set in it; use --config FILE or SIPSCOPE_CONFIG",
            f.display()
        )
    );
}

#[test]
fn a_wrong_type_names_the_line_and_what_is_expected() {
    let dir = Dir::new();
    let cases = [
        (
            "json = \"yes\"",
            "1:8: `json` must be true or false, found string",
        ),
        (
            "sip-port = 5080",
            "1:12: `sip-port` must be a list, e.g. sip-port = [PORT], found integer",
        ),
        (
            "sip-port = [\"a\", true]",
            "1:12: `sip-port` must be a list of a number or a quoted value, e.g. sip-port = [PORT], found boolean",
        ),
        (
            "ring-size = true",
            "1:13: `ring-size` must be a number or a quoted value, found boolean",
        ),
        (
            "otlp-endpoint = 4317",
            "1:17: `otlp-endpoint` must be a quoted string, found integer",
        ),
    ];
    assert_refused(&dir, "", &cases);
}

/// Each file `before` + text is refused with `path:` + message.
fn assert_refused(dir: &Dir, before: &str, cases: &[(&str, &str)]) {
    for (text, message) in cases {
        let f = dir.file("case.toml", &format!("{before}{text}\n"));
        assert_eq!(
            err(&["--config", path_str(&f), "-i", "lo"], &[]),
            format!("{}:{message}", f.display()),
            "{text}"
        );
    }
}

#[test]
fn a_bad_value_gets_the_flags_own_message_and_accepted_values() {
    let dir = Dir::new();
    let cases = [
        (
            "ingress = \"ebpf\"",
            "2:11: `ingress`: invalid value 'ebpf' for '--ingress <INGRESS>' [possible values: auto, xdp, tc]",
        ),
        (
            "sip-port = [5080, 0]",
            "2:12: `sip-port`: invalid value '0' for '--sip-port <PORT>': 0 is not in 1..=65535",
        ),
        (
            "max-loss = \"lots\"",
            "2:12: `max-loss`: invalid value 'lots' for '--max-loss <PERCENT>': invalid float literal",
        ),
    ];
    assert_refused(&dir, "# comment\n", &cases);
    // Numbers in any TOML notation reach the parser as numbers.
    let f = dir.file(
        "n.toml",
        "iface = [\"lo\"]\nring-size = 0x40_0000\nmax-loss = 1_0.5\n",
    );
    let r = resolve_with(&["--config", path_str(&f)], &[]).unwrap();
    assert_eq!(setting(&r, "ring-size").values, ["4194304"]);
    assert_eq!(setting(&r, "max-loss").values, ["10.5"]);
}

#[test]
fn a_syntax_error_names_line_and_column() {
    let dir = Dir::new();
    let f = dir.file("x.toml", "iface = [\"lo\"]\nmax-loss = [\n");
    let e = err(&["--config", path_str(&f)], &[]);
    assert!(e.starts_with(&format!("{}:2:", f.display())), "{e}");
}

#[test]
fn a_named_file_must_be_readable_the_default_may_be_absent() {
    let dir = Dir::new();
    let missing = dir.0.path().join("missing.toml");
    assert_eq!(
        err(&["--config", path_str(&missing), "-i", "lo"], &[]),
        format!(
            "cannot read the configuration file {}: No such file or directory (os error 2)",
            missing.display()
        )
    );
    assert!(ConfigFile::load(&missing, false).unwrap().is_none());
    assert!(ConfigFile::load(dir.0.path(), true).is_err(), "a directory");
    let big = dir.file("big.toml", &"#".repeat(1024 * 1024 + 1));
    assert!(matches!(
        ConfigFile::load(&big, true),
        Err(FileError::TooLarge { .. })
    ));
}

#[test]
fn no_interface_from_any_source_is_refused_with_what_to_do() {
    assert_eq!(
        err(&["--config", "/dev/null"], &[]),
        "no interface to capture on: give --iface IFACE, SIPSCOPE_IFACE=IFACE or iface = [\"IFACE\"] in /dev/null"
    );
}

/// The same check as `run` and `analyze` make: a credentials file others
/// can read is refused with the chmod that fixes it.
#[test]
fn a_group_readable_credentials_file_from_the_config_is_refused() {
    let dir = Dir::new();
    let creds = dir.file(
        "creds.toml",
        "[[credential]]\nusername = \"1001\"\npassword = \"x\"\n",
    );
    std::fs::set_permissions(&creds, std::fs::Permissions::from_mode(0o640)).unwrap();
    let f = dir.file(
        "c.toml",
        &format!("iface = [\"lo\"]\ncredentials = \"{}\"\n", creds.display()),
    );
    let r = resolve_with(&["--config", path_str(&f)], &[]).unwrap();
    let e = crate::cli::run::preflight(&r.args).unwrap_err();
    assert!(
        crate::cli::describe(&e).ends_with(&format!(
            "is accessible by group or others (mode 0640); it holds passwords, so run `chmod 600 {}` and try again",
            creds.display()
        )),
        "{e:#}"
    );
    std::fs::set_permissions(&creds, std::fs::Permissions::from_mode(0o600)).unwrap();
    crate::cli::run::preflight(&r.args).expect("0600 accepted");
}

#[test]
fn check_prints_every_setting_with_its_source_and_redacts_secrets() {
    let dir = Dir::new();
    let f = dir.file(
        "k.toml",
        "iface = [\"eth0\"]\notlp-header = [\"x-api-key=s3cret\"]\n",
    );
    let r = resolve_with(
        &["--config", path_str(&f), "--max-jitter", "50"],
        &[("SIPSCOPE_MIN_MOS", "4.0")],
    )
    .unwrap();
    let text = check::text(&r);
    let lines: Vec<&str> = text.lines().collect();
    let line = |key: &str| {
        *lines
            .iter()
            .find(|l| l.starts_with(&format!("{key} =")) || l.starts_with(&format!("#{key} =")))
            .unwrap_or_else(|| panic!("{key} missing in\n{text}"))
    };
    assert!(line("iface").ends_with(&format!("# file {}:1", f.display())));
    assert!(line("max-jitter").starts_with("max-jitter = 50 "));
    assert!(line("max-jitter").ends_with("# flag"));
    assert!(line("min-mos").ends_with("# env SIPSCOPE_MIN_MOS"));
    assert!(line("ring-size").ends_with("# default"));
    assert!(line("otlp-header").starts_with("otlp-header = [\"<redacted>\"]"));
    assert!(!text.contains("s3cret"));
    for arg in run_command().get_arguments().filter(|a| shape(a).is_some()) {
        line(arg.get_long().unwrap());
    }
    let json = check::json(&r);
    let min_mos = json["settings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["key"] == "min-mos")
        .unwrap();
    assert_eq!(
        min_mos,
        &serde_json::json!({"key": "min-mos", "value": 4.0, "source": "env", "env": "SIPSCOPE_MIN_MOS"})
    );
    // What check prints is itself a configuration giving the same values.
    let again = dir.file("again.toml", &text.replace("<redacted>", "k=v"));
    let r2 = resolve_with(&["--config", path_str(&again)], &[]).unwrap();
    for s in &r.settings {
        if s.key != "otlp-header" {
            assert_eq!(setting(&r2, &s.key).values, s.values, "{}", s.key);
        }
    }
}

/// packaging/sipscope.toml is what the generator writes; every default
/// in it, uncommented, is a valid configuration.
#[test]
fn the_shipped_default_config_is_the_generated_one() {
    let shipped_path = concat!(env!("CARGO_MANIFEST_DIR"), "/../packaging/sipscope.toml");
    let generated = template::render();
    let shipped = std::fs::read_to_string(shipped_path).unwrap_or_default();
    assert!(
        shipped == generated,
        "{shipped_path} differs from the generator: run \
         `cargo run -p sipscope -- config template > packaging/sipscope.toml`"
    );
    for arg in run_command().get_arguments() {
        if let (Some(_), Some(key), false) = (shape(arg), arg.get_long(), arg.is_hide_set()) {
            assert!(generated.contains(&format!("\n#{key} = ")), "{key} missing");
        }
    }
    // Uncomment every default that is a real value (not a placeholder).
    let uncommented: String = generated
        .lines()
        .filter_map(|l| l.strip_prefix('#'))
        .filter(|l| !l.starts_with(' ') && l.contains(" = ") && !l.contains("  # "))
        .map(|l| format!("{l}\n"))
        .collect();
    let dir = Dir::new();
    let f = dir.file("defaults.toml", &uncommented);
    let r = resolve_with(&["--config", path_str(&f), "-i", "lo"], &[]).unwrap();
    let defaults = resolve_with(&["-i", "lo"], &[]).unwrap();
    for s in &defaults.settings {
        assert_eq!(setting(&r, &s.key).values, s.values, "{}", s.key);
    }
}

#[test]
fn a_reload_applies_thresholds_and_credentials_and_says_what_needs_a_restart() {
    let dir = Dir::new();
    let f = dir.file("r.toml", "iface = [\"lo\"]\nmax-loss = 2.0\n");
    let running = resolve_with(&["--config", path_str(&f)], &[]).unwrap();
    let f2 = dir.file(
        "r.toml",
        "iface = [\"lo\"]\nmax-loss = 3.5\nring-size = 8388608\n",
    );
    let reloaded = resolve_with(&["--config", path_str(&f2)], &[]).unwrap();
    let changes = reload::changes(&running.settings, &reloaded.settings);
    let lines: Vec<String> = changes.iter().map(ToString::to_string).collect();
    assert_eq!(
        lines,
        [
            "config reload: ring-size 4194304 -> 8388608 (file PATH:3): needs a restart, still running with ring-size = 4194304",
            "config reload: max-loss 2.0 -> 3.5 (file PATH:2): applied",
        ]
        .map(|l| l.replace("PATH", path_str(&f2)))
    );
    // The ring stays as started: a second reload says so again.
    let now = reload::running_after(&running.settings, &reloaded.settings);
    let again = reload::changes(&now, &reloaded.settings);
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].key, "ring-size");
    assert!(!again[0].live);
}
