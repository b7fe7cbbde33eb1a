//! Validation of pipeline files: every problem named with its field and its fix.
use super::*;
use crate::AzureAuth;

const GOOD: &str = r#"
name = "t"
[source]
bootstrap_servers = "127.0.0.1:9092"
topics = ["signals"]
group_id = "g"
[route]
signal_field = "meta.signal"
signals = ["a", "b"]
[window]
time = "event"
event_time_field = "sent_at"
granularity = "hour"
[sink]
url = "abfss://fs@acct.dfs.core.windows.net/exports"
compression = "gzip"
[sink.azure]
account_key_env = "KEY"
endpoint = "http://127.0.0.1:10000/devstoreaccount1/"
"#;

fn env(name: &str) -> Option<String> {
    (name == "KEY").then(|| "c2VjcmV0".to_string())
}

#[test]
fn a_good_file_validates() {
    let v = crate::parse(GOOD, &env).unwrap();
    assert_eq!(
        v.signal_source,
        SignalSource::Field(vec!["meta".into(), "signal".into()])
    );
    assert!(v.filter.admits("a") && !v.filter.admits("c"));
    assert_eq!(v.sink.encoding.options.extension(), "json.gz");
    match &v.sink.destination {
        Destination::Azure(a) => {
            assert_eq!(a.container, "fs");
            assert_eq!(a.root, "exports");
            assert_eq!(a.endpoint, "http://127.0.0.1:10000/devstoreaccount1");
            assert!(
                !format!("{a:?}").contains("c2VjcmV0"),
                "secret leaked into Debug"
            );
        }
        other => panic!("{other:?}"),
    }
}

fn errors(text: &str) -> Vec<ConfigError> {
    crate::parse(text, &env).unwrap_err().0
}

#[test]
fn every_problem_names_its_field() {
    let bad = GOOD
        .replace("granularity = \"hour\"", "granularity = \"hourly\"")
        .replace("topics = [\"signals\"]", "topics = []")
        .replace("account_key_env = \"KEY\"", "account_key_env = \"NOPE\"");
    let fields: Vec<_> = errors(&bad).into_iter().map(|e| e.field).collect();
    assert_eq!(
        fields,
        [
            "source.topics",
            "window.granularity",
            "sink.azure.account_key_env"
        ]
    );
}

#[test]
fn azure_auth_modes_are_one_of_four() {
    let with = |auth: &str| GOOD.replace("account_key_env = \"KEY\"", auth);
    let principal = with(
        "tenant_id = \"t\"\nclient_id = \"c\"\nclient_secret_env = \"KEY\"\nauthority_host = \"https://login.microsoftonline.us\"",
    );
    match crate::parse(&principal, &env).unwrap().sink.destination {
        Destination::Azure(a) => {
            assert!(matches!(
                &a.auth,
                AzureAuth::ServicePrincipal { tenant_id, client_id, authority_host: Some(_), .. }
                    if tenant_id == "t" && client_id == "c"
            ));
            assert!(
                !format!("{a:?}").contains("c2VjcmV0"),
                "secret leaked into Debug"
            );
        }
        other => panic!("{other:?}"),
    }
    match crate::parse(&with("credential = \"environment\""), &env)
        .unwrap()
        .sink
        .destination
    {
        Destination::Azure(a) => assert_eq!(a.auth, AzureAuth::Environment),
        other => panic!("{other:?}"),
    }
    let fields =
        |text: &str| -> Vec<String> { errors(text).into_iter().map(|e| e.field).collect() };
    assert_eq!(
        fields(&with("tenant_id = \"t\"")),
        ["sink.azure.client_id", "sink.azure.client_secret_env"]
    );
    assert_eq!(
        fields(&with(
            "account_key_env = \"KEY\"\ncredential = \"environment\""
        )),
        ["sink.azure"]
    );
    assert_eq!(
        fields(&with("credential = \"imds\"")),
        ["sink.azure.credential"]
    );
    assert_eq!(
        fields(&with(
            "tenant_id = \"t\"\nclient_id = \"c\"\nclient_secret_env = \"NOPE\""
        )),
        ["sink.azure.client_secret_env"]
    );
}

#[test]
fn unknown_fields_are_rejected_with_their_line() {
    let bad = GOOD.replace(
        "granularity = \"hour\"",
        "granularity = \"hour\"\ngranularty = 1",
    );
    let e = &errors(&bad)[0];
    assert!(e.problem.contains("unknown field `granularty`"), "{e}");
    assert_eq!(e.field, "(line 14)");
}

#[test]
fn markers_need_late_records_kept_out_of_closed_windows() {
    let on = GOOD.replace(
        "granularity = \"hour\"",
        "granularity = \"hour\"\nmarkers = true",
    );
    let e = &errors(&on)[0];
    assert_eq!(e.field, "window.markers");
    assert!(e.fix.contains("late_data = \"divert\""), "{e}");
    let v = crate::parse(
        &on.replace("markers = true", "markers = true\nlate_data = \"divert\""),
        &env,
    )
    .unwrap();
    assert_eq!(
        v.window.markers,
        Some(MarkerSettings {
            idle_partition: Duration::from_secs(300)
        })
    );
    let zero = on.replace(
        "markers = true",
        "markers = true\nlate_data = \"dead_letter\"\nidle_partition_secs = 0",
    );
    assert_eq!(errors(&zero)[0].field, "window.idle_partition_secs");
    assert_eq!(crate::parse(GOOD, &env).unwrap().window.markers, None);
}

#[test]
fn templates_whose_files_cannot_be_found_again_are_rejected() {
    let bad = GOOD.replace(
        "compression = \"gzip\"",
        "path = \"{signal}/{topic}_{partition}_{first_offset}.json\"",
    );
    let e = &errors(&bad)[0];
    assert_eq!(e.field, "sink.path");
    assert!(e.fix.contains(OFFSET_FILE_NAME), "{e}");
}

/// An hourly pipeline with daily directories, or one directory for every signal, lets a
/// replay take one key's files for another's: rejected, for data and dead letters alike.
#[test]
fn templates_whose_directories_mix_keys_are_rejected() {
    let with = |field: &str, path: &str| {
        GOOD.replace(
            "compression = \"gzip\"",
            &format!("compression = \"gzip\"\n{field} = \"{path}\""),
        )
    };
    let name = "{topic}-{partition}-{first_offset}-{last_offset}.{ext}";
    for (field, dir, lacks) in [
        ("path", "{signal}/{YYYY}/{MM}/{dd}", "{hh}"),
        ("path", "all/{YYYY}/{MM}/{dd}/{hh}", "{signal}"),
        ("path", "{YYYY}/{MM}/{dd}/{hh}/{signal}-x", "{signal}"),
        ("dead_letter_path", "_dead_letter/{YYYY}/{MM}", "{dd}"),
    ] {
        let path = if dir.ends_with("-x") {
            format!(
                "{}/{{signal}}-{name}",
                &dir[..dir.len() - "/{signal}-x".len()]
            )
        } else {
            format!("{dir}/{name}")
        };
        let errs = errors(&with(field, &path));
        let e = errs
            .iter()
            .find(|e| e.field == format!("sink.{field}"))
            .unwrap_or_else(|| panic!("{path} accepted: {errs:?}"));
        assert!(e.problem.contains(lacks), "{path}: {e}");
        assert!(e.fix.contains("directories"), "{e}");
    }
    // What the shipped pipelines use stays valid.
    assert!(crate::parse(
        &with(
            "path",
            &format!("{{signal}}/x/{{YYYY}}/{{MM}}/{{dd}}/{{hh}}/{name}")
        ),
        &env
    )
    .is_ok());
    assert!(crate::parse(
        &with(
            "dead_letter_path",
            &format!("dl/{{YYYY}}/{{MM}}/{{dd}}/{name}")
        ),
        &env
    )
    .is_ok());
}

#[test]
fn event_time_bounds_have_defaults_and_are_checked() {
    let v = crate::parse(GOOD, &env).unwrap();
    assert_eq!(v.window.plausible, PlausibleTimes::default());
    assert_eq!(v.window.plausible.min_ms, 946_684_800_000);
    let set = |extra: &str| {
        GOOD.replace(
            "granularity = \"hour\"",
            &format!("granularity = \"hour\"\n{extra}"),
        )
    };
    let v = crate::parse(
        &set("max_future_secs = 60\nmin_event_time = \"2020-01-01T00:00:00Z\"\nevent_time_format = \"epoch_ns\""),
        &env,
    )
    .unwrap();
    assert_eq!(v.window.plausible.max_future_ms, 60_000);
    assert_eq!(v.window.plausible.min_ms, 1_577_836_800_000);
    for (extra, field) in [
        ("max_future_secs = 0", "window.max_future_secs"),
        ("max_future_secs = 9999999999", "window.max_future_secs"),
        ("min_event_time = \"2020\"", "window.min_event_time"),
        (
            "event_time_format = \"epoch_fortnights\"",
            "window.event_time_format",
        ),
    ] {
        assert_eq!(errors(&set(extra))[0].field, field, "{extra}");
    }
}

#[test]
fn kafka_credentials_come_from_the_environment_never_the_file() {
    let clear = GOOD.replace(
        "group_id = \"g\"",
        "group_id = \"g\"\nproperties = { \"sasl.password\" = \"hunter2\" }",
    );
    let e = &errors(&clear)[0];
    assert_eq!(e.field, "source.properties.\"sasl.password\"");
    assert!(e.fix.contains("secret_properties_env"), "{e}");
    assert!(!e.to_string().contains("hunter2"), "{e}");
    let named = GOOD.replace(
        "group_id = \"g\"",
        "group_id = \"g\"\nsecret_properties_env = { \"sasl.password\" = \"KEY\" }",
    );
    let v = crate::parse(&named, &env).unwrap();
    assert_eq!(
        v.source.secret_properties["sasl.password"].expose(),
        "c2VjcmV0"
    );
    assert!(!format!("{v:?}").contains("c2VjcmV0"));
    let missing = named.replace("= \"KEY\" }", "= \"NOPE\" }");
    assert_eq!(
        errors(&missing)[0].field,
        "source.secret_properties_env.\"sasl.password\""
    );
}

#[test]
fn templates_that_could_overwrite_are_rejected() {
    let bad = GOOD.replace(
        "compression = \"gzip\"",
        "path = \"{signal}/{YYYY}/data.json\"",
    );
    let e = &errors(&bad)[0];
    assert_eq!(e.field, "sink.path");
    assert!(
        e.problem.contains("{topic}, {partition}, {first_offset}"),
        "{e}"
    );
}

#[test]
fn format_options_are_checked_against_the_format() {
    let fields = |sink: &str| -> Vec<String> {
        let text = GOOD.replace("compression = \"gzip\"", sink);
        errors(&text).into_iter().map(|e| e.field).collect()
    };
    assert_eq!(fields("format = \"xml\""), ["sink.format"]);
    assert_eq!(
        fields("format = \"csv\"\ncompression = \"snappy\""),
        ["sink.compression"]
    );
    assert_eq!(fields("envelope = \"iothub\""), ["sink.envelope"]);
    assert_eq!(
        fields("format = \"parquet\"\ntimestamp_unit = \"nanos\""),
        ["sink.timestamp_unit"]
    );
    assert_eq!(
        fields("format = \"parquet\"\n[sink.csv]\ndelimiter = \"ab\""),
        ["sink.csv", "sink.csv.delimiter"]
    );
    assert_eq!(
        fields("format = \"csv\"\n[[sink.columns]]\nfrom = \"a..b\""),
        ["sink.columns[0].from"]
    );
    assert_eq!(
        fields("compression = \"gzip\"\ncompression_level = 10"),
        ["sink.compression_level"]
    );
    assert_eq!(
        fields("format = \"parquet\"\ncompression_level = 3"),
        ["sink.compression_level"],
        "snappy has no level"
    );
    let fast = GOOD.replace(
        "compression = \"gzip\"",
        "compression = \"zstd\"\ncompression_level = 19",
    );
    let v = crate::parse(&fast, &env).unwrap();
    assert_eq!(v.sink.encoding.options.level, Some(19));
    let ok = GOOD.replace(
        "compression = \"gzip\"",
        "format = \"parquet\"\ncompression = \"zstd\"",
    );
    let v = crate::parse(&ok, &env).unwrap();
    assert_eq!(v.sink.encoding.options.extension(), "parquet");
}

#[test]
fn declared_schemas_must_parse_and_name_exported_signals() {
    let with = |schema: &str| -> Vec<ConfigError> { errors(&format!("{GOOD}\n{schema}")) };
    let e = with("[schema.c]\nfields = { id = \"string\" }");
    assert_eq!(e[0].field, "schema.c");
    assert!(e[0].problem.contains("not in route.signals"), "{}", e[0]);
    let e = with("[schema.a]\nfields = { id = \"uuid\" }");
    assert_eq!(e[0].field, "schema.a.fields");
    let e = with("[schema.a]\navro_file = \"missing.avsc\"");
    assert_eq!(e[0].field, "schema.a.avro_file");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("a.avsc"),
        r#"{"type":"record","name":"a","fields":[{"name":"id","type":"string"},{"name":"v","type":["null","double"]}]}"#,
    )
    .unwrap();
    let text = format!("{GOOD}\n[schema.a]\navro_file = \"a.avsc\"");
    let v = crate::parse_in(&text, &env, dir.path()).unwrap();
    let declared = &v.sink.encoding.schemas[&sluice_core::SignalName::sanitize("a")];
    assert_eq!(declared.required, [vec!["id".to_string()]]);
}

#[test]
fn an_event_hubs_connection_string_configures_the_source() {
    let conn = "Endpoint=sb://iot-ns.servicebus.windows.net/;SharedAccessKeyName=listen;SharedAccessKey=c2VjcmV0=;EntityPath=telemetry";
    let text = GOOD
        .replace(
            "bootstrap_servers = \"127.0.0.1:9092\"",
            "event_hubs_connection_string_env = \"EH\"",
        )
        .replace("topics = [\"signals\"]\n", "")
        .replace("[sink]", "[sink]\n# after source");
    let env = |name: &str| match name {
        "EH" => Some(conn.to_string()),
        other => env(other),
    };
    let v = crate::parse(&text, &env).unwrap();
    assert_eq!(
        v.source.bootstrap_servers,
        "iot-ns.servicebus.windows.net:9093"
    );
    assert_eq!(v.source.topics, ["telemetry"]);
    assert_eq!(v.source.properties["security.protocol"], "SASL_SSL");
    assert_eq!(v.source.properties["sasl.username"], "$ConnectionString");
    assert_eq!(v.source.secret_properties["sasl.password"].expose(), conn);
    assert!(
        !format!("{v:?}").contains("c2VjcmV0"),
        "the key leaks into Debug"
    );

    let missing = crate::parse(&text, &|n: &str| env(n).filter(|_| n != "EH"))
        .unwrap_err()
        .0;
    assert_eq!(missing[0].field, "source.event_hubs_connection_string_env");
    assert!(missing[0].fix.contains("export EH="), "{}", missing[0]);
    let both = text.replace("[source]", "[source]\nbootstrap_servers = \"b:9092\"");
    assert_eq!(
        crate::parse(&both, &env).unwrap_err().0[0].field,
        "source.bootstrap_servers"
    );
}

#[test]
fn schedules_parse_and_manifests_need_one() {
    assert_eq!(parse_every("6h"), Some(Duration::from_secs(6 * 3600)));
    assert_eq!(parse_every("15m"), Some(Duration::from_secs(900)));
    assert_eq!(parse_every("1d"), Some(Duration::from_secs(86_400)));
    for bad in ["0h", "6", "h", "6 hours", "-1h", "1.5h"] {
        assert_eq!(parse_every(bad), None, "{bad}");
    }
    let with = |flush: &str| format!("{GOOD}\n[flush]\n{flush}");
    let v = crate::parse(&with("every = \"8h\"\nmanifest = true"), &env).unwrap();
    assert_eq!(
        v.flush.schedule,
        Some(crate::Schedule::Every(Duration::from_secs(8 * 3600)))
    );
    assert!(v.flush.max_age > Duration::from_secs(8 * 3600));
    assert_eq!(errors(&with("every = \"often\""))[0].field, "flush.every");
    let v = crate::parse(&with("cron = \"0 */6 * * *\"\nmanifest = true"), &env).unwrap();
    assert_eq!(
        v.flush.schedule,
        Some(crate::Schedule::cron("0 */6 * * *").unwrap())
    );
    assert_eq!(v.flush.max_age, Duration::from_secs(6 * 3600 + 60));
    assert_eq!(errors(&with("cron = \"0 */6 * *\""))[0].field, "flush.cron");
    assert_eq!(
        errors(&with("cron = \"0 * * * *\"\nevery = \"1h\""))[0].field,
        "flush.cron"
    );
    assert_eq!(errors(&with("manifest = true"))[0].field, "flush.manifest");
}

#[test]
fn the_prefetch_queue_is_an_eighth_of_the_memory_budget_within_bounds() {
    let v = crate::parse(GOOD, &env).unwrap();
    // The default budget (256 MiB) keeps the 16 MiB queue the benchmark's speed needs.
    assert_eq!(v.flush.max_buffered_bytes, 256 << 20);
    assert_eq!(v.source.prefetch_kbytes, 16 * 1024);
    assert_eq!(crate::prefetch_kbytes(32 << 20), 4 * 1024);
    assert_eq!(crate::prefetch_kbytes(1 << 20), 1024);
    assert_eq!(crate::prefetch_kbytes(u64::MAX), 16 * 1024);
}
