//! What a deploy shows on a terminal: the build's spinner (step, elapsed
//! time, the tool's latest line) and the upload's bar, which moves as hyper
//! takes each 64 KiB frame of the component. Hidden when stderr is not a
//! terminal, and the bar with `--json`.

use std::convert::Infallible;
use std::io::IsTerminal;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Frames of an upload: the progress bar moves once per frame.
const UPLOAD_FRAME_BYTES: usize = 64 << 10;

/// A component being uploaded: 64 KiB frames, each advancing `bar` by its
/// length as hyper polls it; an exact size, so it goes with a
/// `Content-Length`.
#[derive(Debug)]
pub(crate) struct Upload {
    data: Bytes,
    sent: usize,
    bar: ProgressBar,
}

impl Upload {
    pub(crate) fn new(data: Bytes, bar: ProgressBar) -> Self {
        Self { data, sent: 0, bar }
    }
}

impl Body for Upload {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let len = self.data.len();
        if self.sent >= len {
            return Poll::Ready(None);
        }
        let end = (self.sent + UPLOAD_FRAME_BYTES).min(len);
        let frame = self.data.slice(self.sent..end);
        self.sent = end;
        self.bar.inc(frame.len() as u64);
        if end == len {
            // The bytes are out; what is left is the server's compile.
            self.bar.set_style(
                ProgressStyle::with_template(
                    "{spinner:.cyan} {prefix:.bold} {total_bytes} sent, the server is compiling it [{elapsed}]",
                )
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
        }
        Poll::Ready(Some(Ok(Frame::data(frame))))
    }

    fn is_end_stream(&self) -> bool {
        self.sent >= self.data.len()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact((self.data.len() - self.sent) as u64)
    }
}

/// Bytes sent of the upload, on a terminal and without `--json`.
pub(crate) fn upload_bar(what: &str, len: u64, json: bool) -> ProgressBar {
    if json || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix:.bold} [{bar:30.cyan/dim}] {bytes}/{total_bytes} {binary_bytes_per_sec} {msg:.dim}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_prefix(format!("uploading {what}"));
    bar.enable_steady_tick(Duration::from_millis(100));
    bar
}

/// The build's spinner, shared with `nimbus build`.
pub(crate) use crate::build::Spinner;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_upload_is_sent_in_frames_that_move_the_bar() {
        let bar = ProgressBar::hidden();
        bar.set_length(200_000);
        let mut upload = Upload::new(Bytes::from(vec![7u8; 200_000]), bar.clone());
        assert_eq!(upload.size_hint().exact(), Some(200_000));
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut sizes = Vec::new();
        while let Poll::Ready(Some(Ok(frame))) = Pin::new(&mut upload).poll_frame(&mut cx) {
            sizes.push(frame.into_data().map(|d| d.len()).unwrap_or_default());
            assert_eq!(bar.position(), sizes.iter().sum::<usize>() as u64);
        }
        assert_eq!(sizes, [65_536, 65_536, 65_536, 3_392]);
        assert!(upload.is_end_stream());
    }
}
