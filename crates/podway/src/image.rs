//! `podway image …`.
use anyhow::Context;

use crate::cli::ImageCommand;

/// Runs an image command.
pub fn run(command: ImageCommand) -> anyhow::Result<()> {
    match command {
        ImageCommand::Import(args) => {
            let store =
                podway_runtime::images::open_store(&args.data.data_dir).with_context(|| {
                    format!(
                        "cannot open the image store in {}",
                        args.data.data_dir.display()
                    )
                })?;
            let image = store
                .import_archive(&args.file, args.name.as_deref())
                .with_context(|| format!("cannot import {}", args.file.display()))?;
            for name in &image.repo_tags {
                println!("imported {name}");
            }
            println!("id {}", image.id);
            Ok(())
        }
        ImageCommand::List(data) => {
            let store = podway_runtime::images::open_store(&data.data_dir).with_context(|| {
                format!("cannot open the image store in {}", data.data_dir.display())
            })?;
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
