//! Writing results to stdout without panicking when the reader goes away (`| head`): errors,
//! including a broken pipe, are returned to `main`, which exits quietly on the latter.

use std::io::Write;

/// Writes `text` and a newline to stdout.
pub fn line(text: impl std::fmt::Display) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}")?;
    out.flush()?;
    Ok(())
}
