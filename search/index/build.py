"""Embed a collection's images with CLIP and publish a FAISS index; resumable.

Decoding and preprocessing run in DataLoader worker processes while the model runs batched in
this process. Embeddings are written in shards (`<index_dir>/.builds/<name>.partial/`) as they
are computed; a rerun after a crash, Ctrl-C or kill -9 continues after the last complete shard.
Only when every shard is done is the index built and published (atomically, see
search/index/service.py).

A build is incremental: an image whose file has the content hash (import_dataset's sha256) of
one in the last published build of the same index, embedded by the same model with the same
preprocessing and precision, takes that build's vector instead of being embedded again.
Images no longer imported drop out, as they are not planned; `restart` embeds everything.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from django.conf import settings

from search.catalog.models import Dataset, Image
from search.errors import ApplicationError
from search.index import service as index_service
from search.index.service import IndexManifest, IndexType
from search.ml.batches import (
    COMPILE_MIN_IMAGES,
    ImageFile,
    default_decode_workers,
    pixel_batches,
)
from search.ml.registry import get_clip_embedder

SHARD_TARGET = 2048  # images per shard: ~30 s of CPU work, so a crash loses little


class BuildError(ApplicationError):
    """The build cannot start or go on; the message says why and what to do."""

    code = "build"


@dataclass(frozen=True)
class BuildOptions:
    name: str
    dataset: str | None = None  # Dataset.name; None = the only imported dataset
    splits: tuple[str, ...] = ("train",)
    index_type: IndexType = IndexType.AUTO
    batch_size: int = 64
    workers: int = field(default_factory=default_decode_workers)  # decode processes
    limit_per_class: int | None = None
    restart: bool = False
    compile: bool | None = None  # torch.compile the image tower; None: if COMPILE_MIN_IMAGES
    index_params: dict = field(default_factory=dict)
    shard_target: int = SHARD_TARGET

    @property
    def shard_size(self) -> int:
        """Images per shard: whole batches, as close to `shard_target` as that allows."""
        return max(1, self.shard_target // self.batch_size) * self.batch_size


def resolve_dataset(name: str | None) -> Dataset:
    if name:
        try:
            return Dataset.objects.get(name=name)
        except Dataset.DoesNotExist:
            raise BuildError(f"no dataset named {name!r}; run import_dataset first") from None
    datasets = list(Dataset.objects.all()[:2])
    if not datasets:
        raise BuildError("no dataset is imported; run import_dataset first")
    if len(datasets) > 1:
        raise BuildError("several datasets are imported; choose one with --dataset")
    return datasets[0]


@dataclass
class Plan:
    """The images an index holds, in id order, with their files' content hashes."""

    files: list[ImageFile]
    hashes: list[str]  # import_dataset's sha256 per file; "" where not hashed yet

    @property
    def ids(self) -> np.ndarray:
        return np.fromiter((f.id for f in self.files), dtype=np.int64, count=len(self.files))


def plan_images(dataset: Dataset, splits: tuple[str, ...], limit_per_class: int | None) -> Plan:
    """The images to index, in id order; at most `limit_per_class` per class and split."""
    rows = (
        Image.objects.filter(dataset=dataset, split__in=splits)
        .order_by("id")
        .values_list("id", "path", "image_class_id", "split", "content_hash")
    )
    taken: dict[tuple, int] = {}
    plan = Plan([], [])
    root = Path(dataset.root)
    for image_id, path, class_id, split, content_hash in rows.iterator(chunk_size=5000):
        if limit_per_class is not None:
            key = (class_id, split)
            if taken.get(key, 0) >= limit_per_class:
                continue
            taken[key] = taken.get(key, 0) + 1
        plan.files.append(ImageFile(image_id, str(root / path)))
        plan.hashes.append(content_hash)
    return plan


def embedding_recipe(embedder) -> str:
    """What a vector depends on besides the file's bytes: preprocessing and weights' dtype
    (the model id is recorded beside it). Equal recipes: a stored vector can be reused."""
    recipe = f"{embedder.image_preprocessor().fingerprint}:{embedder.dtype}"
    return hashlib.sha256(recipe.encode()).hexdigest()[:16]


@dataclass
class Reuse:
    """Vectors of the last published build that stand for planned images, and what is left."""

    ids: np.ndarray  # int64 ids of planned images whose vector is taken over
    vectors: np.ndarray  # (len(ids), dim) float32, row-aligned with ids
    todo: list[ImageFile]  # the planned images to embed, in id order
    source: str = ""  # the published build folder the vectors come from; "" for none

    @classmethod
    def none(cls, plan: Plan, dim: int) -> Reuse:
        """Embed every planned image."""
        return cls(np.empty(0, np.int64), np.empty((0, dim), np.float32), plan.files)


def reusable_vectors(
    index_dir: Path, name: str, plan: Plan, model_id: str, recipe: str, dim: int
) -> Reuse:
    """Match planned images to the last published build of `name` by content hash.

    Nothing is reused unless that build was made by `model_id` with `recipe` and recorded
    its hashes (builds before incremental ones did not), and only for files still on disk;
    any unreadable part of it means
    embedding everything, never a failed build."""
    nothing = Reuse.none(plan, dim)
    try:
        manifest = index_service.read_manifest(index_dir, name)
    except index_service.SearchIndexError:
        return nothing
    if (manifest.model_id, manifest.preprocessing, manifest.dim) != (model_id, recipe, dim):
        return nothing
    folder = (index_dir / name).resolve()
    try:
        hashes = np.load(folder / "hashes.npy")
        stored = np.load(folder / "embeddings.npy", mmap_mode="r")
    except (OSError, ValueError):
        return nothing
    if stored.shape != (len(hashes), dim):
        return nothing
    row_of = {h.decode(): row for row, h in enumerate(hashes.tolist()) if h}
    rows, ids, todo = [], [], []
    for file, content_hash in zip(plan.files, plan.hashes, strict=True):
        row = row_of.get(content_hash) if content_hash else None
        # a file gone since (its row kept: imported without --prune) is not taken over: its
        # read fails as a first build's would, and the build lists it as skipped
        if row is None or not os.path.exists(file.path):
            todo.append(file)
        else:
            rows.append(row)
            ids.append(file.id)
    vectors = np.asarray(stored[np.asarray(rows, dtype=np.int64)], dtype=np.float32)
    return Reuse(np.asarray(ids, dtype=np.int64), vectors.reshape(-1, dim), todo, folder.name)


def _fingerprint(
    options: BuildOptions, dataset: Dataset, model_id: str, todo: list[ImageFile], source: str
) -> str:
    """Shards of an interrupted build are resumed only by a build of the same images to
    embed, against the same published build to reuse from."""
    ids = np.array([p.id for p in todo], dtype=np.int64)
    key = {
        "name": options.name,
        "model_id": model_id,
        "dataset": dataset.name,
        "splits": list(options.splits),
        "limit_per_class": options.limit_per_class,
        "shard_size": options.shard_size,
        "ids_sha256": hashlib.sha256(ids.tobytes()).hexdigest(),
        "reused_from": source,
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def _write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    with tmp.open("rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


class ShardStore:
    """Completed shards of one build, kept until the index is published."""

    def __init__(self, folder: Path):
        self.folder = folder

    def start(self, fingerprint: str, restart: bool) -> bool:
        """Prepare the folder; True when earlier shards of the same build are reused."""
        plan_file = self.folder / "plan.json"
        if self.folder.exists():
            same = (
                plan_file.is_file()
                and json.loads(plan_file.read_text()).get("fingerprint") == fingerprint
            )
            if same and not restart:
                return True
            shutil.rmtree(self.folder)
        self.folder.mkdir(parents=True)
        _write_atomically(
            plan_file, lambda p: p.write_text(json.dumps({"fingerprint": fingerprint}))
        )
        return False

    def path(self, number: int) -> Path:
        return self.folder / f"shard-{number:05d}.npz"

    def done(self, number: int) -> bool:
        return self.path(number).is_file()

    def save(self, number: int, ids: np.ndarray, vectors: np.ndarray, skipped: list[str]) -> None:
        def write(tmp: Path) -> None:
            with tmp.open("wb") as f:
                np.savez(f, ids=ids, vectors=vectors, skipped=np.array(skipped, dtype=str))

        _write_atomically(self.path(number), write)

    def load_all(self, shards: int, dim: int):
        ids, vectors, skipped = [np.empty(0, np.int64)], [np.empty((0, dim), np.float32)], []
        for number in range(shards):
            with np.load(self.path(number)) as shard:
                ids.append(shard["ids"])
                vectors.append(shard["vectors"].reshape(-1, dim))
                skipped.extend(str(s) for s in shard["skipped"])
        return np.concatenate(ids), np.concatenate(vectors), skipped


def _batches_within_shards(count: int, shard_size: int, batch_size: int):
    """Index batches of `count` items cut into shards; none straddles a shard."""
    for start in range(0, count, shard_size):
        end = min(start + shard_size, count)
        for b in range(start, end, batch_size):
            yield list(range(b, min(b + batch_size, end)))


def embed_shards(
    files: list[ImageFile],
    store: ShardStore,
    embedder,
    *,
    first: int,
    shard_size: int,
    batch_size: int,
    workers: int,
    bar=None,
) -> int:
    """Embed `files`, which are shards `first`, first + 1, ... of a build, saving each shard in
    `store` as it completes; returns how many images were read and embedded (an unreadable
    one is listed in its shard)."""
    batches = pixel_batches(
        files,
        embedder.image_preprocessor(),
        workers=workers,
        batches=_batches_within_shards(len(files), shard_size, batch_size),
    )
    shard_ids, shard_vecs, shard_skipped = [], [], []
    position, shard, embedded = 0, first, 0
    for batch in batches:
        if batch.pixels is not None:
            shard_ids.append(batch.ids)
            shard_vecs.append(embedder.embed_pixel_batch(batch.pixels))
        shard_skipped.extend(batch.errors)
        position += len(batch)
        embedded += len(batch.ids)
        if bar is not None:
            bar.update(len(batch))
        if position == min((shard - first + 1) * shard_size, len(files)):
            store.save(
                shard,
                np.concatenate(shard_ids) if shard_ids else np.empty(0, np.int64),
                np.concatenate(shard_vecs)
                if shard_vecs
                else np.empty((0, embedder.dim), np.float32),
                shard_skipped,
            )
            shard_ids, shard_vecs, shard_skipped = [], [], []
            shard += 1
    return embedded


def shard_root(index_dir: Path) -> Path:
    """Where builds keep their shards until they publish: TINYRAG_SHARD_DIR (a folder every
    machine of a distributed build shares), else beside the index's builds."""
    configured = settings.TINYRAG_SHARD_DIR
    return Path(configured) if configured else index_service.builds_dir(index_dir)


@dataclass
class PreparedBuild:
    """A build planned, its reusable vectors found and its shard folder started: what is left
    is to embed the shards still missing, then `publish_build`."""

    options: BuildOptions
    dataset: Dataset
    planned: Plan
    reuse: Reuse
    store: ShardStore
    fingerprint: str
    model_id: str
    recipe: str
    dim: int
    started: float  # time.perf_counter() when the build began

    @property
    def todo(self) -> list[ImageFile]:
        return self.reuse.todo

    @property
    def shard_size(self) -> int:
        return self.options.shard_size

    @property
    def shards(self) -> int:
        return (len(self.todo) + self.shard_size - 1) // self.shard_size

    def shard_images(self, number: int) -> int:
        return min(self.shard_size, len(self.todo) - number * self.shard_size)

    def compile_default(self, remaining: int) -> bool:
        """torch.compile the image tower: when asked, or by default for a large enough build."""
        compile_ = self.options.compile
        return compile_ or (compile_ is None and remaining >= COMPILE_MIN_IMAGES)


def prepare_build(
    options: BuildOptions, embedder, index_dir: Path, log: Callable[[str], None]
) -> PreparedBuild:
    """Plan the images, take over the published build's vectors where the files are
    unchanged, and start (or resume) the shard folder of the rest."""
    started = time.perf_counter()
    dataset = resolve_dataset(options.dataset)
    planned = plan_images(dataset, options.splits, options.limit_per_class)
    if not planned.files:
        raise BuildError(
            f"dataset {dataset.name!r} has no images in splits {', '.join(options.splits)}"
        )
    embedder.load()
    recipe = embedding_recipe(embedder)
    reuse = (
        Reuse.none(planned, embedder.dim)
        if options.restart
        else reusable_vectors(
            index_dir, options.name, planned, embedder.model_id, recipe, embedder.dim
        )
    )
    if len(reuse.ids):
        log(f"Reusing {len(reuse.ids):,} vectors of the published build; embedding the rest.")
    fingerprint = _fingerprint(options, dataset, embedder.model_id, reuse.todo, reuse.source)
    store = ShardStore(shard_root(index_dir) / f"{options.name}.partial")
    prepared = PreparedBuild(
        options,
        dataset,
        planned,
        reuse,
        store,
        fingerprint,
        embedder.model_id,
        recipe,
        embedder.dim,
        started,
    )
    if store.start(fingerprint, options.restart):
        done = [n for n in range(prepared.shards) if store.done(n)]
        if done:
            images = sum(prepared.shard_images(n) for n in done)
            log(f"Resuming after {len(done)} complete shards ({images:,} images).")
    return prepared


def publish_build(
    prepared: PreparedBuild,
    index_dir: Path,
    *,
    embedded: int,
    embed_seconds: float,
    log: Callable[[str], None],
) -> IndexManifest:
    """Merge the saved shards with the reused vectors, build the index and publish it."""
    options, planned, reuse, store = (
        prepared.options,
        prepared.planned,
        prepared.reuse,
        prepared.store,
    )
    new_ids, new_vectors, skipped = store.load_all(prepared.shards, prepared.dim)
    ids = np.concatenate([reuse.ids, new_ids])
    if not len(ids):
        raise BuildError("no image could be read; nothing to index")
    order = np.argsort(ids, kind="stable")
    ids, vectors = ids[order], np.concatenate([reuse.vectors, new_vectors])[order]
    hashes = np.array(planned.hashes, dtype="S64")[np.searchsorted(planned.ids, ids)]
    log(f"Building the {options.index_type} index over {len(ids):,} vectors.")
    index, params = index_service.build_faiss_index(
        vectors, ids, options.index_type, options.index_params
    )
    manifest = IndexManifest(
        name=options.name,
        model_id=prepared.model_id,
        dim=prepared.dim,
        **index_service.manifest_fields(params),
        count=int(index.ntotal),
        dataset=prepared.dataset.name,
        splits=list(options.splits),
        created_at=index_service.now_iso(),
        build_seconds=round(time.perf_counter() - prepared.started, 2),
        images_per_second=round(embedded / embed_seconds, 1) if embed_seconds else 0.0,
        skipped=skipped,
        limit_per_class=options.limit_per_class,
        preprocessing=prepared.recipe,
        reused=len(reuse.ids),
        embedded=len(new_ids),
        requested_type=IndexType(options.index_type).value,
    )
    builds = index_service.builds_dir(index_dir)
    staged = builds / f"{options.name}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
    index_service.write_index_folder(staged, index, vectors, ids, manifest, hashes=hashes)
    index_service.publish(staged, index_dir, options.name)
    shutil.rmtree(store.folder, ignore_errors=True)
    return manifest


def build_index(
    options: BuildOptions,
    *,
    embedder=None,
    index_dir: Path | None = None,
    progress_factory=None,
    log: Callable[[str], None] = lambda _: None,
) -> IndexManifest:
    """Embed the planned images (resuming finished shards), then build and publish the index.

    `embedder` defaults to the configured CLIP (TINYRAG_CLIP_MODEL); the index records its id.
    """
    if embedder is None:
        embedder = get_clip_embedder()
    index_dir = Path(index_dir or settings.TINYRAG_INDEX_DIR)
    prepared = prepare_build(options, embedder, index_dir, log)
    store, shard_size, shards = prepared.store, prepared.shard_size, prepared.shards
    first = next((n for n in range(shards) if not store.done(n)), shards)
    embed_seconds, embedded = 0.0, 0
    if first < shards:
        done_before = first * shard_size
        if prepared.compile_default(len(prepared.todo) - done_before):
            embedder.compile_image_batches()
        bar = (
            progress_factory(
                total=len(prepared.todo), initial=done_before, desc="embed", unit="img"
            )
            if progress_factory
            else None
        )
        t0 = time.perf_counter()
        try:
            embedded = embed_shards(
                prepared.todo[done_before:],
                store,
                embedder,
                first=first,
                shard_size=shard_size,
                batch_size=options.batch_size,
                workers=options.workers,
                bar=bar,
            )
        finally:
            if bar is not None:
                bar.close()
        embed_seconds = time.perf_counter() - t0
    return publish_build(
        prepared, index_dir, embedded=embedded, embed_seconds=embed_seconds, log=log
    )
