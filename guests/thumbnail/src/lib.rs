//! Makes thumbnails of uploaded images: invoked with an object-created
//! event, it reads the new object, scales it to fit within 128×128 keeping
//! its aspect ratio (never enlarging it), and writes the result to the
//! container `thumbnails` under the same key: PNG if the key ends with
//! `.png` (any case), JPEG at quality 80 otherwise. The answer is the
//! thumbnail's size as `<w>x<h>` (`text/plain`).
//!
//! The event names the object in its extension attributes `container` and
//! `key` (also `size` and `etag`, unused here); the subject is the key too.
//! Its data, a JSON copy of the same facts, is not read.
//!
//! - An object outside the container `uploads` is answered `skipped`,
//!   without reading or writing anything (so thumbnails of thumbnails are
//!   never made).
//! - An object that is not a PNG or JPEG image is logged (`wasi:logging`,
//!   level error) and answered `invalid-input("not an image: ...")`; nothing
//!   is written.
//! - A `wasi:blobstore` error is `failed("<error>")`.

use std::io::Cursor;

use image::codecs::jpeg::JpegEncoder;
use image::imageops::FilterType;
use image::{DynamicImage, ImageFormat};
use nimbus_guest::blobstore::blobstore;
use nimbus_guest::blobstore::types::{IncomingValue, OutgoingValue};
use nimbus_guest::logging::{Level, log};
use nimbus_guest::streams::{InputStream, OutputStream, StreamError};
use nimbus_guest::{Event, Guest, HandlerError, Response};

/// The container whose objects get thumbnails.
const SOURCE: &str = "uploads";
/// Where the thumbnails go.
const DEST: &str = "thumbnails";
/// The box a thumbnail fits in.
const MAX_SIDE: u32 = 128;
const JPEG_QUALITY: u8 = 80;

struct Thumbnail;

fn failed(e: String) -> HandlerError {
    HandlerError::Failed(e)
}

fn stream(e: StreamError) -> HandlerError {
    match e {
        StreamError::Closed => HandlerError::Failed("stream: closed".into()),
        StreamError::LastOperationFailed(e) => {
            HandlerError::Failed(format!("stream: {}", e.to_debug_string()))
        }
    }
}

/// The whole object, read through `consume-async`'s input stream.
fn read(container: &str, key: &str) -> Result<Vec<u8>, HandlerError> {
    let c = blobstore::get_container(container).map_err(failed)?;
    let size = c.object_info(key).map_err(failed)?.size;
    if size == 0 {
        // `get-data` offsets are inclusive: an empty range has none.
        return Ok(Vec::new());
    }
    let value = c.get_data(key, 0, size - 1).map_err(failed)?;
    let input: InputStream = IncomingValue::incoming_value_consume_async(value).map_err(failed)?;
    let mut data = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    loop {
        match input.blocking_read(64 * 1024) {
            Ok(piece) => data.extend(piece),
            Err(StreamError::Closed) => return Ok(data),
            Err(e) => return Err(stream(e)),
        }
    }
}

/// Stores `data` as `container/key`: body through the output stream (within
/// `check-write`'s budget), then `write-data` and `finish`.
fn write(container: &str, key: &str, data: &[u8]) -> Result<(), HandlerError> {
    let c = blobstore::get_container(container).map_err(failed)?;
    let value = OutgoingValue::new_outgoing_value();
    let out: OutputStream = value
        .outgoing_value_write_body()
        .map_err(|()| failed("outgoing-value-write-body failed".into()))?;
    let mut rest = data;
    while !rest.is_empty() {
        let budget = out.check_write().map_err(stream)?;
        if budget == 0 {
            out.subscribe().block();
            continue;
        }
        let n = rest
            .len()
            .min(usize::try_from(budget).unwrap_or(usize::MAX));
        out.write(&rest[..n]).map_err(stream)?;
        rest = &rest[n..];
    }
    out.blocking_flush().map_err(stream)?;
    // The stream is a child of the value: it goes before `finish`.
    drop(out);
    c.write_data(key, &value).map_err(failed)?;
    OutgoingValue::finish(value).map_err(failed)
}

/// `image` scaled to fit within `MAX_SIDE`² (aspect kept, never enlarged).
fn shrink(image: DynamicImage) -> DynamicImage {
    if image.width() <= MAX_SIDE && image.height() <= MAX_SIDE {
        image
    } else {
        image.resize(MAX_SIDE, MAX_SIDE, FilterType::Triangle)
    }
}

fn encode(image: &DynamicImage, png: bool) -> Result<Vec<u8>, HandlerError> {
    let mut buf = Vec::new();
    let result = if png {
        image.write_to(&mut Cursor::new(&mut buf), ImageFormat::Png)
    } else {
        // JPEG has no alpha channel: flatten to RGB (or keep grey).
        let flat = match image {
            DynamicImage::ImageLuma8(_) => image.clone(),
            _ => DynamicImage::ImageRgb8(image.to_rgb8()),
        };
        JpegEncoder::new_with_quality(&mut buf, JPEG_QUALITY).encode_image(&flat)
    };
    result.map_err(|e| HandlerError::Failed(format!("encoding the thumbnail: {e}")))?;
    Ok(buf)
}

impl Guest for Thumbnail {
    fn handle(event: Event) -> Result<Response, HandlerError> {
        let container = event
            .attribute("container")
            .ok_or_else(|| HandlerError::InvalidInput("no `container` attribute".into()))?;
        let key = event
            .attribute("key")
            .or(event.subject.as_deref())
            .ok_or_else(|| HandlerError::InvalidInput("no `key` attribute".into()))?;
        let text = |s: String| Response {
            content_type: Some("text/plain".into()),
            data: s.into_bytes(),
        };
        if container != SOURCE {
            return Ok(text("skipped".into()));
        }
        let data = read(container, key)?;
        let image = match image::load_from_memory(&data) {
            Ok(image) => image,
            Err(e) => {
                let msg = format!("not an image: {container}/{key}: {e}");
                log(Level::Error, "thumbnail", &msg);
                return Err(HandlerError::InvalidInput(msg));
            }
        };
        let thumb = shrink(image);
        let png = key.to_ascii_lowercase().ends_with(".png");
        write(DEST, key, &encode(&thumb, png)?)?;
        Ok(text(format!("{}x{}", thumb.width(), thumb.height())))
    }
}

nimbus_guest::export!(Thumbnail);
