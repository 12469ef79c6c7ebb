"""Class names in Bahasa Indonesia: TinyRAG's table of the TinyImageNet classes (complete,
each name's source true to the Wordnet Bahasa extract), an image folder's own
class_names.tsv (good and bad), the class picker in both languages, the collection's pages
and the classes API in the page language."""

from __future__ import annotations

import csv
import re
from collections import defaultdict
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.urls import reverse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from search.catalog.choices import class_options
from search.catalog.models import Dataset, Image, ImageClass
from tests.fixtures.tinyimagenet import CLASSES, jpeg_bytes

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "search" / "catalog" / "data"
EXTRACT = DATA / "wordnet-bahasa" / "tinyimagenet-200-ind.tsv"
TABLE = DATA / "tinyimagenet-200-id.tsv"
INDONESIAN_PAGE = {"HTTP_ACCEPT_LANGUAGE": "id"}


def lemmas(text: str) -> list[str]:
    return [x.strip() for x in text.split(";") if x.strip()]


def extract() -> dict[str, dict]:
    """The unchanged Wordnet Bahasa extract, read here with csv (not the product's reader)."""
    with EXTRACT.open(encoding="utf-8") as f:
        return {row["wnid"]: row for row in csv.DictReader(f, delimiter="\t")}


def table() -> dict[str, dict]:
    """TinyRAG's table, read here with csv: its comment lines skipped."""
    with TABLE.open(encoding="utf-8") as f:
        lines = [line for line in f if not line.startswith("#")]
    return {row["wnid"]: row for row in csv.DictReader(lines, delimiter="\t")}


# --- the table of the TinyImageNet classes ----------------------------------------------------


def test_every_tinyimagenet_class_has_an_indonesian_name_with_a_known_source():
    from search.catalog.class_names import tinyimagenet_names

    wnids = list(extract())  # the 200 classes of TinyImageNet-200 (wnids.txt's set)
    assert len(wnids) == len(set(wnids)) == 200
    names = tinyimagenet_names()
    assert sorted(names) == sorted(wnids)
    for wnid in wnids:
        assert names[wnid].name.strip(), wnid
        assert names[wnid].source in {"wordnet-bahasa", "wiktionary-cldr", "tinyrag"}, wnid
    assert set(CLASSES) <= set(names)  # the synthetic fixture's real wnids


def test_the_issues_examples_are_the_usual_words():
    from search.catalog.class_names import tinyimagenet_names

    names = tinyimagenet_names()
    assert names["n02124075"].name == "kucing mesir"  # Egyptian cat
    assert names["n04146614"].names == ("bus sekolah", "bis sekolah")  # school bus
    assert names["n04540053"].name == "bola voli"  # volleyball
    assert (names["n02124075"].source, names["n04540053"].source) == ("tinyrag", "tinyrag")


def test_each_rows_source_says_truly_where_its_name_came_from():
    """wordnet-bahasa: the name is one of the synset's Wordnet Bahasa lemmas; wiktionary-cldr:
    one of its Wiktionary/CLDR lemmas; tinyrag: neither (all 105 classes without lemmas)."""
    source_of = extract()
    rows = table()
    without_lemmas = 0
    for wnid, row in rows.items():
        wordnet = {x.casefold() for x in lemmas(source_of[wnid]["wordnet_bahasa"])}
        wiktionary = {x.casefold() for x in lemmas(source_of[wnid]["wiktionary_cldr"])}
        name = row["name"].casefold()
        expected = (
            "wordnet-bahasa"
            if name in wordnet
            else "wiktionary-cldr"
            if name in wiktionary
            else "tinyrag"
        )
        assert row["source"] == expected, wnid
        if not wordnet | wiktionary:
            without_lemmas += 1
            assert row["source"] == "tinyrag", wnid
    assert without_lemmas == 105


def test_every_lemma_is_a_name_a_synonym_or_listed_as_not_used():
    source_of = extract()
    for wnid, row in table().items():
        kept = {x.casefold() for x in [row["name"], *lemmas(row["synonyms"])]}
        left_out = {x.casefold() for x in lemmas(row["not_used"])}
        for lemma in lemmas(source_of[wnid]["wordnet_bahasa"]) + lemmas(
            source_of[wnid]["wiktionary_cldr"]
        ):
            assert lemma.casefold() in kept ^ left_out, (wnid, lemma)


def test_no_name_or_synonym_belongs_to_two_classes():
    from search.catalog.class_names import tinyimagenet_names

    owners = defaultdict(set)
    for wnid, name in tinyimagenet_names().items():
        for n in name.names:
            owners[" ".join(n.split()).casefold()].add(wnid)
    assert {n: w for n, w in owners.items() if len(w) > 1} == {}


def test_the_licence_and_citation_travel_with_the_lemmas_and_nothing_points_outside():
    licence = (DATA / "wordnet-bahasa" / "LICENSE-wordnet-bahasa").read_text()
    assert "MIT License" in licence
    assert "Francis Bond" in licence
    assert "Noor" in (DATA / "wordnet-bahasa" / "citation-wordnet-bahasa.bib").read_text()
    header = TABLE.read_text().split("\nwnid\t")[0]
    assert "TinyRAG's own work" in header
    for path in [*DATA.rglob("*"), ROOT / "search" / "catalog" / "class_names.py"]:
        if path.is_file():
            assert "../shared" not in path.read_text(), path


# --- an image folder's class_names.tsv ---------------------------------------------------------


def image_folder(root: Path, names: str | None = None) -> Path:
    for cls in ("tabby_cat", "beagle", "school_bus"):
        (root / "train" / cls).mkdir(parents=True, exist_ok=True)
        (root / "train" / cls / "0.png").write_bytes(jpeg_bytes((9, 9, 9), len(cls)))
    if names is not None:
        (root / "class_names.tsv").write_text(names, encoding="utf-8")
    return root


def import_folder(root: Path, *args) -> None:
    call_command(
        "import_dataset", "--root", str(root), "--format", "imagefolder", "--name", "pets",
        "--workers", "0", *args, verbosity=0,
    )  # fmt: skip


GOOD = (
    "# names for the pets\n"
    "class\tlanguage\tname\tsynonyms\n"
    "tabby_cat\ten\ttabby\ttabby cat; striped cat\n"
    "tabby_cat\tid\tkucing belang\tkucing tabby;  kucing loreng ; kucing belang\n"
    "\n"
    "school_bus\tid\tbus sekolah\tbis sekolah\n"
)


@pytest.mark.django_db
def test_an_image_folder_brings_its_own_names(tmp_path):
    import_folder(image_folder(tmp_path / "pets", GOOD))

    classes = {c.wnid: c for c in ImageClass.objects.filter(dataset__name="pets")}
    tabby = classes["tabby_cat"]
    assert (tabby.name, tabby.names) == ("tabby", ["tabby", "tabby cat", "striped cat"])
    assert tabby.translations == {
        "id": {
            "name": "kucing belang",
            "synonyms": ["kucing belang", "kucing tabby", "kucing loreng"],
            "source": "collection",
        }
    }
    bus = classes["school_bus"]
    assert (bus.name, bus.names_in("id")) == ("school bus", ["bus sekolah", "bis sekolah"])
    beagle = classes["beagle"]  # no row: the folder's name, and English on Indonesian pages
    assert (beagle.name, beagle.translations, beagle.name_in("id")) == ("beagle", {}, "beagle")
    assert Image.objects.filter(dataset__name="pets").count() == 3  # the file is no image


@pytest.mark.django_db
def test_a_reimport_follows_the_edited_file(tmp_path):
    root = image_folder(tmp_path / "pets", GOOD)
    import_folder(root)
    (root / "class_names.tsv").write_text(
        "class\tlanguage\tname\nbeagle\tid\tanjing beagle\n", encoding="utf-8"
    )
    import_folder(root)
    classes = {c.wnid: c for c in ImageClass.objects.filter(dataset__name="pets")}
    assert classes["beagle"].translations["id"]["name"] == "anjing beagle"
    assert (classes["tabby_cat"].name, classes["tabby_cat"].translations) == ("tabby cat", {})


BAD_LINES = [
    ("tabby_dog\tid\tanjing\t\n", "line 2: there is no class folder called 'tabby_dog'"),
    ("beagle\tfr\tbeagle\t\n", "line 2: the language must be one of en, id, not 'fr'"),
    ("beagle\tid\t  \t\n", "line 2: the name of 'beagle' is empty"),
    ("beagle\tid\ta\tb\tc\n", "line 2: 5 fields, the header has 4"),
    ("beagle\tid\t" + "x" * 256 + "\t\n", "line 2: the name is longer than 255 characters"),
    (
        "beagle\tid\tanjing beagle\t\nbeagle\tID\tbeagle\t\n",
        "line 3: 'beagle' in 'ID' is already named on line 2",
    ),
]


@pytest.mark.django_db
@pytest.mark.parametrize(("lines", "message"), BAD_LINES)
def test_a_bad_line_stops_the_import_naming_it_and_nothing_is_lost(tmp_path, lines, message):
    root = image_folder(tmp_path / "pets", GOOD)
    import_folder(root)
    before = list(ImageClass.objects.order_by("wnid").values_list("wnid", "name", "translations"))
    (root / "train" / "beagle" / "1.png").write_bytes(jpeg_bytes((1, 1, 1), 1))
    (root / "class_names.tsv").write_text("class\tlanguage\tname\tsynonyms\n" + lines)

    with pytest.raises(CommandError) as raised:
        import_folder(root)

    assert message in str(raised.value)
    assert "class_names.tsv" in str(raised.value)
    after = list(ImageClass.objects.order_by("wnid").values_list("wnid", "name", "translations"))
    assert after == before
    assert Image.objects.count() == 3  # the new image waits for a good file


@pytest.mark.django_db
def test_every_bad_line_is_named_and_a_bad_header_is_refused(tmp_path):
    root = image_folder(tmp_path / "pets", "class\tlanguage\tname\nnope\tid\tx\nbeagle\tde\ty\n")
    with pytest.raises(CommandError, match="line 2: .*'nope'; line 3: .*not 'de'"):
        import_folder(root)
    (root / "class_names.tsv").write_text("folder\tlanguage\tname\nbeagle\tid\tx\n")
    with pytest.raises(CommandError, match="line 1: the header must be"):
        import_folder(root)
    (root / "class_names.tsv").write_bytes(b"class\tlanguage\tname\nbeagle\tid\t\xff\n")
    with pytest.raises(CommandError, match="not UTF-8"):
        import_folder(root)
    assert not Dataset.objects.exists()


def test_check_dataset_names_the_bad_lines_of_an_image_folder(tmp_path, capsys):
    root = image_folder(tmp_path / "pets", GOOD)
    call_command("check_dataset", "--root", str(root), "--format", "imagefolder", "--workers", "0")
    out = capsys.readouterr().out
    assert "3 classes" in out
    assert "Complete and clean." in out

    (root / "class_names.tsv").write_text("class\tlanguage\tname\nbeagle\txx\tb\n")
    with pytest.raises(CommandError, match="1 problems found"):
        call_command(
            "check_dataset", "--root", str(root), "--format", "imagefolder", "--workers", "0"
        )
    assert "line 2: the language must be one of en, id, not 'xx'" in capsys.readouterr().err


# --- the class picker ----------------------------------------------------------------------


def a_class(wnid: str, name: str, names: list[str], id_names: list[str] | None = None):
    translations = (
        {"id": {"name": id_names[0], "synonyms": id_names, "source": "t"}} if id_names else {}
    )
    return ImageClass(wnid=wnid, name=name, names=names, translations=translations)


PICKER = [
    a_class("n1", "Egyptian cat", ["Egyptian cat"], ["kucing mesir", "mau mesir"]),
    a_class("n2", "school bus", ["school bus"], ["bus sekolah", "bis sekolah"]),
    a_class("n3", "abacus", ["abacus"], ["sempoa", "swipoa"]),
    a_class("n4", "bullet train", ["bullet train", "bullet"], ["kereta cepat"]),
    a_class("n5", "projectile", ["projectile", "missile"], ["rudal", "peluru"]),
    a_class("n6", "lemon", ["lemon"]),  # no Indonesian name: English everywhere
]


def test_the_picker_lists_indonesian_labels_in_indonesian_order():
    options = class_options(PICKER, "id")
    assert list(options) == [
        ("bus sekolah", "n2"),
        ("kereta cepat", "n4"),
        ("kucing mesir", "n1"),
        ("lemon", "n6"),
        ("rudal", "n5"),
        ("sempoa", "n3"),
    ]
    assert options.hint("n1") == "Egyptian cat"
    assert options.hint("n6") == ""


def test_the_picker_lists_english_labels_on_english_pages():
    options = class_options(PICKER, "en")
    assert [label for label, _ in options] == [
        "abacus",
        "bullet train",
        "Egyptian cat",
        "lemon",
        "projectile",
        "school bus",
    ]
    assert options.hint("n2") == "bus sekolah"
    assert options.hinted[0] == ("abacus", "n3", "sempoa")


@pytest.mark.parametrize("language", ["id", "en"])
@pytest.mark.parametrize(
    ("typed", "wnid"),
    [
        ("Kucing  Mesir", "n1"),  # the Indonesian name, any case and spacing
        ("mau mesir", "n1"),  # an Indonesian synonym
        ("BIS SEKOLAH", "n2"),
        ("egyptian cat", "n1"),  # the English name
        ("missile", "n5"),  # an English synonym
        ("bullet", "n4"),  # English synonym of one class...
        ("peluru", "n5"),  # ...Indonesian synonym of another: each in its own language
        ("N3", "n3"),  # the wnid
        ("lemon", "n6"),
        ("kucing", None),  # a part of a name is not a name
        ("", None),
    ],
)
def test_the_picker_takes_a_name_or_synonym_in_either_language(language, typed, wnid):
    assert class_options(PICKER, language).wnid_of(typed) == wnid


def test_two_classes_named_alike_in_the_page_language_are_told_apart():
    classes = [
        a_class("n1", "crane", ["crane"], ["derek"]),
        a_class("n2", "tow truck", ["tow truck", "wrecker"], ["derek", "mobil derek"]),
        a_class("n3", "reel", ["reel"], ["gulungan"]),
    ]
    options = class_options(classes, "id")
    assert list(options) == [("derek (n1)", "n1"), ("derek (n2)", "n2"), ("gulungan", "n3")]
    assert (options.wnid_of("Derek (N2)"), options.wnid_of("derek")) == ("n2", None)
    assert options.wnid_of("mobil derek") == "n2"
    assert list(class_options(classes, "en"))[0] == ("crane", "n1")  # English: no clash


def test_a_synonym_two_classes_share_names_neither():
    classes = [
        a_class("n1", "orange", ["orange"], ["jeruk", "limau"]),
        a_class("n2", "lemon", ["lemon"], ["lemon", "limau"]),
    ]
    options = class_options(classes, "id")
    assert (options.wnid_of("limau"), options.wnid_of("jeruk")) == (None, "n1")


# --- the pages and the API in the page language -----------------------------------------------


@pytest.mark.django_db
def test_collections_list_indonesian_names_in_indonesian_order(auth_client, dataset_imported):
    page = auth_client.get(reverse("search:collections"), **INDONESIAN_PAGE).content.decode()
    listed = re.findall(r'<a href="/classes/\d+/">([^<]+)</a>', page)
    # by hand from the table: anjing herder, kucing mesir, gulungan pancing, lemon
    assert listed == ["anjing herder", "gulungan pancing", "kucing mesir", "lemon"]
    names = re.search(r'<li data-names="([^"]*)"><a href="/classes/\d+/">kucing mesir<', page)
    assert names.group(1) == "egyptian cat kucing mesir mau mesir n02124075"


@pytest.mark.django_db
def test_the_filter_names_hold_both_languages_on_english_pages(auth_client, dataset_imported):
    page = auth_client.get(reverse("search:collections")).content.decode()
    listed = re.findall(r'<a href="/classes/\d+/">([^<]+)</a>', page)
    assert listed == ["Egyptian cat", "German shepherd", "lemon", "reel"]
    assert 'data-names="egyptian cat kucing mesir mau mesir n02124075"' in page


@pytest.mark.django_db
def test_class_and_image_pages_name_the_class_in_the_cookies_language(
    auth_client, dataset_imported
):
    auth_client.cookies[settings.LANGUAGE_COOKIE_NAME] = "id"
    cat = ImageClass.objects.get(wnid="n02124075")
    page = auth_client.get(reverse("search:class", args=[cat.pk])).content.decode()
    assert "<h1>kucing mesir</h1>" in page
    assert "mau mesir." in page
    assert "Egyptian cat" in page  # "In English: Egyptian cat", in the page language
    assert '<li aria-current="page">kucing mesir</li>' in page

    image = Image.objects.filter(image_class=cat).first()
    page = auth_client.get(reverse("search:image", args=[image.pk])).content.decode()
    assert "<h1>kucing mesir</h1>" in page
    assert f'<a href="{reverse("search:class", args=[cat.pk])}">kucing mesir</a>' in page
    assert 'alt="kucing mesir"' in page


@pytest.mark.django_db
def test_an_english_class_page_gives_the_indonesian_name_too(auth_client, dataset_imported):
    reel = ImageClass.objects.get(wnid="n04067472")
    page = auth_client.get(reverse("search:class", args=[reel.pk])).content.decode()
    assert "<h1>reel</h1>" in page
    assert "In Bahasa Indonesia: gulungan pancing" in page


@pytest.mark.django_db
def test_the_classes_api_gives_both_languages(user, dataset_imported):
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    rows = {c["wnid"]: c for c in api.get("/api/v1/classes/").json()["results"]}
    cat = rows["n02124075"]
    assert (cat["name"], cat["display_name"]) == ("Egyptian cat", "Egyptian cat")
    assert cat["translations"] == {
        "id": {
            "name": "kucing mesir",
            "synonyms": ["kucing mesir", "mau mesir"],
            "source": "tinyrag",
        }
    }
    in_indonesian = api.get("/api/v1/classes/", **INDONESIAN_PAGE).json()["results"]
    assert {c["wnid"]: c["display_name"] for c in in_indonesian}["n02124075"] == "kucing mesir"
