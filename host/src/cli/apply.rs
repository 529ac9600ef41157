//! `tocsin apply -f FILE`: config as code. The file (YAML, TOML or JSON)
//! lists the checks that should exist; the server computes the difference
//! and applies it in one transaction.

use std::path::PathBuf;

use clap::Args;
use reqwest::Method;

use super::{CliError, Client, Output};
use crate::api::{Document, Plan};

#[derive(Args)]
pub struct ApplyArgs {
    /// The file: `.yaml`/`.yml`, `.toml` or `.json`.
    #[arg(short = 'f', long = "file")]
    file: PathBuf,
    /// Show what would change, change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Also delete checks the file does not list.
    #[arg(long)]
    prune: bool,
}

pub fn read_document(path: &PathBuf) -> Result<Document, CliError> {
    let text = std::fs::read_to_string(path).map_err(|e| CliError::Usage(format!("{}: {e}", path.display())))?;
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    let parsed = match ext.as_str() {
        "toml" => toml::from_str(&text).map_err(|e| e.to_string()),
        "json" => serde_json::from_str(&text).map_err(|e| e.to_string()),
        _ => serde_yaml_ng::from_str(&text).map_err(|e| e.to_string()),
    };
    parsed.map_err(|e| CliError::Usage(format!("{}: {e}", path.display())))
}

pub async fn run(client: &Client, out: Output, args: ApplyArgs) -> Result<(), CliError> {
    let document = read_document(&args.file)?;
    let path = format!("/api/v1/apply?dry_run={}&prune={}", args.dry_run, args.prune);
    let plan: Plan = client.send(Method::POST, &path, &document).await?;
    if out == Output::Json {
        println!("{}", serde_json::to_string_pretty(&plan).unwrap_or_default());
        return Ok(());
    }
    for name in &plan.created {
        println!("+ create {name}");
    }
    for update in &plan.updated {
        println!("~ update {}", update.name);
        for change in &update.changes {
            println!("    {}: {} -> {}", change.field, change.before, change.after);
        }
    }
    for name in &plan.deleted {
        println!("- delete {name}");
    }
    if !plan.unchanged.is_empty() {
        println!("= {} unchanged", plan.unchanged.len());
    }
    let counts =
        format!("{} to create, {} to update, {} to delete", plan.created.len(), plan.updated.len(), plan.deleted.len());
    if plan.applied {
        println!("Applied: {}.", counts.replace(" to ", " "));
    } else if args.dry_run {
        println!("Dry run: {counts}; nothing changed.");
    } else {
        println!("Nothing to change.");
    }
    Ok(())
}
