//! `floorhand label ...`: the label tools for integrators. Reads files, then hands the
//! pure [`crate::label`] module its data.

use std::path::{Path, PathBuf};

use floorhand_protocol::Envelope;
use floorhand_protocol::oms::{Down, DownMsg, PackOrder};

use crate::label::{self, Dpi, LabelData, LabelError, Sscc, SsccError, Template, TemplateError};

/// `floorhand label` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum LabelCommand {
    /// Print the ZPL of a carton's shipping label.
    Render(RenderArgs),
}

/// Options of `floorhand label render`.
#[derive(Debug, clap::Args)]
pub struct RenderArgs {
    /// The order as JSON: a PackOrder, or a down envelope holding one (protocol/README.md).
    pub order: PathBuf,
    /// Printer resolution: 203 or 300.
    #[arg(long, default_value = "203", value_parser = parse_dpi)]
    pub dpi: Dpi,
    /// Carton number within the order.
    #[arg(long, default_value_t = 1)]
    pub carton: u16,
    /// Cartons in the order, if known.
    #[arg(long)]
    pub of: Option<u16>,
    /// Carton weight in grams [default: the order's unit weights times quantities].
    #[arg(long)]
    pub weight_g: Option<u32>,
    /// Serial counter value for the SSCC.
    #[arg(long, default_value_t = 1)]
    pub sscc_serial: u64,
    /// The site's GS1 company prefix (the default is GS1's example prefix).
    #[arg(long, default_value = "4012345")]
    pub company_prefix: String,
    /// SSCC extension digit.
    #[arg(long, default_value_t = 3)]
    pub extension: u8,
    /// A label template file with `{{placeholders}}` instead of the built-in label.
    #[arg(long)]
    pub template: Option<PathBuf>,
}

/// Why `floorhand label` failed.
#[derive(Debug, thiserror::Error)]
pub enum LabelCliError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The order file is not a PackOrder.
    #[error(
        "{path} is not a PackOrder in JSON (nor a down envelope holding one): {source}; see protocol/README.md for the format"
    )]
    Order {
        /// The file.
        path: PathBuf,
        /// The parser's complaint about the bare PackOrder form.
        source: serde_json::Error,
    },
    /// The template file is invalid.
    #[error("template {path}: {source}")]
    Template {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        source: TemplateError,
    },
    /// The SSCC could not be built.
    #[error(transparent)]
    Sscc(#[from] SsccError),
    /// The label could not be made.
    #[error(transparent)]
    Label(#[from] LabelError),
}

fn parse_dpi(s: &str) -> Result<Dpi, String> {
    s.parse()
        .ok()
        .and_then(Dpi::from_number)
        .ok_or_else(|| format!("{s:?} is not a supported resolution: use 203 or 300"))
}

fn read(path: &Path) -> Result<String, LabelCliError> {
    std::fs::read_to_string(path).map_err(|source| LabelCliError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Reads a PackOrder from JSON, bare or inside a down envelope.
pub fn parse_order(path: &Path, text: &str) -> Result<PackOrder, LabelCliError> {
    match serde_json::from_str::<PackOrder>(text) {
        Ok(order) => Ok(order),
        Err(source) => match serde_json::from_str::<Envelope<DownMsg>>(text) {
            Ok(Envelope {
                body:
                    DownMsg {
                        body: Down::PackOrder(order),
                        ..
                    },
                ..
            }) => Ok(*order),
            _ => Err(LabelCliError::Order {
                path: path.to_owned(),
                source,
            }),
        },
    }
}

/// Renders the label `args` describe.
pub fn render(args: &RenderArgs) -> Result<Vec<u8>, LabelCliError> {
    let order = parse_order(&args.order, &read(&args.order)?)?;
    let dpi = args.dpi;
    let template = match &args.template {
        Some(path) => Template::parse(&read(path)?).map_err(|source| LabelCliError::Template {
            path: path.clone(),
            source,
        })?,
        None => label::builtin(dpi),
    };
    let sscc = Sscc::build(args.extension, &args.company_prefix, args.sscc_serial)?;
    let weight_g = args.weight_g.unwrap_or_else(|| {
        order
            .lines
            .iter()
            .map(|l| l.unit_weight_g.saturating_mul(l.qty))
            .fold(0u32, u32::saturating_add)
    });
    let data = LabelData {
        order: (&order).into(),
        carton_no: args.carton,
        carton_count: args.of,
        weight_g,
        sscc: &sscc,
    };
    Ok(label::render(&template, &data)?)
}
