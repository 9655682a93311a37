//! Progress bars on stderr, shown only when stderr is a terminal.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A byte-counting progress bar for `msg`, or a hidden one when `enabled` is false or stderr
/// is not a terminal (so scripts and logs never see control sequences). A `total` of 0 means
/// the length is not known yet: the bar counts bytes and rate until [`ProgressBar::set_length`]
/// gives it one.
pub fn bytes_bar(enabled: bool, total: u64, msg: &str) -> ProgressBar {
    if !enabled || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    let template = if total == 0 {
        "{msg:>9} {spinner} {bytes} {bytes_per_sec}"
    } else {
        "{msg:>9} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}"
    };
    let style = ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    bar.set_style(style);
    bar.set_message(msg.to_string());
    bar
}
