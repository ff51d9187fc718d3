"""Property-based fuzzing of every parser of user input: arbitrary text and bytes give a valid object or an
``OODLabError`` (never another exception), within a bounded time and memory."""

from __future__ import annotations

import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ood_core import reports, tuning
from ood_core.errors import OODLabError
from ood_core.inputs import registry_file
from ood_core.inputs.datasets import imglist_image_set
from ood_core.inputs.uploads import read_uploads
from ood_core.scores import METHODS
from ood_core.workspace import Workspace, load_workspace
from pages.ui import links
from pages.ui.controls import link_parser

PEAK_MB = 64
FUZZ = settings(
    max_examples=150,
    deadline=3_000,  # ms per example
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
TEXT = st.one_of(
    st.text(max_size=400),
    st.binary(max_size=400).map(lambda b: b.decode("latin-1")),
    st.sampled_from(["[" * 5000, "{" * 5000, "1e400", "nan", "-0", "9" * 5000]),
)


class _Bounded:
    """Assert that the block's Python allocations peak under ``PEAK_MB``."""

    def __enter__(self):
        tracemalloc.start()

    def __exit__(self, *exc):
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert peak < PEAK_MB * 2**20, f"peak {peak / 2**20:.0f} MB"
        return False


@pytest.fixture(scope="module")
def demo(demo_model):
    return load_workspace(Workspace())


@FUZZ
@given(content=TEXT)
def test_tuned_json_is_a_valid_file_or_one_error(demo, tmp_path, content):
    path = tmp_path / "tuned.json"
    path.write_text(content, encoding="utf-8", errors="surrogateescape")
    with _Bounded():
        try:
            tuned = tuning.load(path, demo)
        except OODLabError:
            return
    assert isinstance(tuned, tuning.Tuned)


@FUZZ
@given(
    protocol=st.dictionaries(
        st.sampled_from(
            ["pseudo", "sets", "id_source", "id_fraction", "seed", "description", "x"]
        ),
        st.one_of(
            st.none(),
            st.integers(-(2**70), 2**70),
            st.floats(),
            st.text(max_size=30),
            st.lists(st.text(max_size=10), max_size=3),
        ),
    )
)
def test_protocol_fields_are_a_valid_protocol_or_one_error(protocol):
    try:
        checked = tuning.protocol(**protocol)
    except OODLabError:
        return
    assert 0 < checked.id_fraction < 1 and checked.seed >= 0
    assert checked.id_source in ("test", "train")


@FUZZ
@given(meta=TEXT, table=TEXT)
def test_saved_reports_are_read_or_listed_as_problems(tmp_path_factory, meta, table):
    folder = tmp_path_factory.mktemp("reports")
    (folder / "r.json").write_text(meta, encoding="utf-8", errors="surrogateescape")
    (folder / "r.csv").write_text(table, encoding="utf-8", errors="surrogateescape")
    with _Bounded():
        found, problems = reports.saved(folder)
    assert len(found) + len(problems) == 1


@FUZZ
@given(content=TEXT)
def test_the_registry_file_is_read_into_entries_and_problems(tmp_path_factory, content):
    path = tmp_path_factory.mktemp("registry") / "ood_lab.toml"
    path.write_text(content, encoding="utf-8", errors="surrogateescape")
    with _Bounded():
        registry = registry_file.read(path, architectures=lambda: ["resnet18"])
    assert isinstance(registry, registry_file.Registry)


@FUZZ
@given(content=TEXT)
def test_an_image_list_is_an_image_set_or_one_error(tmp_path_factory, content):
    root = tmp_path_factory.mktemp("imglist")
    listing = root / "list.txt"
    listing.write_text(content, encoding="utf-8", errors="surrogateescape")
    with _Bounded():
        try:
            images, identity = imglist_image_set(root, listing)
        except OODLabError:
            return
    assert len(images) == identity["n"] > 0
    assert ((images.labels >= -1) & (images.labels < 2**31)).all()


@FUZZ
@given(
    files=st.lists(
        st.tuples(st.text(max_size=30), st.binary(max_size=3000)), max_size=6
    )
)
def test_an_upload_batch_never_raises(files):
    with _Bounded():
        result = read_uploads(files)
    assert len(result.images) <= len(files) or any(
        name.endswith(".zip") or data[:2] == b"PK" for name, data in files
    )


PARAMETERS = [
    (method, p)
    for method in METHODS.values()
    for p in method.params
    if p.numeric or p.kind in ("block", "blocks")
]


@FUZZ
@given(index=st.integers(0, len(PARAMETERS) - 1), text=TEXT)
def test_a_deep_link_value_is_a_value_its_widget_takes_or_one_error(index, text):
    method, p = PARAMETERS[index]
    blocks = ["layer1.0", "layer2.0", "layer4.0"]
    try:
        value = link_parser(p, method, blocks)(text)
    except OODLabError:
        return
    if p.kind == "blocks":
        assert all(b in blocks for b in value)
    elif p.kind == "block":
        assert value in blocks
    else:
        assert p.low <= value <= p.high


@FUZZ
@given(text=TEXT)
def test_link_flags_and_choices_parse_or_fail_in_one_line(text):
    for parse in (
        links.flag,
        links.number,
        lambda t: links.one_of(["a", 1, "NAP-ReAct"], t),
        lambda t: links.some_of(["a", "b"], t),
    ):
        try:
            parse(text)
        except OODLabError:
            pass
