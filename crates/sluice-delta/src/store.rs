//! delta-rs reaches the lake through this `ObjectStore` over `sluice_lake::Lake`, so tables
//! use the very connection, credentials, redaction and write-if-absent primitive that
//! files use: one storage stack, not a second one with its own auth settings.

use std::fmt;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};
use object_store::path::Path;
use object_store::{
    CopyMode, CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload,
    ObjectMeta, ObjectStore, PutMode, PutMultipartOptions, PutOptions, PutPayload, PutResult,
    UploadPart,
};
use sluice_lake::{Lake, LakeError, LakeObject, Landed};

const STORE: &str = "sluice-lake";

/// The lake as an object store rooted at the lake's root.
#[derive(Clone, Debug)]
pub struct LakeStore {
    lake: Lake,
}

impl LakeStore {
    pub fn new(lake: Lake) -> Self {
        Self { lake }
    }
}

impl fmt::Display for LakeStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LakeStore({})", self.lake.describe())
    }
}

fn generic(e: LakeError) -> object_store::Error {
    object_store::Error::Generic {
        store: STORE,
        source: Box::new(e),
    }
}

fn not_found(path: &Path) -> object_store::Error {
    object_store::Error::NotFound {
        path: path.to_string(),
        source: "no such object".into(),
    }
}

fn meta(o: LakeObject) -> ObjectMeta {
    ObjectMeta {
        location: Path::from(o.path),
        last_modified: o.modified,
        size: o.size,
        e_tag: o.etag,
        version: None,
    }
}

/// A directory prefix as the lake lists it: `a/b/`, or `""` for the root.
fn dir(prefix: Option<&Path>) -> String {
    match prefix.map(Path::as_ref) {
        None | Some("") => String::new(),
        Some(p) => format!("{p}/"),
    }
}

impl LakeStore {
    async fn put_bytes(
        &self,
        location: &Path,
        body: Bytes,
        mode: &PutMode,
    ) -> object_store::Result<PutResult> {
        match mode {
            PutMode::Create => match self
                .lake
                .land(location.as_ref(), body)
                .await
                .map_err(generic)?
            {
                Landed::Written => {}
                Landed::AlreadyPresent => {
                    return Err(object_store::Error::AlreadyExists {
                        path: location.to_string(),
                        source: "the object exists (written only if absent)".into(),
                    })
                }
            },
            PutMode::Overwrite => self
                .lake
                .overwrite(location.as_ref(), body)
                .await
                .map_err(generic)?,
            PutMode::Update(_) => {
                return Err(object_store::Error::NotImplemented {
                    operation: "put with an update precondition".into(),
                    implementer: STORE.into(),
                })
            }
        }
        Ok(PutResult {
            e_tag: None,
            version: None,
        })
    }
}

#[async_trait]
impl ObjectStore for LakeStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.put_bytes(location, Bytes::from(payload), &opts.mode)
            .await
    }

    /// Parts are gathered in memory and written in one piece when complete: the objects
    /// delta-rs writes here (logs, checkpoints, compacted files) fit in memory.
    async fn put_multipart_opts(
        &self,
        location: &Path,
        _opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        Ok(Box::new(GatheredUpload {
            store: self.clone(),
            location: location.clone(),
            parts: Arc::new(Mutex::new(Vec::new())),
        }))
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        if options.if_match.is_some()
            || options.if_none_match.is_some()
            || options.if_modified_since.is_some()
            || options.if_unmodified_since.is_some()
            || options.version.is_some()
        {
            return Err(object_store::Error::NotImplemented {
                operation: "conditional get".into(),
                implementer: STORE.into(),
            });
        }
        let object = self
            .lake
            .stat(location.as_ref())
            .await
            .map_err(generic)?
            .ok_or_else(|| not_found(location))?;
        let size = object.size;
        let range: Range<u64> = match &options.range {
            None => 0..size,
            Some(r) => r.as_range(size).map_err(|e| object_store::Error::Generic {
                store: STORE,
                source: Box::new(e),
            })?,
        };
        let body = if options.head || range.is_empty() {
            Bytes::new()
        } else {
            self.lake
                .read_range(location.as_ref(), range.clone())
                .await
                .map_err(generic)?
        };
        Ok(GetResult {
            payload: GetResultPayload::Stream(stream::once(async move { Ok(body) }).boxed()),
            meta: meta(object),
            range,
            attributes: Default::default(),
        })
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let store = self.clone();
        locations
            .then(move |location| {
                let store = store.clone();
                async move {
                    let location = location?;
                    store
                        .lake
                        .delete(location.as_ref())
                        .await
                        .map_err(generic)?;
                    Ok(location)
                }
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let (lake, prefix) = (self.lake.clone(), dir(prefix));
        stream::once(async move { lake.list_objects(&prefix, true).await })
            .flat_map(|listed| match listed {
                Ok(l) => stream::iter(l.objects.into_iter().map(|o| Ok(meta(o)))).boxed(),
                Err(e) => stream::once(async move { Err(generic(e)) }).boxed(),
            })
            .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        let listing = self
            .lake
            .list_objects(&dir(prefix), false)
            .await
            .map_err(generic)?;
        Ok(ListResult {
            common_prefixes: listing
                .directories
                .iter()
                .map(|d| Path::from(d.trim_end_matches('/')))
                .collect(),
            objects: listing.objects.into_iter().map(meta).collect(),
        })
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        match options.mode {
            CopyMode::Overwrite => self
                .lake
                .copy(from.as_ref(), to.as_ref())
                .await
                .map_err(generic),
            // Read and land: the target is written only if absent, atomically.
            CopyMode::Create => {
                let body = self.lake.read(from.as_ref()).await.map_err(generic)?;
                self.put_bytes(to, body.into(), &PutMode::Create)
                    .await
                    .map(|_| ())
            }
        }
    }
}

#[derive(Debug)]
struct GatheredUpload {
    store: LakeStore,
    location: Path,
    parts: Arc<Mutex<Vec<Bytes>>>,
}

#[async_trait]
impl MultipartUpload for GatheredUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        self.parts
            .lock()
            .expect("parts lock")
            .push(Bytes::from(data));
        Box::pin(async { Ok(()) })
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        let parts = std::mem::take(&mut *self.parts.lock().expect("parts lock"));
        let body: Vec<u8> = parts.iter().flat_map(|p| p.iter().copied()).collect();
        self.store
            .put_bytes(&self.location, body.into(), &PutMode::Overwrite)
            .await
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        self.parts.lock().expect("parts lock").clear();
        Ok(())
    }
}
