"""The RAG step of a description: the retrieved context, the prompt, and the generation.

The same functions serve the product and its measurement: a description request retrieves the
context (`retrieved_context`) and the worker generates from it (`generate`); the evaluation's
rag mode does both for held-out images, so LIR measures exactly what users are given.

A description is written in its reader's language (search.languages: English or Bahasa
Indonesia): the prompt asks for an answer in that language and names the retrieved classes in
it (ImageClass.names_in); each language's prompt has its own version.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass

from django.conf import settings
from PIL import Image as PILImage

from search.catalog.models import Image, ImageClass
from search.catalog.selectors import image_file_path
from search.descriptions.models import Description
from search.index.service import IndexService, get_index_service
from search.languages import ENGLISH, INDONESIAN
from search.ml.vlm.base import Describer
from search.queries.retrieval import Hit, embed_image, nearest_images


@dataclass(frozen=True)
class PromptText:
    """What the describer is told, in one language: the answer comes in the prompt's."""

    version: str  # part of what identical requests share: bump it with the words
    instruction: str
    rag_guidance: str  # {k} and {candidates}
    no_context_guidance: str
    candidate: str  # one line per candidate: {n}, {name}, {also}, {votes}, {k}, {score}
    also: str  # the synonyms after the name: {synonyms}
    decimal_comma: bool = False  # how the language writes 0.81


PROMPTS = {
    ENGLISH: PromptText(
        version="rag-v1",  # the English words are unchanged since rag-v1
        instruction="Describe this image faithfully in two or three sentences: the main "
        "subject, its colours and the setting. Say only what you can see.",
        rag_guidance="A visual search over a labelled photo collection found similar images in "
        "these categories (votes among the {k} nearest neighbours, mean similarity):\n"
        "{candidates}\nName the most likely category only if the image itself supports it; "
        "if none fits, say what it looks like instead.",
        no_context_guidance="Then say what the main object most likely is.",
        candidate="{n}. {name}{also}: {votes} of {k}, {score}",
        also=" (also: {synonyms})",
    ),
    INDONESIAN: PromptText(
        version="rag-id-v1",
        instruction="Jelaskan gambar ini dengan setia dalam dua atau tiga kalimat dalam bahasa "
        "Indonesia: subjek utamanya, warna-warnanya, dan latarnya. Sebutkan hanya apa yang "
        "terlihat.",
        rag_guidance="Pencarian visual dalam koleksi foto berlabel menemukan gambar-gambar "
        "serupa dalam kategori berikut (jumlah suara di antara {k} tetangga terdekat, rata-rata "
        "kemiripan):\n{candidates}\nSebutkan kategori yang paling mungkin hanya jika gambar "
        "itu sendiri mendukungnya; jika tidak ada yang cocok, katakan gambar itu tampak "
        "seperti apa.",
        no_context_guidance="Lalu katakan apa kemungkinan besar objek utamanya.",
        candidate="{n}. {name}{also}: {votes} dari {k}, kemiripan {score}",
        also=" (juga: {synonyms})",
        decimal_comma=True,
    ),
}
PROMPT_LANGUAGES = tuple(PROMPTS)  # search.languages.PAGE_LANGUAGES: a reader's language


def prompt_text(language: str) -> PromptText:
    """The prompt's words in a page language (search.languages); ValueError for another."""
    try:
        return PROMPTS[language]
    except KeyError:
        raise ValueError(
            f"descriptions are written in {', '.join(PROMPT_LANGUAGES)}, not {language!r}"
        ) from None


def prompt_version(language: str = ENGLISH) -> str:
    return prompt_text(language).version


@dataclass(frozen=True)
class Candidate:
    wnid: str
    name: str
    synonyms: list[str]
    votes: int
    mean_score: float


@dataclass(frozen=True)
class Generation:
    """What the describer wrote."""

    text: str
    tokens: int


def open_image(image: Image) -> PILImage.Image:
    """A dataset image's pixels as the describer is given them: RGB."""
    with PILImage.open(image_file_path(image)) as img:
        return img.convert("RGB")


def aggregate_neighbours(hits: list[Hit], *, language: str = ENGLISH) -> list[Candidate]:
    """Neighbours' classes with votes and mean score: most votes first, then higher score;
    named in `language` (ImageClass.names_in: English where a class has no such name)."""
    by_class: dict[int, list[Hit]] = defaultdict(list)
    for hit in hits:
        if hit.image.image_class_id is not None:
            by_class[hit.image.image_class_id].append(hit)
    candidates = [
        _candidate(group[0].image.image_class, group, language) for group in by_class.values()
    ]
    return sorted(candidates, key=lambda c: (-c.votes, -c.mean_score, c.name))


def _candidate(image_class: ImageClass, group: list[Hit], language: str) -> Candidate:
    names = image_class.names_in(language)
    return Candidate(
        wnid=image_class.wnid,
        name=names[0],
        synonyms=names[1:],
        votes=len(group),
        mean_score=round(sum(h.score for h in group) / len(group), 4),
    )


def build_prompt(context_mode: str, context: dict, *, language: str = ENGLISH) -> str:
    """The describer's prompt in `language`: the instruction, and for the retrieved context
    its candidate classes (named in that language when the context was retrieved in it)."""
    words = prompt_text(language)
    if context_mode == Description.Context.NONE:
        return f"{words.instruction} {words.no_context_guidance}"
    lines = []
    for n, c in enumerate(context["candidates"], start=1):
        score = f"{c['mean_score']:.2f}"
        lines.append(
            words.candidate.format(
                n=n,
                name=c["name"],
                also=words.also.format(synonyms=", ".join(c["synonyms"])) if c["synonyms"] else "",
                votes=c["votes"],
                k=context["k"],
                score=score.replace(".", ",") if words.decimal_comma else score,
            )
        )
    guidance = words.rag_guidance.format(k=context["k"], candidates="\n".join(lines))
    return f"{words.instruction}\n{guidance}"


def retrieved_context(
    image: PILImage.Image,
    *,
    k: int,
    exclude_ids: frozenset[int],
    index: IndexService | None = None,
    language: str = ENGLISH,
) -> dict:
    """The labels of the image's k nearest indexed neighbours (the image itself left out), in
    the published index searches use unless another is given (evaluation picks its own); the
    candidates named in `language`, each with its wnid."""
    index = index or get_index_service()
    hits = nearest_images(
        embed_image(image, index).vector, k=k, index=index, exclude_ids=exclude_ids
    )
    return {
        "k": k,
        "index": index.manifest.name,
        "neighbours": [
            {
                "image_id": h.image.pk,
                "wnid": h.image.image_class.wnid if h.image.image_class else None,
                "score": round(h.score, 4),
            }
            for h in hits
        ],
        "language": language,
        "candidates": [asdict(c) for c in aggregate_neighbours(hits, language=language)],
    }


def generate(
    image: PILImage.Image,
    *,
    prompt: str,
    describer: Describer,
    on_piece: Callable[[str], object] | None = None,
) -> Generation:
    """Describe the image from its prompt (build_prompt's), with the generation limits every
    description gets. Raises what the describer raises (ModelError and its GenerationError),
    after any pieces handed over."""
    described = describer.describe(
        image,
        prompt,
        max_new_tokens=settings.TINYRAG_VLM_MAX_NEW_TOKENS,
        min_new_tokens=settings.TINYRAG_VLM_MIN_NEW_TOKENS,
        on_piece=on_piece,
    )
    return Generation(described.text, described.tokens)
