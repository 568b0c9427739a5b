//! No Docker engine runs here, so the Dockerfile cannot be built in CI; this checks what can be
//! checked without one: every path it copies from the build context exists, every command it runs
//! is a real subcommand of our binary, and it exposes the ports our defaults listen on.

use std::path::Path;
use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn dockerfile() -> Vec<String> {
    // Join continuation lines, drop comments.
    let text = std::fs::read_to_string(Path::new(ROOT).join("Dockerfile")).unwrap();
    text.replace("\\\n", " ")
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .map(str::to_owned)
        .collect()
}

/// The JSON-array arguments of an instruction, e.g. `CMD ["idminter", "serve"]`.
fn exec_form(line: &str) -> Vec<String> {
    let start = line.find('[').expect("exec form");
    serde_json::from_str(&line[start..]).expect("a JSON array")
}

#[test]
fn every_path_the_dockerfile_copies_from_the_context_exists() {
    let copies: Vec<_> = dockerfile()
        .into_iter()
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from"))
        .collect();
    assert!(!copies.is_empty());
    for line in copies {
        let words: Vec<_> = line.split_whitespace().skip(1).collect();
        for source in &words[..words.len() - 1] {
            assert!(
                Path::new(ROOT).join(source).exists(),
                "{line}: {source} does not exist"
            );
        }
    }
}

#[test]
fn the_build_stage_copies_every_target_cargo_needs_to_read_the_manifest() {
    // Cargo refuses a manifest whose declared bench or example targets are missing.
    let manifest = std::fs::read_to_string(Path::new(ROOT).join("Cargo.toml")).unwrap();
    let copied: Vec<String> = dockerfile()
        .into_iter()
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from"))
        .collect();
    for (section, dir) in [("[[bench]]", "benches"), ("[[example]]", "examples")] {
        if manifest.contains(section) {
            assert!(
                copied
                    .iter()
                    .any(|l| l.split_whitespace().any(|w| w == dir)),
                "Cargo.toml has {section}: COPY {dir}"
            );
        }
    }
}

#[test]
fn the_commands_it_runs_are_real_subcommands_and_it_exposes_the_default_ports() {
    let lines = dockerfile();
    let entrypoint = exec_form(lines.iter().find(|l| l.starts_with("ENTRYPOINT")).unwrap());
    let cmd = exec_form(lines.iter().find(|l| l.starts_with("CMD")).unwrap());
    let healthcheck = exec_form(lines.iter().find(|l| l.starts_with("HEALTHCHECK")).unwrap());
    assert_eq!(entrypoint, ["idminter"]);
    assert_eq!(healthcheck[0], "idminter");

    for args in [&cmd[..], &healthcheck[1..]] {
        let status = Command::new(env!("CARGO_BIN_EXE_idminter"))
            .arg(&args[0])
            .arg("--help")
            .output()
            .unwrap();
        assert!(
            status.status.success(),
            "`idminter {}` is not a subcommand",
            args[0]
        );
        // The full command line must parse too (clap exits 2 on a usage error).
        let parse = Command::new(env!("CARGO_BIN_EXE_idminter"))
            .args(args)
            .arg("--help")
            .output()
            .unwrap();
        assert!(
            parse.status.success(),
            "`idminter {args:?}` does not parse: {}",
            String::from_utf8_lossy(&parse.stderr)
        );
    }
    let expose = lines.iter().find(|l| l.starts_with("EXPOSE")).unwrap();
    assert!(
        expose.contains("50051") && expose.contains("9090"),
        "{expose}"
    );
    assert!(
        healthcheck.iter().any(|a| a.ends_with(":50051")),
        "the health check asks the gRPC port"
    );
}
