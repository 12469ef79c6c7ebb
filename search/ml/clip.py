"""CLIP image/text embedders (and the multilingual text encoder) on sentence-transformers.

Every embedder loads lazily, once (`search.ml.base.InferenceModel`), from a hub id already in
the local cache or from a local directory: loading never touches the network (`manage.py
setup_models` downloads), so an offline machine fails at once with a `ModelLoadError` instead
of hanging in the hub client's retries. Outputs are float32, L2-normalised, shape (n, dim),
whatever the weights' precision. Bulk indexing decodes images in DataLoader workers with
`image_preprocessor()` and runs `embed_pixel_batch` here (search/ml/batches.py); both routes
give the vectors `embed_images` gives.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

import numpy as np
import torch
from PIL import Image
from sentence_transformers import SentenceTransformer
from transformers import ProcessorMixin

from search.ml.device import Precision, configure_cpu_threads
from search.ml.errors import first_line
from search.ml.images import to_rgb
from search.ml.local import LocalModel
from search.ml.names import SENTENCE_TRANSFORMERS_MARKER, SENTENCE_TRANSFORMERS_ORG

if TYPE_CHECKING:
    from transformers.image_processing_base import ImageProcessingMixin

logger = logging.getLogger(__name__)

ImageSource = Image.Image | str | os.PathLike[str]


@runtime_checkable
class TextEmbedder(Protocol):
    """Turns query texts into vectors in the image index's space."""

    @property
    def model_id(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def load(self) -> None: ...

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray: ...


@dataclass(frozen=True)
class ImagePreprocessor:
    """Decode + RGB + CLIP resize/crop/normalise -> (3, H, W) float32 pixels, in two steps.

    `decode` (one file -> uint8 RGB at its own size) runs per image in DataLoader workers;
    `pixels` runs the Hugging Face processor once per batch, which resizes each group of
    same-sized images in one call: 1,240 img/s on one thread against 845 one image per call
    (measured, 64x64 -> 224), with the same pixels (tested). Holds only the image processor
    (a few hundred bytes pickled), so it ships to workers; the model stays in this process.
    """

    image_processor: ImageProcessingMixin

    # Bump when `decode` changes the pixels a file gives: vectors of earlier builds then stop
    # being reused (search/index/build.py).
    DECODE_VERSION: ClassVar[int] = 1

    @property
    def fingerprint(self) -> str:
        """What the pixels of a file depend on (decode and the processor's settings), hashed:
        two preprocessors with the same fingerprint give one file the same model input."""
        recipe = {"decode": self.DECODE_VERSION, "processor": self.image_processor.to_dict()}
        text = json.dumps(recipe, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def __call__(self, image: ImageSource) -> torch.Tensor:
        return self.pixels([self.decode(image)])[0]

    def decode(self, image: ImageSource) -> torch.Tensor:
        """(3, h, w) uint8 RGB (transparency flattened onto white), decoded now."""
        if isinstance(image, Image.Image):
            return _rgb_tensor(image)
        with Image.open(image) as opened:
            return _rgb_tensor(opened)

    def pixels(self, decoded: Sequence[torch.Tensor]) -> torch.Tensor:
        """(n, 3, H, W) float32 model input for `decode` outputs of any sizes."""
        return self.image_processor(images=list(decoded), return_tensors="pt")["pixel_values"]


def _rgb_tensor(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.array(to_rgb(image))).permute(2, 0, 1)


def collate_pixels(items: Sequence[torch.Tensor]) -> torch.Tensor:
    """DataLoader collate_fn for ImagePreprocessor outputs: a (n, 3, H, W) batch."""
    return torch.stack(list(items))


class SentenceTransformerEmbedder(LocalModel):
    """A sentence-transformers text encoder, e.g. clip-ViT-B-32-multilingual-v1.

    `setting` names the variable that chose `model_id`, so a load failure can say which
    variable to point at a local directory. Heavy work happens in `_load()`, never in
    `__init__`; every embedding method loads on first use.
    """

    default_setting = "TINYRAG_TEXT_MODEL"
    marker = SENTENCE_TRANSFORMERS_MARKER  # plain HF folders load too
    bare_name_org = SENTENCE_TRANSFORMERS_ORG

    def __init__(
        self,
        model_id: str,
        *,
        device: str = "cpu",
        precision: Precision = Precision.FP32,
        batch_size: int = 64,
        cache_dir: str | os.PathLike[str] | None = None,
        setting: str | None = None,
    ) -> None:
        super().__init__()
        self._model_id = model_id
        self._device = device
        self._precision = Precision(precision)
        self.batch_size = batch_size
        self._cache_dir = str(cache_dir) if cache_dir else None
        self.setting = setting or self.default_setting
        self._model: SentenceTransformer | None = None
        self._dim: int | None = None

    @property
    def dtype(self) -> torch.dtype:
        """The weights' dtype; outputs are float32 regardless."""
        return self._precision.dtype

    @property
    def dim(self) -> int:
        """Embedding dimension (loads the model on first use)."""
        self.load()
        assert self._dim is not None
        return self._dim

    def _load(self) -> None:
        if self._device.startswith("cpu"):
            configure_cpu_threads()
        model = self._load_sentence_transformer()
        self._check(model)
        self._dim = int(model.get_embedding_dimension())
        self._model = model

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """(n, dim) float32 unit vectors, one per text.

        The vectors `encode` gives (tested), without `encode`: its per-call bookkeeping
        (argument checks, prompt and device resolution, per-row lists) cost 2.2 ms of one
        query's 17.1 ms (measured: 2-core CPU, ViT-B/32 text tower, bf16). Like `encode`,
        texts run longest first in chunks of `batch_size` (less padding per chunk) and come
        back in the order given.
        """
        texts = list(texts)
        if not texts:
            return np.empty((0, self.dim), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda n: -len(texts[n]))
        with torch.inference_mode():
            chunks = [
                self._text_forward([texts[n] for n in order[start : start + self.batch_size]])
                for start in range(0, len(order), self.batch_size)
            ]
            vectors = torch.cat(chunks)[torch.tensor(order).argsort()]
        return unit_float32(vectors)  # in fp32: bf16 norms are ~1e-3 off

    def _text_forward(self, texts: list[str]) -> torch.Tensor:
        """The sentence-transformers pipeline on texts: every module, as `encode` runs it
        (the model's default prompt too, where it names one)."""
        model = self._loaded_model()
        prompt = model.prompts.get(model.default_prompt_name) if model.default_prompt_name else None
        features = model.preprocess(texts, prompt=prompt)
        features = {
            key: value.to(model.device) if isinstance(value, torch.Tensor) else value
            for key, value in features.items()
        }
        return model(features)["sentence_embedding"]

    # -- internals ----------------------------------------------------------------------------

    def _loaded_model(self) -> SentenceTransformer:
        self.load()
        assert self._model is not None
        return self._model

    def _check(self, model: SentenceTransformer) -> None:
        """Reject a model of the wrong kind; subclasses require more."""
        if not model.supports("text"):
            raise self._error("it does not encode text")

    def _load_sentence_transformer(self) -> SentenceTransformer:
        directory = self._local_directory()
        try:
            return SentenceTransformer(
                directory, device=self._device, model_kwargs={"dtype": self.dtype}
            ).eval()
        except Exception as exc:  # a broken or foreign directory fails in many ways
            raise self._error(f"{type(exc).__name__}: {first_line(exc)}") from exc


class ClipEmbedder(SentenceTransformerEmbedder):
    """CLIP (sentence-transformers/clip-ViT-B-32 layout): images and English text, one space."""

    default_setting = "TINYRAG_CLIP_MODEL"

    def __init__(self, model_id: str, **kwargs: Any) -> None:
        super().__init__(model_id, **kwargs)
        self._compiled_forward: Callable[[torch.Tensor], torch.Tensor] | None = None
        self._compiled_shape: tuple[int, ...] | None = None

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """(n, dim) float32 unit vectors, one per image (any PIL mode)."""
        images = [to_rgb(image) for image in images]
        if not images:
            return np.empty((0, self.dim), dtype=np.float32)
        model = self._loaded_model()
        with torch.inference_mode():
            vectors = model.encode(
                images,
                batch_size=self.batch_size,
                convert_to_tensor=True,
                normalize_embeddings=False,
                show_progress_bar=False,
            )
        return unit_float32(vectors)

    def image_preprocessor(self) -> ImagePreprocessor:
        """The picklable decode+preprocess step, for DataLoader workers."""
        return ImagePreprocessor(self._image_processor())

    def embed_pixel_batch(self, batch: torch.Tensor | Mapping[str, torch.Tensor]) -> np.ndarray:
        """Run the model on preprocessed pixels, (n, 3, H, W) or {"pixel_values": ...}."""
        pixels = batch["pixel_values"] if isinstance(batch, Mapping) else batch
        if pixels.ndim != 4:
            raise ValueError(f"expected a (n, 3, H, W) batch, got shape {tuple(pixels.shape)}")
        if len(pixels) == 0:
            return np.empty((0, self.dim), dtype=np.float32)
        self.load()
        pixels = pixels.to(self._device, dtype=self.dtype, non_blocking=True)
        with torch.inference_mode():
            return unit_float32(self._image_forward(pixels))

    def compile_image_batches(self) -> None:
        """Opt in to torch.compile for `embed_pixel_batch`: for bulk indexing only.

        Measured on a 2-core AMX CPU, ViT-B/32 bf16 batches of 64: 106 img/s against 73 eager
        (inductor fuses CLIP's quick-GELU and the casts, which eager bf16 runs slowly). The
        first batch pays 12-35 s of compilation, and only batches of that first shape use the
        compiled graph (a last, smaller batch runs eager rather than recompiling). If
        compilation fails (no C++ compiler, unsupported device), it logs a warning and stays
        eager. Not for query serving: one-image batches gain nothing.
        """
        self.load()
        if self._device.startswith("mps") or self._compiled_forward is not None:
            return  # inductor's MPS support is partial; eager is the safe choice there
        self._compiled_forward = torch.compile(self._pixel_forward, dynamic=False)

    def _image_forward(self, pixels: torch.Tensor) -> torch.Tensor:
        compiled = self._compiled_forward
        if compiled is not None and self._compiled_shape in (None, tuple(pixels.shape)):
            try:
                vectors = compiled(pixels)
            except Exception as exc:  # inductor failures are many and version-specific
                logger.warning("torch.compile failed (%s); embedding eagerly.", first_line(exc))
                self._compiled_forward = None
            else:
                self._compiled_shape = tuple(pixels.shape)
                return vectors
        return self._pixel_forward(pixels)

    def _pixel_forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """The sentence-transformers pipeline on pixels: every module, as `encode` runs it."""
        features: dict[str, Any] = {
            "pixel_values": pixels,
            "modality": "image",  # routes the CLIP module to get_image_features
        }
        return self._loaded_model()(features)["sentence_embedding"]

    def _check(self, model: SentenceTransformer) -> None:
        super()._check(model)
        if not model.supports("image"):
            raise self._error("it has no image encoder (TinyRAG needs a CLIP model here)")

    def _image_processor(self) -> ImageProcessingMixin:
        processor = getattr(self._loaded_model()[0], "processor", None)
        if isinstance(processor, ProcessorMixin):
            processor = getattr(processor, "image_processor", None)
        if processor is None:
            raise self._error("it has no image processor")
        return processor


def unit_float32(vectors: torch.Tensor) -> np.ndarray:
    """float32 rows of length 1 (computed in float32), as a C-contiguous numpy array."""
    vectors = torch.nn.functional.normalize(vectors.detach().float(), dim=-1)
    return np.ascontiguousarray(vectors.cpu().numpy(), dtype=np.float32)
