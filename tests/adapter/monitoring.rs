//! The monitoring that operators import from `deploy/`: the Prometheus alerting rules and their
//! promtool unit tests (which replay the incident), the Grafana dashboard, and the metrics both
//! name, checked against what a real server and a real adapter export, so that a renamed metric or
//! label value breaks the build rather than the dashboard or an alert.
//!
//! promtool comes from Debian's `prometheus` package, which `./scripts/test` installs when missing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use promql_parser::label::MatchOp;
use promql_parser::parser::{Expr, VectorSelector};
use promql_parser::util::{ExprVisitor, walk_expr};
use serde_json::{Value, json};

use crate::helpers;
use crate::support::*;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn alerts_file() -> PathBuf {
    Path::new(ROOT).join("deploy/prometheus/alerts.yml")
}

fn dashboard_file() -> PathBuf {
    Path::new(ROOT).join("deploy/grafana/idminter.json")
}

/// Series that Prometheus makes itself, which no idminter process exports.
const MADE_BY_PROMETHEUS: [&str; 1] = ["up"];

// === promtool ===

/// Runs `promtool ARGS`: (success, stdout and stderr).
fn promtool(args: &[&str]) -> (bool, String) {
    let output = Command::new("promtool")
        .args(args)
        .current_dir(ROOT)
        .output()
        .expect("run promtool (Debian's `prometheus` package; ./scripts/test installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[test]
fn the_alerting_rules_pass_promtool_check() {
    let (ok, out) = promtool(&["check", "rules", "deploy/prometheus/alerts.yml"]);
    assert!(ok, "promtool check rules:\n{out}");
}

#[test]
fn the_alerting_rules_pass_their_unit_tests_which_replay_the_incident() {
    let (ok, out) = promtool(&["test", "rules", "deploy/prometheus/alerts_test.yml"]);
    assert!(ok, "promtool test rules:\n{out}");
}

#[test]
fn every_alert_has_a_severity_a_summary_and_a_description_that_says_what_to_do() {
    let rules = alert_rules();
    assert!(rules.len() >= 7, "{rules:#?}");
    for rule in &rules {
        let name = rule["alert"].as_str().unwrap_or("?");
        assert!(
            matches!(
                rule["labels"]["severity"].as_str(),
                Some("critical" | "warning")
            ),
            "{name}: severity"
        );
        assert!(
            rule["annotations"]["summary"].is_string(),
            "{name}: summary"
        );
        let description = rule["annotations"]["description"]
            .as_str()
            .unwrap_or_default();
        let anchor = format!("README.md#{}", name.to_lowercase());
        assert!(
            description.contains(&anchor),
            "{name}: the description links its runbook, {anchor}"
        );
        let readme = std::fs::read_to_string(Path::new(ROOT).join("README.md")).unwrap();
        assert!(
            readme.contains(&format!("#### {name}\n")),
            "{name}: README.md has the runbook heading that {anchor} points at"
        );
    }
    let names: BTreeSet<&str> = rules.iter().filter_map(|r| r["alert"].as_str()).collect();
    for required in [
        "IdminterNotServing",
        "IdminterDown",
        "IdminterServerErrors",
        "IdminterDatabasePoolSaturated",
        "IdminterAdapterMessagesAgeing",
        "IdminterAdapterBacklogNotDraining",
        "IdminterAdapterPoisonMessages",
    ] {
        assert!(names.contains(required), "{required} is missing");
    }
}

#[test]
fn the_dashboard_is_a_grafana_10_model_with_a_datasource_variable() {
    let dashboard = dashboard();
    assert!(
        dashboard["schemaVersion"].as_u64().unwrap_or(0) >= 36,
        "Grafana 10 reads schemaVersion 36 and newer"
    );
    assert!(dashboard["uid"].is_string() && dashboard["title"].is_string());
    let variables = dashboard["templating"]["list"]
        .as_array()
        .expect("templating");
    assert!(
        variables.iter().any(|v| v["type"] == "datasource"
            && v["query"] == "prometheus"
            && v["name"] == "datasource"),
        "a Prometheus datasource variable named `datasource`"
    );
    let panels = panels(&dashboard);
    let ids: BTreeSet<u64> = panels.iter().filter_map(|p| p["id"].as_u64()).collect();
    assert_eq!(ids.len(), panels.len(), "every panel has its own id");
    for panel in panels.iter().filter(|p| p["type"] != "row") {
        let title = panel["title"].as_str().unwrap_or("?");
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{title}");
        assert!(panel["gridPos"]["w"].as_u64().is_some(), "{title}: gridPos");
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title}: no query");
        for target in targets {
            assert_eq!(target["datasource"]["uid"], "${datasource}", "{title}");
        }
    }
    // What the contract asks the dashboard to show, by the metric each panel reads.
    let exprs = dashboard_exprs()
        .into_values()
        .collect::<Vec<_>>()
        .join("\n");
    for metric in [
        "idminter_rpc_requests_total",
        "idminter_rpc_duration_seconds_bucket",
        "idminter_ids_total",
        "idminter_ready",
        "idminter_db_pool_connections",
        "idminter_id_cache_lookups_total",
        "idminter_adapter_oldest_message_age_seconds",
        "idminter_adapter_queue_depth",
        "idminter_adapter_messages_total",
    ] {
        assert!(exprs.contains(metric), "no panel shows {metric}");
    }
}

#[test]
fn every_dashboard_expression_is_accepted_by_promtool() {
    // Each panel query becomes a recording rule of a generated rules file (JSON is YAML), which
    // promtool parses and checks as it would any rule.
    let rules: Vec<Value> = dashboard_exprs()
        .into_iter()
        .map(|(name, expr)| json!({"record": format!("dashboard:{name}"), "expr": expr}))
        .collect();
    assert!(rules.len() >= 10, "{rules:#?}");
    let file = std::env::temp_dir().join(format!(
        "idminter-dashboard-rules-{}.yml",
        uuid::Uuid::new_v4().simple()
    ));
    let body = json!({"groups": [{"name": "dashboard", "rules": rules}]});
    std::fs::write(&file, body.to_string()).unwrap();
    let (ok, out) = promtool(&["check", "rules", file.to_str().unwrap()]);
    std::fs::remove_file(&file).ok();
    assert!(ok, "promtool check rules (the dashboard's queries):\n{out}");
    assert!(
        out.contains(&format!("SUCCESS: {} rules found", rules.len())),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_metric_and_label_value_named_by_a_rule_or_panel_is_exported_by_a_running_server_or_adapter()
 {
    // Arrange: a server and an adapter as processes, with one document published, one poison
    // message, and an identifier looked up twice (a cache miss, then a hit).
    let minter = MinterUnderTest::start().await;
    let aws = Aws::new();
    let input = aws.queue("in").await;
    let output = aws.queue("out").await;
    input.send(&work("m1").to_string()).await;
    input.send("not a JSON document").await;
    let minter_url = minter.url();
    let mut args = queue_to_queue(&input, &output, &minter_url);
    args.extend(["--visibility-timeout", "1s"]);
    let adapter = AdapterProcess::start(&args);
    output.receive(1).await;
    for _ in 0..2 {
        minter
            .lookup(&[pb_sid("sierra-system-number", "Work", "m1")])
            .await;
    }
    for series in [
        "idminter_adapter_messages_total{result=\"poison\"}",
        "idminter_adapter_queue_depth",
        "idminter_adapter_oldest_message_age_seconds",
    ] {
        eventually(&format!("the adapter exports {series}"), || async {
            adapter.metric(series).await.is_some()
        })
        .await;
    }
    eventually("the adapter counted the poison message", || async {
        adapter
            .metric("idminter_adapter_messages_total{result=\"poison\"}")
            .await
            .is_some_and(|n| n >= 1.0)
    })
    .await;

    // Act: scrape both, as Prometheus would.
    let mut exported = scrape(minter.process.admin_addr).await;
    exported.extend(scrape(adapter.admin_addr).await);

    // Assert: every selector of every rule and panel matches an exported series, by name and by
    // every label it requires to equal a value.
    let mut exprs: Vec<(String, String)> = alert_rules()
        .iter()
        .map(|r| {
            (
                format!("alert {}", r["alert"].as_str().unwrap_or("?")),
                r["expr"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    exprs.extend(dashboard_exprs());
    let mut missing = Vec::new();
    let mut checked = 0;
    for (source, expr) in &exprs {
        for (name, labels) in selectors(expr) {
            if MADE_BY_PROMETHEUS.contains(&name.as_str()) {
                continue;
            }
            checked += 1;
            let found = exported
                .iter()
                .any(|(n, l)| *n == name && labels.iter().all(|(k, v)| l.get(k) == Some(v)));
            if !found {
                missing.push(format!("{source}: {name}{labels:?}"));
            }
        }
    }
    assert!(checked >= 15, "only {checked} selectors were checked");
    let names: BTreeSet<&String> = exported.iter().map(|(n, _)| n).collect();
    assert!(
        missing.is_empty(),
        "named by a rule or panel but exported by neither process:\n{}\nexported: {names:#?}",
        missing.join("\n")
    );
}

// === the files ===

fn alert_rules() -> Vec<Value> {
    let text = std::fs::read_to_string(alerts_file()).expect("read alerts.yml");
    let rules: Value = serde_yaml_ng::from_str(&text).expect("alerts.yml is YAML");
    rules["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
        .collect()
}

fn dashboard() -> Value {
    let text = std::fs::read_to_string(dashboard_file()).expect("read the dashboard");
    serde_json::from_str(&text).expect("the dashboard is JSON")
}

/// Every panel, those inside rows included.
fn panels(dashboard: &Value) -> Vec<Value> {
    let mut all = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        all.push(panel.clone());
        if let Some(nested) = panel["panels"].as_array() {
            all.extend(nested.iter().cloned());
        }
    }
    all
}

/// Every panel query, by `panel_<id>_<refId>`, with Grafana's interval variables replaced by a
/// duration (the only variables the queries may use).
fn dashboard_exprs() -> BTreeMap<String, String> {
    let mut exprs = BTreeMap::new();
    for panel in panels(&dashboard()) {
        for target in panel["targets"].as_array().cloned().unwrap_or_default() {
            let expr = target["expr"].as_str().expect("every target has an expr");
            let expr = ["$__rate_interval", "$__interval", "$__range"]
                .iter()
                .fold(expr.to_owned(), |e, var| e.replace(var, "5m"));
            assert!(!expr.contains('$'), "an unknown variable in {expr}");
            let name = format!(
                "panel_{}_{}",
                panel["id"],
                target["refId"].as_str().unwrap_or("A")
            );
            exprs.insert(name, expr);
        }
    }
    exprs
}

// === PromQL ===

/// The metric name and the `label="value"` matchers of every selector in `expr`.
fn selectors(expr: &str) -> Vec<(String, BTreeMap<String, String>)> {
    struct Collect(Vec<(String, BTreeMap<String, String>)>);
    impl Collect {
        fn add(&mut self, selector: &VectorSelector) {
            let mut name = selector.name.clone();
            let mut labels = BTreeMap::new();
            for m in &selector.matchers.matchers {
                if matches!(m.op, MatchOp::Equal) {
                    if m.name == "__name__" {
                        name = Some(m.value.clone());
                    } else {
                        labels.insert(m.name.clone(), m.value.clone());
                    }
                }
            }
            self.0
                .push((name.expect("every selector names its metric"), labels));
        }
    }
    impl ExprVisitor for Collect {
        type Error = std::convert::Infallible;
        fn pre_visit(&mut self, expr: &Expr) -> Result<bool, Self::Error> {
            match expr {
                Expr::VectorSelector(s) => self.add(s),
                Expr::MatrixSelector(m) => self.add(&m.vs),
                _ => {}
            }
            Ok(true)
        }
    }
    let parsed = promql_parser::parser::parse(expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
    let mut collect = Collect(Vec::new());
    let _ = walk_expr(&mut collect, &parsed);
    collect.0
}

// === the Prometheus text format ===

/// Every series of a process's `/metrics`: (name, labels).
async fn scrape(addr: std::net::SocketAddr) -> Vec<(String, BTreeMap<String, String>)> {
    let (status, text) = helpers::http_get(addr, "/metrics").await;
    assert_eq!(status, 200, "{text}");
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(parse_series)
        .collect()
}

/// `name{a="1",b="x\"y"} 3` -> (name, {a: 1, b: x"y}).
fn parse_series(line: &str) -> (String, BTreeMap<String, String>) {
    let end = line.find(['{', ' ']).unwrap_or(line.len());
    let name = line[..end].to_owned();
    let mut labels = BTreeMap::new();
    if line[end..].starts_with('{') {
        let mut chars = line[end + 1..].chars();
        loop {
            let key: String = chars.by_ref().take_while(|&c| c != '=').collect();
            let key = key.trim_start_matches(',').trim().to_owned();
            if key.is_empty() || key.starts_with('}') {
                break;
            }
            assert_eq!(chars.next(), Some('"'), "{line}");
            let mut value = String::new();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
            labels.insert(key, value);
        }
    }
    (name, labels)
}

#[test]
fn the_text_format_parser_reads_names_and_labels() {
    let (name, labels) =
        parse_series(r#"idminter_rpc_requests_total{method="MintIds",code="Ok",x="a\"b,c"} 3"#);
    assert_eq!(name, "idminter_rpc_requests_total");
    assert_eq!(
        labels,
        BTreeMap::from([
            ("method".to_owned(), "MintIds".to_owned()),
            ("code".to_owned(), "Ok".to_owned()),
            ("x".to_owned(), "a\"b,c".to_owned()),
        ])
    );
    assert_eq!(
        parse_series("idminter_ready 1"),
        ("idminter_ready".to_owned(), BTreeMap::new())
    );
}
