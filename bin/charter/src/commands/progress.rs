//! Progress bars on stderr, shown only when stderr is a terminal and `--quiet` is not given.

use std::cell::RefCell;
use std::io::{IsTerminal, Read};

use charter_image::{Image, LayerMeasurement, MeasureObserver};
use charter_policygen::Observer;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A byte-count progress bar (or nothing).
pub struct ByteProgress {
    bar: Option<ProgressBar>,
}

impl ByteProgress {
    /// A bar over `total` bytes (a spinner when unknown).
    pub fn new(total: Option<u64>, label: &str, quiet: bool) -> Self {
        if quiet || !std::io::stderr().is_terminal() {
            return Self { bar: None };
        }
        let bar = match total {
            Some(t) => ProgressBar::with_draw_target(Some(t), ProgressDrawTarget::stderr()),
            None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
        };
        let template = if total.is_some() {
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}"
        } else {
            "{msg} {spinner} {bytes} {bytes_per_sec}"
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(label.to_owned());
        Self { bar: Some(bar) }
    }

    /// A spinner with a message (or nothing), for steps of unknown length.
    pub fn spinner(label: &str, quiet: bool) -> Self {
        if quiet || !std::io::stderr().is_terminal() {
            return Self { bar: None };
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} {elapsed}") {
            bar.set_style(style);
        }
        bar.set_message(label.to_owned());
        bar.enable_steady_tick(std::time::Duration::from_millis(100));
        Self { bar: Some(bar) }
    }

    /// Wraps a reader so reads advance the bar.
    pub fn wrap<'a>(&self, r: Box<dyn Read + 'a>) -> Box<dyn Read + 'a> {
        match &self.bar {
            Some(bar) => Box::new(bar.wrap_read(r)),
            None => r,
        }
    }

    /// Sets the position.
    pub fn set(&self, pos: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(pos);
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// One byte bar per layer being measured (none for cached layers). Under `policy generate`
/// the bars name the image and whether its layers are pulled from a registry (the bar then
/// counts downloaded bytes) or read locally; resolving an image shows a spinner.
pub struct LayerBars {
    quiet: bool,
    current: RefCell<Option<ByteProgress>>,
    /// `(verb, image, layer count)` of the image being measured.
    image: RefCell<Option<(&'static str, String, usize)>>,
}

impl LayerBars {
    /// Bars on stderr unless `quiet`.
    pub fn new(quiet: bool) -> Self {
        Self {
            quiet,
            current: RefCell::new(None),
            image: RefCell::new(None),
        }
    }

    fn finish_current(&self) {
        if let Some(bar) = self.current.borrow_mut().take() {
            bar.finish();
        }
    }
}

impl MeasureObserver for LayerBars {
    fn layer_started(&self, index: usize, blob_size: Option<u64>, cached: bool) {
        self.finish_current();
        if !cached {
            let label = match &*self.image.borrow() {
                Some((verb, image, count)) => {
                    format!("{verb} {image} layer {}/{count}", index.saturating_add(1))
                }
                None => format!("layer {index}"),
            };
            *self.current.borrow_mut() = Some(ByteProgress::new(blob_size, &label, self.quiet));
        }
    }
    fn progress(&self, _index: usize, blob_bytes: u64) {
        if let Some(bar) = &*self.current.borrow() {
            bar.set(blob_bytes);
        }
    }
    fn layer_finished(&self, _m: &LayerMeasurement) {
        self.finish_current();
    }
}

impl Observer for LayerBars {
    fn image_opening(&self, reference: &str) {
        self.finish_current();
        *self.current.borrow_mut() = Some(ByteProgress::spinner(
            &format!("resolving {reference}"),
            self.quiet,
        ));
    }
    fn image_opened(&self, reference: &str, image: &Image) {
        self.finish_current();
        let verb = if image.source.starts_with("docker://") {
            "pull+hash"
        } else {
            "hash"
        };
        *self.image.borrow_mut() = Some((verb, reference.to_owned(), image.layers.len()));
    }
}
