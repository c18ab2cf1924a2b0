//! The templates' parameter patterns accept only what the function accepts at start-up: a value
//! CloudFormation let through and the function refused would answer every request `FAILED`.

use cloud_app_security_connector::cloud_app_security::endpoint::AllowedHosts;
use serde_yaml::Value;

fn pattern(template: &str, parameter: &str) -> regex_lite::Regex {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(template);
    let text = std::fs::read_to_string(&path).expect("read the template");
    let doc: Value = serde_yaml::from_str(&text).expect("the template is YAML");
    let pattern = doc["Parameters"][parameter]["AllowedPattern"]
        .as_str()
        .unwrap_or_else(|| panic!("{template}: {parameter} has no AllowedPattern"));
    regex_lite::Regex::new(pattern).expect("the pattern compiles")
}

#[test]
fn allowed_hosts_pattern_accepts_only_what_the_function_accepts() {
    let edges: Vec<String> = [
        "",
        "relay.example.com",
        ".example.com",
        "a.b",
        "relay.example.com,.gov.example",
        "localhost",
        ".",
        "..",
        "a..b",
        ".a",
        "a.",
        "a.com,",
        ",a.com",
        "a.com,,b.com",
        "-a.com",
        "a-.com",
        "A.COM",
        "a.com b.org",
        " a.com",
        "a_b.com",
        "a.com;b.com",
        "xn--bcher-kva.example",
        "1.2.3.4",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .chain([format!("{}.com", "x".repeat(63)), format!("{}.com", "x".repeat(64))])
    .collect();
    for template in ["template.yaml", "deploy/stackset.yaml"] {
        let allowed = pattern(template, "AllowedHosts");
        let mut accepted = 0;
        for value in &edges {
            let template_accepts = allowed.is_match(value);
            let function_accepts = AllowedHosts::parse(value).is_ok();
            assert!(
                !template_accepts || function_accepts,
                "{template} accepts {value:?}, which the function refuses at start-up"
            );
            accepted += usize::from(template_accepts);
        }
        assert!(
            accepted >= 7,
            "{template}: the pattern still accepts ordinary values ({accepted})"
        );
        for ordinary in [
            "",
            "relay.example.com",
            ".example.com",
            "relay.example.com,.gov.example",
        ] {
            assert!(allowed.is_match(ordinary), "{template} refuses {ordinary:?}");
        }
    }
}
