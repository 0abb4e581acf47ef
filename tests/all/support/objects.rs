//! Objects written and read the way the storage API and the guests do, and
//! images for the thumbnail pipeline.

use std::io::Cursor;

use image::{DynamicImage, ImageFormat, RgbImage};
use nimbus_core::Host;
use nimbus_core::nimbus_blob::{BlobBackend, BlobError, WriteOptions};
use nimbus_triggers::ObjectTrigger;

/// Writes an object the way the storage API does: an event is persisted
/// with it when the container is watched.
pub fn upload(host: &Host, tenant: &str, container: &str, key: &str, data: &[u8], ct: &str) {
    let blob = host.blob_store();
    let mut spool = blob.spool(tenant).expect("spool");
    spool.write(data).expect("write");
    let opts = WriteOptions {
        quota: None,
        event_depth: host.is_watched(tenant, container).then_some(0),
    };
    blob.commit(spool, container, key, Some(ct.into()), opts)
        .expect("commit");
}

/// The whole object, read natively in 64 KiB chunks.
pub fn read_object(
    blob: &dyn BlobBackend,
    tenant: &str,
    container: &str,
    key: &str,
) -> Result<Vec<u8>, BlobError> {
    let mut r = blob.open(tenant, container, key, 0, u64::MAX)?;
    let mut out = Vec::new();
    loop {
        let chunk = r.read(64 << 10)?;
        if chunk.is_empty() {
            return Ok(out);
        }
        out.extend(chunk);
    }
}

/// Runs `function` for every object written to `container`.
pub fn object_trigger(tenant: &str, function: &str, container: &str) -> ObjectTrigger {
    ObjectTrigger {
        tenant: tenant.into(),
        function: function.into(),
        container: container.into(),
        prefix: String::new(),
        suffix: String::new(),
    }
}

/// A `w`×`h` image (not all one colour), encoded as `format`.
pub fn test_image(w: u32, h: u32, format: ImageFormat) -> Vec<u8> {
    let img = DynamicImage::ImageRgb8(RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, ((x + y) % 256) as u8])
    }));
    let mut buf = Vec::new();
    img.write_to(&mut Cursor::new(&mut buf), format)
        .expect("encode test image");
    buf
}
