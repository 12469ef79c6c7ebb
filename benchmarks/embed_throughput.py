"""Image-embedding throughput: the original system's way against TinyRAG's indexing pipeline.

Builds the full-size CLIP ViT-B/32 architecture (random weights, the
sentence-transformers/clip-ViT-B-32 on-disk layout) and N synthetic 64x64 JPEGs (every fourth
grayscale, like a few TinyImageNet images), then measures images/s of

  baseline  sentence-transformers `encode` on lists of 64 PIL images, fp32 weights, JPEG
            decoding in the main process (what the original system did);
  ours      `run_ours`: build_index's pipeline with its default settings: DataLoader
            workers (search.ml.batches.default_decode_workers) decode each file and
            resize/normalise each batch, the main process runs the model with bf16 weights
            where the CPU/GPU computes bf16 natively, under inference_mode (search.ml.clip's
            image_preprocessor + embed_pixel_batch), with torch.compile; the one-off
            compilation is timed apart (warm-up), not in images/s;
  ours-eager  the same without torch.compile.

Then, per build size (a TinyImageNet-size build of 100,000 images and a 10,000-image
bootstrap), the rate build_index reaches by default: compiled when the size reaches
COMPILE_MIN_IMAGES, paying the compilation once (size / (compile s + size / compiled rate)),
else eager; and its ratio to the baseline against TARGET_RATIO.

Each approach runs in a fresh process, so its peak RSS (resource.getrusage) is its own; one
warm-up batch precedes each timing. Random weights run exactly as fast as trained ones.

    .venv/bin/python benchmarks/embed_throughput.py --images 1024 [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make `search` and `tests` importable
    sys.path.insert(0, str(ROOT))

TARGET_RATIO = 4.0  # issue 15: the default build_index, every build size
BUILD_SIZES = {"TinyImageNet-size build": 100_000, "bootstrap": 10_000}
PHASES = ("baseline", "ours-eager", "ours")
SAMPLE = 16  # vectors kept from each run to check that both compute the same embeddings


@dataclass
class Run:
    name: str
    images: int
    seconds: float
    peak_rss_mb: float  # the measuring process
    workers_peak_rss_mb: float  # its largest child (DataLoader worker), 0 without workers
    detail: str
    warm_up_s: float = 0.0  # the first batch, compilation included

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds


def write_images(directory: Path, count: int, *, seed: int = 0) -> list[Path]:
    """64x64 JPEGs with smooth structure plus noise (so JPEG decoding does real work)."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    y, x = np.mgrid[0:64, 0:64] / 63.0
    paths = []
    for index in range(count):
        phase = rng.uniform(0, 2 * np.pi, 3)
        channels = [np.sin(6 * x * rng.uniform(0.5, 2) + 4 * y + p) for p in phase]
        pixels = (np.stack(channels, axis=-1) * 100 + 128 + rng.normal(0, 20, (64, 64, 3))).clip(
            0, 255
        )
        image = Image.fromarray(pixels.astype(np.uint8), "RGB")
        if index % 4 == 3:
            image = image.convert("L")
        path = directory / f"{index:06d}.jpg"
        image.save(path, quality=90)
        paths.append(path)
    return paths


def run_baseline(paths: list[Path], model_dir: Path, batch_size: int) -> tuple[Run, np.ndarray]:
    """The original system: SentenceTransformer.encode on lists of PIL images, fp32."""
    import torch
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(
        str(model_dir), device="cpu", model_kwargs={"dtype": torch.float32}
    ).eval()

    def encode(batch_paths: list[Path]) -> np.ndarray:
        images = [Image.open(path) for path in batch_paths]  # decoded lazily, in this process
        return model.encode(images, batch_size=batch_size, show_progress_bar=False)

    encode(paths[:batch_size])  # warm-up
    started = time.perf_counter()
    vectors = [encode(paths[i : i + batch_size]) for i in range(0, len(paths), batch_size)]
    seconds = time.perf_counter() - started
    vectors = np.concatenate(vectors)
    detail = f"fp32, {torch.get_num_threads()} torch threads, decode in main process"
    return _run("baseline", len(vectors), seconds, detail, 0.0), vectors


def run_ours(
    paths: list[Path], model_dir: Path, batch_size: int, workers: int, *, compile: bool = True
) -> tuple[Run, np.ndarray]:
    """TinyRAG's pipeline, as build_index runs it (search/ml/batches.py): decode + preprocess
    in `workers` processes, the bf16 model batched in this one."""
    import torch

    from search.ml.batches import image_files, pixel_batches
    from search.ml.clip import ClipEmbedder
    from search.ml.device import compute_target

    target = compute_target("auto")
    embedder = ClipEmbedder(
        str(model_dir), device=target.device, precision=target.precision, batch_size=batch_size
    )
    embedder.load()
    if compile:
        embedder.compile_image_batches()
    preprocess = embedder.image_preprocessor()
    started = time.perf_counter()
    first = preprocess.pixels([preprocess.decode(path) for path in paths[:batch_size]])
    embedder.embed_pixel_batch(first)
    warm_up = time.perf_counter() - started  # includes the compilation

    started = time.perf_counter()
    batches = pixel_batches(image_files(paths), preprocess, batch_size=batch_size, workers=workers)
    vectors = np.concatenate([embedder.embed_pixel_batch(b.pixels) for b in batches])
    seconds = time.perf_counter() - started
    compiled = embedder._compiled_forward is not None
    detail = (
        f"{target.precision.value} on {target.device}, {torch.get_num_threads()} torch threads, "
        f"{workers} decode workers, "
        + (f"compiled (warm-up incl. compile {warm_up:.0f} s)" if compiled else "eager")
    )
    name = "ours" if compile else "ours-eager"
    return _run(name, len(vectors), seconds, detail, warm_up), vectors


def _run(name: str, images: int, seconds: float, detail: str, warm_up_s: float) -> Run:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return Run(name, images, seconds, own, children, detail, warm_up_s)


def build_rate(images: int, eager: Run, compiled: Run) -> tuple[float, bool]:
    """img/s of a default build of `images` images, and whether it compiles (paying once)."""
    from search.ml.batches import COMPILE_MIN_IMAGES

    if images < COMPILE_MIN_IMAGES:
        return eager.images_per_s, False
    return images / (compiled.warm_up_s + images / compiled.images_per_s), True


def _phase(args: argparse.Namespace) -> None:
    """Child process: one measurement, as one JSON line on stdout; sample vectors to a file."""
    paths = sorted(Path(args.image_dir).glob("*.jpg"))
    if args.phase == "baseline":
        run, vectors = run_baseline(paths, Path(args.model_dir), args.batch_size)
    else:
        compile = args.phase == "ours"
        run, vectors = run_ours(
            paths, Path(args.model_dir), args.batch_size, args.workers, compile=compile
        )
    np.save(Path(args.image_dir).parent / f"{args.phase}.npy", vectors[:SAMPLE])
    print(json.dumps(asdict(run)))


def _measure(phase: str, args: argparse.Namespace, model_dir: Path, image_dir: Path) -> Run:
    command = [
        sys.executable, __file__, "--phase", phase, "--model-dir", str(model_dir),
        "--image-dir", str(image_dir), "--batch-size", str(args.batch_size),
        "--workers", str(args.workers),
    ]  # fmt: skip
    # An empty inductor cache per run: the compilation timed is a first build's, not a cache hit.
    cache = tempfile.mkdtemp(prefix="inductor-", dir=image_dir.parent)
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache}
    result = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    if result.returncode != 0:
        sys.exit(f"{phase} failed:\n{result.stderr[-3000:]}")
    return Run(**json.loads(result.stdout.strip().splitlines()[-1]))


def main() -> None:
    from search.ml.batches import default_decode_workers
    from search.ml.device import usable_cpu_count

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=1024, help="Synthetic JPEGs to embed.")
    parser.add_argument("--batch-size", type=int, default=64, help="Images per model step.")
    parser.add_argument(
        "--workers",
        type=int,
        default=default_decode_workers(),
        help="DataLoader decode workers for `ours` (default: build_index's).",
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="Interleaved runs per approach; the median is shown."
    )
    parser.add_argument("--model-dir", type=Path, help="Reuse a model built by an earlier run.")
    parser.add_argument("--image-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--phase", choices=PHASES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        _phase(args)
        return

    from tests.fixtures.models import VIT_B_32, build_clip

    with tempfile.TemporaryDirectory(prefix="tinyrag-bench-") as scratch:
        work = Path(scratch)
        model_dir = args.model_dir
        if model_dir is None:
            started = time.perf_counter()
            model_dir = build_clip(work / "clip-ViT-B-32", VIT_B_32)
            elapsed = time.perf_counter() - started
            print(f"built full-size CLIP ViT-B/32 (random weights) in {elapsed:.0f} s")
        image_dir = work / "images"
        write_images(image_dir, args.images)
        cpus = usable_cpu_count()
        print(
            f"{args.images} synthetic 64x64 JPEGs, batch {args.batch_size}, {cpus} usable CPUs, "
            f"median of {args.repeat} run(s)"
        )

        # Interleaved repeats, median kept: a shared machine's load then hits all phases alike.
        repeats: dict[str, list[Run]] = {phase: [] for phase in PHASES}
        for _ in range(args.repeat):
            for phase in PHASES:
                repeats[phase].append(_measure(phase, args, model_dir, image_dir))
        runs = {
            phase: sorted(measured, key=lambda run: run.images_per_s)[len(measured) // 2]
            for phase, measured in repeats.items()
        }
        samples = {phase: np.load(work / f"{phase}.npy") for phase in PHASES}

    baseline = samples["baseline"] / np.linalg.norm(samples["baseline"], axis=1, keepdims=True)
    print()
    print(f"{'':10} {'img/s':>8} {'seconds':>8} {'peak RSS':>10} {'worker RSS':>11}  setup")
    for run in runs.values():
        memory = f"{run.peak_rss_mb:7.0f} MB {run.workers_peak_rss_mb:8.0f} MB"
        print(f"{run.name:10} {run.images_per_s:8.1f} {run.seconds:8.1f} {memory}  {run.detail}")
    print()
    for phase in PHASES[1:]:
        ratio = runs[phase].images_per_s / runs["baseline"].images_per_s
        cosine = np.sum(baseline * samples[phase], axis=1).min()
        print(
            f"{phase}: {ratio:.2f}x the baseline; "
            f"min cosine to the baseline's embeddings {cosine:.5f}"
        )
    eager, compiled = runs["ours-eager"], runs["ours"]
    saved = 1 / eager.images_per_s - 1 / compiled.images_per_s  # seconds per image
    pays = f"from {compiled.warm_up_s / saved:,.0f} images on" if saved > 0 else "never"
    print(f"torch.compile ({compiled.warm_up_s:.0f} s once) pays {pays}")
    print()
    for label, images in BUILD_SIZES.items():
        rate, compiles = build_rate(images, runs["ours-eager"], runs["ours"])
        ratio = rate / runs["baseline"].images_per_s
        how = f"compiled, {runs['ours'].warm_up_s:.0f} s compile paid once" if compiles else "eager"
        verdict = "met" if ratio >= TARGET_RATIO else "missed"
        print(
            f"{label} ({images:,} images, default build_index: {how}): {rate:.1f} img/s = "
            f"{ratio:.2f}x the baseline; {TARGET_RATIO:.1f}x target {verdict}"
        )


if __name__ == "__main__":
    main()
