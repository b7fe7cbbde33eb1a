//! The chaos run: `sluice run` workers on Tansu and Azurite, killed with SIGKILL at random
//! moments, added and removed, with the lake down for a while; then every landed file is read
//! back and checked against what was produced.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sluice_config::{AzureAuth, AzureDestination, Destination, Secret};
use sluice_lake::Lake;
use sluice_testkit::lake_files::parse_ndjson;
use sluice_testkit::sample::{generate, poison, Rng, SampleSpec};
use sluice_testkit::services::{Azurite, Tansu, AZURITE_ACCOUNT, AZURITE_KEY};
use sluice_testkit::Outgoing;

use crate::{committed, end_offsets, sluice_bin, wait_for};

const TOPIC: &str = "chaos";
const GROUP: &str = "chaos";
const CONTAINER: &str = "chaos";

#[derive(Debug, Clone)]
pub struct ChaosPlan {
    pub records: usize,
    /// One record in this many is poison.
    pub poison_every: usize,
    /// SIGKILLs of a running worker.
    pub kills: usize,
    pub max_workers: usize,
    pub lake_outage: Duration,
    pub seed: u64,
    /// Delta tables (`sink.table = "delta"`) instead of files; read back by Python deltalake.
    pub delta: bool,
}

/// What the run found, as the acceptance criteria name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChaosSummary {
    pub produced: u64,
    pub poison: u64,
    pub landed: u64,
    pub unique: u64,
    pub duplicates: u64,
    pub lost: u64,
    pub dead_lettered: u64,
    pub kills: u64,
    pub seconds: u64,
}

impl ChaosSummary {
    pub fn to_json(&self) -> String {
        format!(
            r#"{{"produced": {}, "poison": {}, "landed": {}, "unique": {}, "duplicates": {}, "lost": {}, "dead_lettered": {}, "kills": {}, "seconds": {}}}"#,
            self.produced,
            self.poison,
            self.landed,
            self.unique,
            self.duplicates,
            self.lost,
            self.dead_lettered,
            self.kills,
            self.seconds
        )
    }
}

struct Workers {
    pipeline: PathBuf,
    logs: PathBuf,
    running: Vec<Child>,
    started: usize,
}

impl Workers {
    fn start(&mut self) {
        self.started += 1;
        let log =
            std::fs::File::create(self.logs.join(format!("worker-{}.log", self.started))).unwrap();
        let child = Command::new(sluice_bin())
            .args(["run", "--listen", "127.0.0.1:0"])
            .arg(&self.pipeline)
            .env("RUST_LOG", "info,librdkafka=warn")
            .env("CHAOS_AZURITE_KEY", AZURITE_KEY)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.running.push(child);
    }

    fn signal(&mut self, index: usize, signal: &str) {
        let mut child = self.running.remove(index);
        let _ = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status();
        let _ = child.wait();
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for mut c in self.running.drain(..) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn write_pipeline(path: &Path, bootstrap: &str, endpoint: &str, delta: bool) {
    let table = if delta { "table = \"delta\"" } else { "" };
    std::fs::write(
        path,
        format!(
            r#"
name = "chaos"
[source]
bootstrap_servers = "{bootstrap}"
topics = ["{TOPIC}"]
group_id = "{GROUP}"
# Quick fetches from Tansu; a killed member is noticed after 10 s.
properties = {{ "fetch.wait.max.ms" = "10", "session.timeout.ms" = "10000", "heartbeat.interval.ms" = "1000" }}
[window]
time = "event"
event_time_field = "timestamp"
granularity = "hour"
[sink]
url = "abfss://{CONTAINER}@{AZURITE_ACCOUNT}.dfs.core.windows.net/lake"
compression = "gzip"
{table}
# Small files: a write attempt is abandoned after 5 s (plus 1 s per 16 MiB, at most 8 MiB
# here), so a worker taking a partition over from a killed one waits about 10.5 s.
write_timeout_secs = 5
[sink.azure]
account_key_env = "CHAOS_AZURITE_KEY"
endpoint = "{endpoint}"
[flush]
max_records = 1500
max_bytes = 4194304
max_age_secs = 2
"#
        ),
    )
    .unwrap();
}

/// Runs the plan and returns what was found. Worker logs stay in `work_dir`.
pub fn run_chaos(plan: &ChaosPlan, work_dir: &Path) -> ChaosSummary {
    let started = Instant::now();
    let tansu = Tansu::start();
    tansu.create_topic(TOPIC, 4);
    let mut azurite = Azurite::start();
    let mut rng = Rng::new(plan.seed);

    // The records: samples with poison mixed in, one record per batch (see `produce_batched`).
    let samples = generate(&SampleSpec::new(plan.records, 4, 6));
    let mut records: Vec<Outgoing> = Vec::with_capacity(plan.records);
    let mut poison_count = 0u64;
    for (i, s) in samples.iter().enumerate() {
        if plan.poison_every > 0 && i % plan.poison_every == plan.poison_every - 1 {
            records.push(poison(i as u64, s.record.partition));
            poison_count += 1;
        } else {
            records.push(s.record.clone());
        }
    }
    let good: HashMap<u64, ()> = records
        .iter()
        .zip(&samples)
        .filter(|(r, s)| r.payload.as_deref() == s.record.payload.as_deref())
        .map(|(_, s)| (s.id, ()))
        .collect();
    let ends = end_offsets(&records);

    let pipeline = work_dir.join("chaos.toml");
    write_pipeline(&pipeline, &tansu.bootstrap, &azurite.endpoint, plan.delta);
    let mut workers = Workers {
        pipeline,
        logs: work_dir.to_path_buf(),
        running: Vec::new(),
        started: 0,
    };

    // Produce in the background while the workers run.
    let producer = std::thread::spawn({
        let (bootstrap, records) = (tansu.bootstrap.clone(), records.clone());
        move || {
            for chunk in records.chunks(5_000) {
                sluice_testkit::produce_batched(&bootstrap, TOPIC, chunk, 1).unwrap();
            }
        }
    });
    workers.start();

    let mut kills = 0u64;
    let mut outage_done = plan.lake_outage.is_zero();
    let outage_after = plan.kills / 2;
    while kills < plan.kills as u64 {
        std::thread::sleep(Duration::from_millis(1_000 + rng.below(3_000)));
        if !outage_done && kills as usize >= outage_after {
            eprintln!("chaos: lake down for {:?}", plan.lake_outage);
            azurite.stop();
            std::thread::sleep(plan.lake_outage);
            azurite.restart();
            outage_done = true;
        }
        match rng.below(4) {
            // Add a worker.
            0 if workers.running.len() < plan.max_workers => workers.start(),
            // Remove one cleanly.
            1 if workers.running.len() > 1 => {
                let i = rng.below(workers.running.len() as u64) as usize;
                workers.signal(i, "-TERM");
            }
            // Kill one, and start a replacement.
            _ => {
                let i = rng.below(workers.running.len() as u64) as usize;
                workers.signal(i, "-KILL");
                kills += 1;
                workers.start();
            }
        }
        eprintln!(
            "chaos: {} kills, {} workers running, {:?} elapsed",
            kills,
            workers.running.len(),
            started.elapsed()
        );
    }
    producer.join().unwrap();

    // Drain: the group commits to the end of every partition.
    let bootstrap = tansu.bootstrap.clone();
    wait_for(
        "the workers to drain the topic",
        Duration::from_secs(600),
        || {
            let c = committed(&bootstrap, GROUP, TOPIC);
            ends.iter().all(|(p, e)| c.get(p) == Some(&Some(*e)))
        },
    );
    while !workers.running.is_empty() {
        workers.signal(0, "-TERM");
    }

    // Read everything back from the lake.
    let lake = read_lake(&azurite);
    let mut seen: BTreeMap<u64, u64> = BTreeMap::new();
    let mut seen_in: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    let mut dead: BTreeMap<(i64, i64), u64> = BTreeMap::new();
    let mut landed = 0;
    if plan.delta {
        // Data from the tables, as the independent reader sees them; dead letters are files.
        for (table, seqs) in read_tables(&azurite, &lake) {
            for seq in seqs {
                landed += 1;
                *seen.entry(seq).or_default() += 1;
                seen_in.entry(seq).or_default().push(table.clone());
            }
        }
    }
    for (path, lines) in &lake {
        if plan.delta && !path.starts_with("_dead_letter/") {
            continue;
        }
        for line in lines {
            if path.starts_with("_dead_letter/") {
                let key = (
                    line["partition"].as_i64().unwrap(),
                    line["offset"].as_i64().unwrap(),
                );
                *dead.entry(key).or_default() += 1;
            } else {
                landed += 1;
                let seq = line["seq"].as_u64().unwrap();
                *seen.entry(seq).or_default() += 1;
                seen_in.entry(seq).or_default().push(path.clone());
            }
        }
    }
    for (seq, paths) in seen_in.iter().filter(|(_, p)| p.len() > 1).take(5) {
        eprintln!("chaos: record {seq} landed in {paths:?}");
    }
    let duplicates =
        seen.values().map(|n| n - 1).sum::<u64>() + dead.values().map(|n| n - 1).sum::<u64>();
    let lost = good.keys().filter(|id| !seen.contains_key(id)).count() as u64;
    ChaosSummary {
        produced: records.len() as u64,
        poison: poison_count,
        landed,
        unique: seen.len() as u64,
        duplicates,
        lost,
        dead_lettered: dead.len() as u64,
        kills,
        seconds: started.elapsed().as_secs(),
    }
}

fn read_lake(azurite: &Azurite) -> Vec<(String, Vec<serde_json::Value>)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let lake = Lake::open(&Destination::Azure(AzureDestination {
            account: AZURITE_ACCOUNT.into(),
            container: CONTAINER.into(),
            root: "lake".into(),
            endpoint: azurite.endpoint.clone(),
            auth: AzureAuth::SharedKey(Secret::new(AZURITE_KEY)),
        }))
        .await
        .unwrap();
        let mut out = Vec::new();
        for f in lake.list("").await.unwrap() {
            let body = lake.read(&f.path).await.unwrap();
            // Parquet data files and table logs are read by the table reader.
            let lines = if f.path.ends_with(".json") || f.path.ends_with(".json.gz") {
                parse_ndjson(&body, f.path.ends_with(".gz"))
            } else {
                Vec::new()
            };
            out.push((f.path.clone(), lines));
        }
        out
    })
}

/// Every table in the lake (a directory with a `_delta_log/`) and the `seq` of each of its
/// rows, duplicates kept.
fn read_tables(
    azurite: &Azurite,
    lake: &[(String, Vec<serde_json::Value>)],
) -> Vec<(String, Vec<u64>)> {
    let roots: std::collections::BTreeSet<String> = lake
        .iter()
        .filter_map(|(path, _)| {
            path.split_once("/_delta_log/")
                .map(|(root, _)| root.to_string())
        })
        .collect();
    let urls: Vec<String> = roots
        .iter()
        .map(|r| format!("az://{CONTAINER}/lake/{r}"))
        .collect();
    let options = [
        format!("account_name={AZURITE_ACCOUNT}"),
        format!("account_key={AZURITE_KEY}"),
        format!("endpoint={}", azurite.endpoint),
        "allow_http=true".to_string(),
    ];
    let read = sluice_testkit::lake_files::read_delta_table_ids(&urls, &options, "seq");
    urls.iter()
        .map(|u| {
            let ids = read[u]["ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap())
                .collect();
            (u.clone(), ids)
        })
        .collect()
}
