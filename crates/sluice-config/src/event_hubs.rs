//! Azure Event Hubs through its Kafka endpoint: a namespace connection string becomes the
//! librdkafka settings Event Hubs needs.

use std::collections::BTreeMap;

use crate::Secret;

/// The parts of `Endpoint=sb://<ns>.servicebus.windows.net/;SharedAccessKeyName=…;
/// SharedAccessKey=…[;EntityPath=…]` that Sluice uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventHubsConnection {
    /// `<ns>.servicebus.windows.net`
    pub host: String,
    pub key_name: String,
    /// The event hub (Kafka topic) when the string is scoped to one.
    pub entity_path: Option<String>,
    /// `UseDevelopmentEmulator=true`: the local Event Hubs emulator, whose Kafka endpoint
    /// speaks SASL without TLS on port 9092 (or the port the Endpoint names).
    pub emulator: bool,
}

/// Parses a connection string; the error says what is missing or malformed (never the key).
pub fn parse_connection_string(raw: &str) -> Result<EventHubsConnection, String> {
    let mut endpoint = None;
    let mut key_name = None;
    let mut key = None;
    let mut entity_path = None;
    let mut emulator = false;
    for part in raw.trim().split(';').filter(|p| !p.trim().is_empty()) {
        let (k, v) = part.split_once('=').ok_or_else(|| {
            "a part has no '=' (expected Key=Value pairs separated by ';')".to_string()
        })?;
        match k.trim().to_ascii_lowercase().as_str() {
            "endpoint" => endpoint = Some(v.trim().to_string()),
            "sharedaccesskeyname" => key_name = Some(v.trim().to_string()),
            // The key may itself end in '=' (base64): keep everything after the first '='.
            "sharedaccesskey" => key = Some(v.to_string()),
            "entitypath" => entity_path = Some(v.trim().to_string()),
            "usedevelopmentemulator" => emulator = v.trim().eq_ignore_ascii_case("true"),
            _ => {}
        }
    }
    let endpoint = endpoint.ok_or("it has no Endpoint=sb://<namespace>.servicebus.windows.net/")?;
    let host = endpoint
        .strip_prefix("sb://")
        .ok_or("its Endpoint does not start with sb://")?
        .trim_end_matches('/')
        .to_string();
    // A port is allowed (the emulator, or a gateway in front of the Kafka endpoint); Azure's
    // own endpoints have none and get 9093.
    let port_ok = host
        .split_once(':')
        .is_none_or(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
    if host.is_empty() || host.contains('/') || !port_ok {
        return Err("its Endpoint is not sb://<namespace>.servicebus.windows.net/".into());
    }
    let key_name = key_name
        .filter(|k| !k.is_empty())
        .ok_or("it has no SharedAccessKeyName")?;
    key.filter(|k| !k.is_empty())
        .ok_or("it has no SharedAccessKey")?;
    Ok(EventHubsConnection {
        host,
        key_name,
        entity_path: entity_path.filter(|e| !e.is_empty()),
        emulator,
    })
}

/// The Kafka endpoint's address: port 9093 on Azure, 9092 on the emulator.
pub fn bootstrap_servers(c: &EventHubsConnection) -> String {
    match (c.emulator, c.host.contains(':')) {
        (_, true) => c.host.clone(),
        (true, false) => format!("{}:9092", c.host),
        (false, false) => format!("{}:9093", c.host),
    }
}

/// Authentication Event Hubs requires: TLS (not on the emulator), SASL PLAIN, user
/// `$ConnectionString`, the connection string as password (returned apart, as a secret).
pub fn auth_properties(
    c: &EventHubsConnection,
    raw: &str,
) -> (BTreeMap<String, String>, BTreeMap<String, Secret>) {
    let protocol = if c.emulator {
        "SASL_PLAINTEXT"
    } else {
        "SASL_SSL"
    };
    let plain = BTreeMap::from([
        ("security.protocol".to_string(), protocol.to_string()),
        ("sasl.mechanisms".to_string(), "PLAIN".to_string()),
        ("sasl.username".to_string(), "$ConnectionString".to_string()),
    ]);
    let secret = BTreeMap::from([("sasl.password".to_string(), Secret::new(raw.trim()))]);
    (plain, secret)
}

/// Microsoft's recommended librdkafka settings for Event Hubs (Azure docs, "Recommended
/// configurations for Apache Kafka clients"); a pipeline's own properties override them.
pub fn recommended_properties() -> BTreeMap<String, String> {
    [
        ("socket.keepalive.enable", "true"),
        ("metadata.max.age.ms", "180000"),
        ("connections.max.idle.ms", "180000"),
        ("session.timeout.ms", "30000"),
        ("heartbeat.interval.ms", "3000"),
        ("max.poll.interval.ms", "300000"),
        ("request.timeout.ms", "60000"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONN: &str = "Endpoint=sb://iot-ns.servicebus.windows.net/;SharedAccessKeyName=listen;SharedAccessKey=abc+def/ghi=;EntityPath=telemetry";

    #[test]
    fn a_connection_string_maps_to_the_kafka_endpoint() {
        let c = parse_connection_string(CONN).unwrap();
        assert_eq!(c.host, "iot-ns.servicebus.windows.net");
        assert_eq!(c.key_name, "listen");
        assert_eq!(c.entity_path.as_deref(), Some("telemetry"));
        assert_eq!(bootstrap_servers(&c), "iot-ns.servicebus.windows.net:9093");
        let (plain, secret) = auth_properties(&c, CONN);
        assert_eq!(plain["security.protocol"], "SASL_SSL");
        assert_eq!(plain["sasl.mechanisms"], "PLAIN");
        assert_eq!(plain["sasl.username"], "$ConnectionString");
        assert_eq!(secret["sasl.password"].expose(), CONN);
        assert_eq!(
            format!("{:?}", secret),
            "{\"sasl.password\": Secret(<redacted>)}"
        );
        assert_eq!(recommended_properties()["session.timeout.ms"], "30000");
    }

    #[test]
    fn the_local_emulator_speaks_sasl_without_tls() {
        let raw = "Endpoint=sb://localhost;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true;";
        let c = parse_connection_string(raw).unwrap();
        assert_eq!(bootstrap_servers(&c), "localhost:9092");
        assert_eq!(
            auth_properties(&c, raw).0["security.protocol"],
            "SASL_PLAINTEXT"
        );
        let on_port =
            parse_connection_string(&raw.replace("sb://localhost", "sb://127.0.0.1:19092"))
                .unwrap();
        assert_eq!(bootstrap_servers(&on_port), "127.0.0.1:19092");
        // An explicit port keeps TLS outside the emulator (a gateway in front of Event Hubs).
        let gateway = parse_connection_string(
            "Endpoint=sb://ns.servicebus.windows.net:19093/;SharedAccessKeyName=a;SharedAccessKey=b",
        )
        .unwrap();
        assert_eq!(
            bootstrap_servers(&gateway),
            "ns.servicebus.windows.net:19093"
        );
        assert_eq!(
            auth_properties(&gateway, "x").0["security.protocol"],
            "SASL_SSL"
        );
        for bad in ["sb://ns:port/", "sb://:9093/", "sb://ns:70000/"] {
            let raw = format!("Endpoint={bad};SharedAccessKeyName=a;SharedAccessKey=b");
            assert!(parse_connection_string(&raw).is_err(), "{bad}");
        }
    }

    #[test]
    fn namespace_strings_have_no_entity_and_bad_strings_say_why() {
        let ns = "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=k=";
        assert_eq!(parse_connection_string(ns).unwrap().entity_path, None);
        for (bad, why) in [
            ("SharedAccessKeyName=a;SharedAccessKey=b", "no Endpoint"),
            ("Endpoint=https://ns.servicebus.windows.net/;SharedAccessKeyName=a;SharedAccessKey=b", "sb://"),
            ("Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKey=b", "SharedAccessKeyName"),
            ("Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=a", "no SharedAccessKey"),
            ("just text", "no '='"),
        ] {
            let e = parse_connection_string(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
