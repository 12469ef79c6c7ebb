"""Per-route latency of one text query on the CPU: what each text route costs a search.

    .venv/bin/python benchmarks/query_routing.py [--repeats 5] [--threads 2]

Builds the full-size architectures with random weights in a temporary folder (no
downloads; the cost of a forward pass does not depend on the weights' values):

  clip:          CLIP ViT-B/32 (sentence-transformers/clip-ViT-B-32 layout), text tower
                 with the prompt template;
  multilingual:  DistilBERT-multilingual (6 layers, 768 wide, 119,547-token vocabulary) +
                 mean pooling + Dense 768 -> 512, as clip-ViT-B-32-multilingual-v1;
  translate:     a MarianMT of opus-mt-id-en's size (6 + 6 layers, 512 wide, 54,796 tokens)
                 then CLIP's text tower.

and times them through the product's own wrappers (search.ml.clip, search.ml.translate),
plus language detection and subject stripping (search.queries.routing). Random weights never
emit the end-of-sentence token, so the translate route is timed at the token bound
(`max-new-tokens`, the worst case) and at a short query's translation (6 tokens: "Egyptian
cat" with its end token is about 4 with opus-mt's vocabulary). Medians of `--repeats` runs
after two warm-ups. Takes about 1-2 minutes on 2 idle cores.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

QUERY = "cari kucing mesir"
SUBJECT = "kucing mesir"


def median_ms(run, repeats: int) -> float:
    for _ in range(2):
        run()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--beams", type=int, default=4, help="TINYRAG_TRANSLATE_BEAMS")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tinyrag_site.settings")
    os.environ.setdefault("DEBUG", "1")
    django.setup()  # routing imports the catalogue's models; no database is opened
    from search.ml.clip import ClipEmbedder, SentenceTransformerEmbedder
    from search.ml.translate import Translator
    from search.queries import routing
    from tests.fixtures.models import (
        DISTILBERT_MULTILINGUAL,
        OPUS_MT_ID_EN,
        VIT_B_32,
        build_clip,
        build_marian,
        build_multilingual_text,
    )

    with tempfile.TemporaryDirectory(prefix="tinyrag-bench-routing-") as tmp:
        started = time.perf_counter()
        clip_dir = build_clip(Path(tmp) / "clip", VIT_B_32)
        text_dir = build_multilingual_text(
            Path(tmp) / "multilingual",
            out_dim=VIT_B_32.projection_dim,
            arch=DISTILBERT_MULTILINGUAL,
            words=tuple(SUBJECT.split()),
        )
        marian_dir = build_marian(Path(tmp) / "marian", OPUS_MT_ID_EN)
        print(f"built the three models in {time.perf_counter() - started:.0f} s")

        clip = ClipEmbedder(str(clip_dir))
        multilingual = SentenceTransformerEmbedder(str(text_dir))
        bounded = Translator(
            str(marian_dir), num_beams=args.beams, max_new_tokens=args.max_new_tokens
        )
        short = Translator(str(marian_dir), num_beams=args.beams, max_new_tokens=6)
        greedy = Translator(str(marian_dir), num_beams=1, max_new_tokens=6)
        started = time.perf_counter()
        for model in (clip, multilingual, bounded, short, greedy):
            model.load()
        print(f"loaded in {time.perf_counter() - started:.1f} s (fp32, {args.threads} threads)\n")

        # detection needs no database here: the class vocabulary is the two words' languages
        routing.class_vocabulary = lambda: {"en": frozenset(), "id": frozenset()}
        prompt = "a photo of a {query}."
        english = prompt.format(query="Egyptian cat")

        def translate_then_clip(translator):
            return lambda: (translator.translate([SUBJECT]), clip.embed_texts([english]))

        rows = [
            ("read_query (detect + strip)",
             lambda: (routing.detect_language(QUERY), routing.strip_request_words(QUERY))),
            ("clip: CLIP text tower", lambda: clip.embed_texts([english])),
            ("multilingual: DistilBERT + Dense", lambda: multilingual.embed_texts([SUBJECT])),
            ("translate, greedy, 6 tokens + CLIP", translate_then_clip(greedy)),
            (f"translate, {args.beams} beams, 6 tokens + CLIP", translate_then_clip(short)),
            (f"translate, {args.beams} beams, {args.max_new_tokens} tokens (bound) + CLIP",
             translate_then_clip(bounded)),
        ]  # fmt: skip
        print(f"{'route':<52} {'median ms':>10}")
        for name, run in rows:
            print(f"{name:<52} {median_ms(run, args.repeats):>10.2f}")


if __name__ == "__main__":
    main()
