//! How host verbs show their actions: an indicatif spinner per action on a terminal, one plain
//! line per finished action otherwise (CI logs, pipes). Each line says ✓ or ✗ and the time.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use kubelab_cluster::create::{Progress, Step};

pub struct Steps {
    tty: bool,
}

impl Steps {
    pub fn new() -> Steps {
        Steps {
            tty: std::io::stderr().is_terminal(),
        }
    }
}

struct Running {
    title: String,
    started: Instant,
    bar: Option<ProgressBar>,
}

fn seconds(d: Duration) -> String {
    format!("{:.2}s", d.as_secs_f64())
}

impl Progress for Steps {
    fn begin(&self, title: &str) -> Box<dyn Step> {
        let bar = self.tty.then(|| {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template(" {spinner} {msg} {elapsed:.dim}")
                    .expect("valid template"),
            );
            bar.set_message(title.to_owned());
            bar.enable_steady_tick(Duration::from_millis(80));
            bar
        });
        Box::new(Running {
            title: title.to_owned(),
            started: Instant::now(),
            bar,
        })
    }

    fn note(&self, line: &str) {
        eprintln!(" {line}");
    }
}

impl Running {
    fn finish(self, line: String) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
        eprintln!("{line}");
    }
}

impl Step for Running {
    fn succeed(self: Box<Self>, detail: &str) {
        let detail = if detail.is_empty() {
            String::new()
        } else {
            format!(" ({detail})")
        };
        let line = format!(
            " ✓ {}{detail} {}",
            self.title,
            seconds(self.started.elapsed())
        );
        self.finish(line);
    }

    fn fail(self: Box<Self>, error: &kubelab_cluster::Error) {
        let line = format!(
            " ✗ {} {}: {error}",
            self.title,
            seconds(self.started.elapsed())
        );
        self.finish(line);
    }
}
