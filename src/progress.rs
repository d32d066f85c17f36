//! Per-host progress lines (indicatif) on stderr; hidden when stderr is not a terminal or
//! output is JSON, so scripts see only the result.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

pub struct HostProgress {
    multi: MultiProgress,
    style: ProgressStyle,
}

impl HostProgress {
    pub fn new(json: bool) -> Self {
        let target = if json || !std::io::stderr().is_terminal() {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        };
        let style = ProgressStyle::with_template("{spinner} {prefix:<12} {wide_msg} {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        HostProgress {
            multi: MultiProgress::with_draw_target(target),
            style,
        }
    }

    /// A spinner line for one host.
    pub fn host(&self, name: &str, msg: &str) -> ProgressBar {
        let bar = self.multi.add(ProgressBar::new_spinner());
        bar.set_style(self.style.clone());
        bar.set_prefix(name.to_string());
        bar.set_message(msg.to_string());
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    }

    /// Print a line above the progress area without tearing it.
    pub fn println(&self, line: &str) {
        if self.multi.is_hidden() {
            eprintln!("{line}");
        } else {
            let _ = self.multi.println(line);
        }
    }
}
