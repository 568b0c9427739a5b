//! Logs written to a file or a pipe are plain text: no ANSI colour codes unless stderr is a
//! terminal, and none on a terminal either when `NO_COLOR` is set.

use std::process::{Command, Stdio};

use crate::helpers::TestDatabase;

const ESC: u8 = 0x1b;

/// `idminter migrate` on a fresh database logs "migrations applied" at INFO, then exits.
fn migrate_command(db: &TestDatabase) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_idminter"));
    command
        .arg("migrate")
        .env("DATABASE_URL", db.url())
        .env("RUST_LOG", "info")
        .env_remove("NO_COLOR")
        .stdin(Stdio::null());
    command
}

#[tokio::test]
async fn a_log_redirected_to_a_file_has_no_escape_codes() {
    let db = TestDatabase::create().await;
    let path = std::env::temp_dir().join(format!("idminter-log-{}.txt", db.name));
    let file = std::fs::File::create(&path).unwrap();
    let status = migrate_command(&db)
        .stdout(Stdio::null())
        .stderr(file)
        .status()
        .unwrap();
    let log = std::fs::read(&path).unwrap();
    std::fs::remove_file(&path).ok();
    assert!(status.success());
    let text = String::from_utf8_lossy(&log);
    assert!(text.contains("migrations applied"), "{text}");
    assert!(!log.contains(&ESC), "escape codes in a log file: {text:?}");
}

/// Runs `command` under a pseudo-terminal (util-linux `script`): what the terminal showed.
fn on_a_terminal(command: &Command) -> Vec<u8> {
    let mut line = vec![command.get_program().to_string_lossy().into_owned()];
    line.extend(command.get_args().map(|a| a.to_string_lossy().into_owned()));
    let mut script = Command::new("script");
    script.args([
        "--quiet",
        "--return",
        "--command",
        &line.join(" "),
        "/dev/null",
    ]);
    for (key, value) in command.get_envs() {
        match value {
            Some(value) => script.env(key, value),
            None => script.env_remove(key),
        };
    }
    let output = script.stdin(Stdio::null()).output().expect("run script");
    assert!(output.status.success(), "{output:?}");
    output.stdout
}

#[tokio::test]
async fn a_terminal_gets_colour_unless_no_color_is_set() {
    let db = TestDatabase::create().await;
    let coloured = on_a_terminal(&migrate_command(&db));
    assert!(
        String::from_utf8_lossy(&coloured).contains("migrations applied"),
        "{coloured:?}"
    );
    assert!(coloured.contains(&ESC), "a terminal gets colour");

    let db = TestDatabase::create().await;
    let mut command = migrate_command(&db);
    command.env("NO_COLOR", "1");
    let plain = on_a_terminal(&command);
    let text = String::from_utf8_lossy(&plain);
    assert!(text.contains("migrations applied"), "{text}");
    assert!(!plain.contains(&ESC), "NO_COLOR: {text:?}");
}
