//! The `sluice` command: wires configuration, pipeline and telemetry; holds no logic of its own.

mod audit;
mod demo;
mod tables;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use sluice_pipeline::Shutdown;

#[derive(Parser)]
#[command(
    name = "sluice",
    version,
    about = "Export Kafka / Event Hubs event streams into a data lake"
)]
struct Cli {
    /// Log one JSON object per line instead of human-readable text.
    #[arg(long, global = true)]
    json_logs: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Consume, route, window and land files until SIGINT/SIGTERM, then flush, commit and exit.
    Run {
        pipeline: PathBuf,
        /// Where to serve /metrics, /healthz and /readyz.
        #[arg(long, env = "SLUICE_LISTEN", default_value = "0.0.0.0:9898")]
        listen: SocketAddr,
        /// A backfill or batch run: export each owned partition up to where it ended when
        /// assigned, land, commit, print a summary and exit (0 only if everything landed).
        #[arg(long)]
        until_caught_up: bool,
        /// With --until-caught-up: give up (exit 1, nothing unlanded committed) once the lake
        /// has been down this long.
        #[arg(long, default_value_t = 300)]
        lake_patience_secs: u64,
    },
    /// Produce sample device signals to a topic (for trying Sluice out, e.g. in docker compose).
    Sample {
        #[arg(long, default_value = "127.0.0.1:9092")]
        bootstrap_servers: String,
        #[arg(long, default_value = "device-signals")]
        topic: String,
        #[arg(long, default_value_t = 4)]
        partitions: i32,
        /// Records per second.
        #[arg(long, default_value_t = 200)]
        rate: usize,
        /// Stop after this many records; 0 produces until interrupted.
        #[arg(long, default_value_t = 0)]
        total: usize,
    },
    /// Check pipeline files; print each problem with its field and fix.
    Validate {
        #[arg(required = true)]
        pipelines: Vec<PathBuf>,
        /// Check everything but the secrets' presence (for CI without the secrets): each
        /// secret's environment variable is named, not read.
        #[arg(long)]
        no_env: bool,
    },
    /// Print a landed file's format, compression, schema, row count and first rows; or, for a
    /// Delta table's directory (with --pipeline), its version, schema, partitions, row count
    /// and the marks (next offset, claim epoch) of each Kafka partition.
    Inspect {
        /// A local file, or with --pipeline a path inside that pipeline's lake.
        file: String,
        /// Read FILE from this pipeline's destination (Azure, local, ...) instead of disk.
        #[arg(long)]
        pipeline: Option<PathBuf>,
        /// How many rows to show.
        #[arg(long, default_value_t = 5)]
        rows: usize,
    },
    /// Delta tables: bin-pack the small files of closed windows into files of about
    /// --target-mb in one commit per table, then delete the files compaction replaced more
    /// than --retention-hours ago (readers of older versions need them until then).
    Compact {
        pipeline: PathBuf,
        #[arg(long, default_value_t = 128)]
        target_mb: u64,
        #[arg(long, default_value_t = 168)]
        retention_hours: i64,
    },
    /// Re-read the source topics (never committing) and the lake, and report per partition
    /// the records found once, missing, or in more than one file, and files no record
    /// explains. Exit 0 when clean, 1 when not, 2 on bad input or an unreachable service.
    Audit {
        pipeline: PathBuf,
        /// Start here instead of each partition's first offset: OFFSET, TIME (RFC 3339),
        /// PARTITION=OFFSET|TIME or TOPIC/PARTITION=OFFSET|TIME; repeatable.
        #[arg(long)]
        from: Vec<sluice_audit::Bound>,
        /// Stop before here instead of each partition's end (same forms as --from).
        #[arg(long)]
        to: Vec<sluice_audit::Bound>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Delete files whose every record is also in a file that landed before them.
        #[arg(long)]
        repair: bool,
    },
    /// Run the shipped demo pipeline against an embedded broker into a local lake.
    Demo {
        /// Where the lake goes.
        #[arg(long, default_value = "./lake")]
        lake: PathBuf,
        /// How many sample signals to produce.
        #[arg(long, default_value_t = 20_000)]
        records: usize,
    },
}

/// glibc gives each thread that allocates its own arena (up to 8 per core); with encodes and
/// file I/O on many blocking threads, freed memory stayed spread over them and peak RSS grew
/// with the length of a run: 245 MB after 1 M records and 499 MB after 10 M (parquet-zstd,
/// 32 MiB budget), against 168 MB and 219 MB with two arenas.
///
/// And a fixed mmap threshold: glibc raises it to the size of each large block freed (up to
/// 32 MiB), after which buffers and files came from the heap, whose holes stay resident, and
/// a growing buffer was copied at each doubling. Mapped blocks are returned when freed and
/// grow in place (mremap): peak RSS of a 1 M-record drain 450 → 310 MB (ndjson and parquet,
/// default budget), CPU unchanged.
fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only tunes the allocator; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

/// Returns freed heap memory to the system once a second. Blocks below the mmap threshold
/// (buffers' 64 KiB LZ4 blocks, parsed chunks) come and go in the heap, and the holes they
/// leave stayed resident, so peak RSS grew with the length of a drain (BENCHMARKS.md).
fn trim_malloc_periodically() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    std::thread::Builder::new()
        .name("malloc-trim".into())
        .spawn(|| loop {
            std::thread::sleep(std::time::Duration::from_secs(1));
            // SAFETY: malloc_trim only releases free memory; safe from any thread.
            unsafe {
                libc::malloc_trim(0);
            }
        })
        .expect("start the malloc-trim thread");
}

fn main() -> ExitCode {
    tune_malloc();
    trim_malloc_periodically();
    let cli = Cli::parse();
    // The demo prints its own summary; per-file logs would bury it.
    let default_level = if matches!(cli.command, Command::Demo { .. }) {
        "warn"
    } else {
        "info"
    };
    sluice_telemetry::init_logging(cli.json_logs, default_level);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // Encoders recurse per nesting level (arrow, parquet, apache-avro): headroom far past
        // what `sluice_fold::MAX_NESTING` needs, so no record can overflow a stack.
        .thread_stack_size(8 << 20)
        .build()
        .expect("tokio runtime");
    match cli.command {
        Command::Validate { pipelines, no_env } => validate(&pipelines, no_env),
        Command::Compact {
            pipeline,
            target_mb,
            retention_hours,
        } => rt.block_on(tables::compact(&pipeline, target_mb, retention_hours)),
        Command::Audit {
            pipeline,
            from,
            to,
            json,
            repair,
        } => {
            let options = sluice_audit::AuditOptions {
                from,
                to,
                repair,
                progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
            };
            rt.block_on(audit::run(&pipeline, &options, json))
        }
        Command::Inspect {
            file,
            pipeline,
            rows,
        } => rt.block_on(inspect(&file, pipeline.as_deref(), rows)),
        Command::Run {
            pipeline,
            listen,
            until_caught_up,
            lake_patience_secs,
        } => {
            let mode = if until_caught_up {
                sluice_pipeline::RunMode::UntilCaughtUp {
                    lake_patience: std::time::Duration::from_secs(lake_patience_secs),
                }
            } else {
                sluice_pipeline::RunMode::Continuous
            };
            rt.block_on(run(&pipeline, listen, mode))
        }
        Command::Sample {
            bootstrap_servers,
            topic,
            partitions,
            rate,
            total,
        } => match demo::sample(&bootstrap_servers, &topic, partitions, rate, total) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("sample failed: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Demo { lake, records } => match rt.block_on(demo::run(&lake, records)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("demo failed: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

fn validate(paths: &[PathBuf], no_env: bool) -> ExitCode {
    let mut ok = true;
    for path in paths {
        let loaded = if no_env {
            sluice_config::load(path, &|_| None)
        } else {
            sluice_config::load(path, &sluice_config::process_env)
        };
        let errors = match loaded {
            Ok(p) => {
                println!("{}: ok (pipeline '{}')", path.display(), p.name);
                continue;
            }
            Err(errors) => errors.0,
        };
        // Without the environment, a secret that is not set is expected: named, not a fault.
        let (unset, problems): (Vec<_>, Vec<_>) = errors
            .into_iter()
            .partition(|e| no_env && e.unset_env.is_some());
        for e in &problems {
            eprintln!("{}: {e}", path.display());
        }
        if problems.is_empty() {
            let vars: Vec<_> = unset
                .iter()
                .filter_map(|e| e.unset_env.as_deref())
                .collect();
            println!(
                "{}: ok (secrets not checked: {})",
                path.display(),
                vars.join(", ")
            );
        } else {
            ok = false;
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    }
}

async fn inspect(file: &str, pipeline: Option<&std::path::Path>, rows: usize) -> ExitCode {
    let bytes = match pipeline {
        None => std::fs::read(file).map_err(|e| format!("cannot read {file}: {e}")),
        Some(path) => match load_pipeline(path) {
            None => return ExitCode::from(2),
            Some(p) => match sluice_lake::Lake::open(&p.sink.destination).await {
                Ok(lake) => {
                    if let Some(table) = tables::inspect(&lake, &p, file).await {
                        return match table {
                            Ok(summary) => {
                                print!("{summary}");
                                ExitCode::SUCCESS
                            }
                            Err(e) => {
                                eprintln!("sluice inspect: {e}");
                                ExitCode::FAILURE
                            }
                        };
                    }
                    lake.read(file)
                        .await
                        .map_err(|e| format!("cannot read {file} from {}: {e}", lake.describe()))
                }
                Err(e) => Err(format!("cannot open the lake: {e}")),
            },
        },
    };
    let report = bytes.and_then(|b| {
        sluice_format::inspect::inspect(&b, file, rows).map_err(|e| format!("{file}: {e}"))
    });
    match report {
        Ok(r) => {
            print!("{r}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("sluice inspect: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The pipeline file at `path` with its secrets from the environment, or `None` after
/// printing every problem (field and fix) on stderr.
pub(crate) fn load_pipeline(path: &std::path::Path) -> Option<sluice_config::ValidatedPipeline> {
    match sluice_config::load(path, &sluice_config::process_env) {
        Ok(p) => Some(p),
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("{}: {e}", path.display());
            }
            None
        }
    }
}

async fn run(
    path: &std::path::Path,
    listen: SocketAddr,
    mode: sluice_pipeline::RunMode,
) -> ExitCode {
    let Some(pipeline) = load_pipeline(path) else {
        return ExitCode::from(2);
    };
    let shutdown = Shutdown::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    let metrics = sluice_telemetry::Metrics::new(&pipeline.name);
    if let Err(e) = sluice_telemetry::serve(listen, metrics.clone()).await {
        eprintln!(
            "sluice: cannot serve metrics on {listen}: {e}. Fix: pass --listen with a free address"
        );
        return ExitCode::from(2);
    }
    match sluice_pipeline::run_with(&pipeline, metrics, shutdown, mode).await {
        Ok(summary) => {
            tracing::info!(?summary, "clean shutdown");
            match summary.caught_up {
                None => ExitCode::SUCCESS,
                Some(caught_up) => {
                    print_summary(&summary);
                    if caught_up {
                        ExitCode::SUCCESS
                    } else {
                        eprintln!("sluice: stopped before every owned partition was caught up");
                        ExitCode::from(3)
                    }
                }
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "pipeline stopped");
            eprintln!("sluice: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The end of a `--until-caught-up` run, as JSON on stdout: totals, per signal, and each
/// partition's committed offset against its end.
fn print_summary(summary: &sluice_pipeline::RunSummary) {
    let signals: serde_json::Map<String, serde_json::Value> = summary
        .signals
        .iter()
        .map(|(s, t)| {
            let totals =
                serde_json::json!({"records": t.records, "files": t.files, "bytes": t.bytes});
            (s.clone(), totals)
        })
        .collect();
    let partitions: Vec<_> = summary
        .partitions
        .iter()
        .map(|(tp, p)| {
            serde_json::json!({"topic": tp.topic, "partition": tp.partition, "committed": p.reached, "end": p.end})
        })
        .collect();
    let out = serde_json::json!({
        "caught_up": summary.caught_up,
        "records_consumed": summary.records_consumed,
        "records_landed": summary.records_landed,
        "records_skipped": summary.records_skipped,
        "records_dead_lettered": summary.records_dead_lettered,
        "files_landed": summary.files_landed,
        "signals": signals,
        "partitions": partitions,
    });
    println!("{}", serde_json::to_string_pretty(&out).expect("JSON"));
}

async fn cancel_on_signal(shutdown: Shutdown) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: landing buffers, committing, leaving"),
        _ = int.recv() => tracing::info!("SIGINT: landing buffers, committing, leaving"),
    }
    shutdown.cancel();
}
