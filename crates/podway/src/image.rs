//! `podway image …`.
use std::collections::HashMap;
use std::io::IsTerminal as _;
use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use podway_runtime::images::ImageStore;
use podway_runtime::import::ImportEvent;
use podway_runtime::pull::{PullEvent, PullOptions, PullProgress, RegistryCredentials};

use crate::cli::{ImageCommand, ImagePullArgs};

fn open(data_dir: &Path) -> anyhow::Result<ImageStore> {
    podway_runtime::images::open_store(data_dir)
        .with_context(|| format!("cannot open the image store in {}", data_dir.display()))
}

/// Runs an image command.
pub async fn run(command: ImageCommand) -> anyhow::Result<()> {
    match command {
        ImageCommand::Pull(args) => pull(args).await,
        ImageCommand::Rm(args) => {
            let store = open(&args.data.data_dir)?;
            for reference in &args.references {
                store
                    .remove(reference)
                    .with_context(|| format!("cannot remove image {reference}"))?;
                println!("removed {reference}");
            }
            Ok(())
        }
        ImageCommand::Prune(data) => {
            let pruned = open(&data.data_dir)?
                .prune()
                .context("cannot prune images")?;
            println!(
                "deleted {} blobs and {} layer snapshots",
                pruned.blobs, pruned.snapshots
            );
            Ok(())
        }
        ImageCommand::Import(args) => {
            let store = open(&args.data.data_dir)?;
            let bar = import_bar();
            let image = store
                .import_archive_reporting(&args.file, args.name.as_deref(), &|event| {
                    show_import(bar.as_ref(), event)
                })
                .with_context(|| format!("cannot import {}", args.file.display()))?;
            for name in &image.repo_tags {
                println!("imported {name}");
            }
            println!("id {}", image.id);
            Ok(())
        }
        ImageCommand::List(data) => {
            let store = open(&data.data_dir)?;
            println!("{:<50} {:<20} {:>10}", "IMAGE", "ID", "SIZE");
            for image in store.list()? {
                let short_id = image
                    .id
                    .trim_start_matches("sha256:")
                    .chars()
                    .take(12)
                    .collect::<String>();
                let names = if image.repo_tags.is_empty() {
                    vec!["<none>".to_owned()]
                } else {
                    image.repo_tags
                };
                for name in names {
                    println!("{name:<50} {short_id:<20} {:>10}", human_size(image.size));
                }
            }
            Ok(())
        }
    }
}

fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// A progress bar for an import, on a terminal only.
fn import_bar() -> Option<indicatif::ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_message("reading");
    Some(bar)
}

/// Moves the import bar (if any) along.
fn show_import(bar: Option<&indicatif::ProgressBar>, event: ImportEvent) {
    let Some(bar) = bar else { return };
    match event {
        ImportEvent::Read { done, total } => {
            bar.set_length(total);
            bar.set_position(done);
        }
        ImportEvent::Storing => {
            bar.finish_with_message("read");
            eprintln!("storing the image and unpacking its layers");
        }
    }
}

/// `podway image pull`.
async fn pull(args: ImagePullArgs) -> anyhow::Result<()> {
    let store = open(&args.data.data_dir)?;
    let progress = if std::io::stderr().is_terminal() {
        bars()
    } else {
        lines()
    };
    let options = PullOptions {
        insecure_registries: args.insecure_registries,
        concurrency: args.concurrency,
        progress: Some(progress),
    };
    let credentials = match &args.username {
        Some(username) => RegistryCredentials::Basic {
            username: username.clone(),
            password: password_from_stdin()?,
        },
        None => RegistryCredentials::Anonymous,
    };
    let image = podway_runtime::pull::pull_with_credentials(
        &store,
        &args.reference,
        &options,
        &credentials,
    )
    .await
    .with_context(|| format!("cannot pull {}", args.reference))?;
    for name in &image.repo_tags {
        println!("pulled {name}");
    }
    println!("id {}", image.id);
    Ok(())
}

/// The password of `--password-stdin`: stdin's first line, without its line end.
fn password_from_stdin() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .context("cannot read the password from stdin")?;
    let password = line.trim_end_matches(['\n', '\r']).to_owned();
    anyhow::ensure!(
        !password.is_empty(),
        "--password-stdin: stdin held no password"
    );
    Ok(password)
}

/// The first 12 hex digits of a digest.
fn short(digest: &str) -> &str {
    let hex = digest.trim_start_matches("sha256:");
    hex.get(..12).unwrap_or(hex)
}

/// Plain progress lines on stderr (not a terminal).
fn lines() -> PullProgress {
    Arc::new(|event: &PullEvent| match event {
        PullEvent::Resolved {
            manifest,
            blobs,
            total,
        } => eprintln!("manifest {manifest}: {blobs} blobs, {}", human_size(*total)),
        PullEvent::Cached { digest, size } => {
            eprintln!("{}: already present ({})", short(digest), human_size(*size));
        }
        PullEvent::Done { digest, size } => {
            eprintln!("{}: downloaded ({})", short(digest), human_size(*size));
        }
        PullEvent::Unpacking => eprintln!("unpacking layers"),
        PullEvent::Progress { .. } => {}
    })
}

/// One progress bar per blob on stderr (a terminal).
fn bars() -> PullProgress {
    let multi = indicatif::MultiProgress::new();
    let style = indicatif::ProgressStyle::with_template(
        "{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
    )
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
    .progress_chars("=> ");
    let bars: Mutex<HashMap<String, indicatif::ProgressBar>> = Mutex::new(HashMap::new());
    Arc::new(move |event: &PullEvent| {
        let mut bars = bars
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut bar = |digest: &str, size: u64| {
            bars.entry(digest.to_string())
                .or_insert_with(|| {
                    let bar = multi.add(indicatif::ProgressBar::new(size));
                    bar.set_style(style.clone());
                    bar.set_prefix(short(digest).to_string());
                    bar
                })
                .clone()
        };
        match event {
            PullEvent::Resolved {
                manifest, blobs, ..
            } => {
                let _ = multi.println(format!("manifest {manifest}: {blobs} blobs"));
            }
            PullEvent::Progress { digest, done, size } => bar(digest, *size).set_position(*done),
            PullEvent::Done { digest, size } | PullEvent::Cached { digest, size } => {
                let bar = bar(digest, *size);
                bar.set_position(*size);
                bar.finish();
            }
            PullEvent::Unpacking => {
                let _ = multi.println("unpacking layers");
            }
        }
    })
}
