"""Try your own images: safe reading (limits, zips, bombs, non-images), scoring, and the page."""

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from ood_core.engine.features import in_memory_features
from ood_core.engine.features import model_named as loaded_model
from ood_core.inputs.uploads import KEEP_SIDE, read_uploads
from ood_core.scores import get_method
from ood_core.tables import placement
from ood_core.workspace import Workspace, load_workspace

APP = str(Path(__file__).resolve().parent.parent / "app.py")
RNG = np.random.default_rng(0)


def encode(array: np.ndarray, fmt: str = "PNG", mode: str | None = None) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array, mode).save(buffer, fmt)
    return buffer.getvalue()


def zipped(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


GREY = encode((RNG.random((20, 30)) * 255).astype(np.uint8))
RGBA = encode((RNG.random((64, 48, 4)) * 255).astype(np.uint8))
JPEG = encode((RNG.random((100, 80, 3)) * 255).astype(np.uint8), "JPEG")


def test_png_jpeg_grey_and_rgba_are_accepted_and_the_rest_rejected_with_reasons():
    gif = io.BytesIO()
    Image.new("P", (8, 8)).save(gif, "GIF")
    result = read_uploads(
        [
            ("grey.png", GREY),
            ("rgba.png", RGBA),
            ("photo.jpg", JPEG),
            ("notes.txt", b"hello"),
            ("anim.gif", gif.getvalue()),
            ("truncated.png", RGBA[: len(RGBA) // 2]),
        ]
    )
    assert list(result.images) == ["grey.png", "rgba.png", "photo.jpg"]
    assert [img.mode for img in result.images.values()] == ["L", "RGBA", "RGB"]
    reasons = dict(result.rejected)
    assert set(reasons) == {"notes.txt", "anim.gif", "truncated.png"}
    assert reasons["notes.txt"].startswith("not a readable image")
    assert reasons["anim.gif"] == "not a PNG or JPEG image (GIF)"
    assert reasons["truncated.png"].startswith("not a readable image")


def test_a_decompression_bomb_is_refused_from_its_header():
    bomb = io.BytesIO()
    Image.new("L", (12_000, 12_000)).save(
        bomb, "PNG"
    )  # 144 Mpx of zeros: a few hundred kB
    assert len(bomb.getvalue()) < 1_000_000
    result = read_uploads([("bomb.png", bomb.getvalue())])
    assert not result.images
    assert "possible decompression bomb" in result.rejected[0][1]


def test_size_and_count_limits():
    result = read_uploads(
        [("big.png", JPEG)] + [(f"{i}.png", GREY) for i in range(5)],
        max_images=3,
        max_bytes=len(JPEG) - 1,
    )
    assert list(result.images) == ["0.png", "1.png", "2.png"]
    reasons = dict(result.rejected)
    assert reasons["3.png"] == "over the limit of 3 images per upload"
    assert "larger than" in reasons["big.png"]


def test_zip_members_are_read_in_memory_and_lying_headers_do_not_help():
    archive = zipped(
        {
            "a/grey.png": GREY,
            "__MACOSX/a/._grey.png": b"junk",
            "b/photo.jpg": encode(
                (RNG.random((16, 16, 3)) * 255).astype(np.uint8), "JPEG"
            ),
            "readme.txt": b"x",
            "huge.png": b"\0" * 5000,
        }
    )
    result = read_uploads([("set.zip", archive)], max_bytes=4000)
    assert list(result.images) == ["set.zip/a/grey.png", "set.zip/b/photo.jpg"]
    reasons = dict(result.rejected)
    assert "larger than" in reasons["set.zip/huge.png"]
    assert reasons["set.zip/readme.txt"].startswith("not a readable image")
    # A member whose header under-states its size is cut off at the limit while reading.
    patched = bytearray(archive)
    central = patched.rfind(b"PK\x01\x02")
    while (
        central != -1
    ):  # rewrite every uncompressed size in the central directory to 1 byte
        patched[central + 24 : central + 28] = (1).to_bytes(4, "little")
        central = patched.rfind(b"PK\x01\x02", 0, central)
    lied = read_uploads([("lie.zip", bytes(patched))], max_bytes=4000)
    assert "lie.zip/huge.png" not in lied.images


def test_broken_zip_is_a_reason_not_a_crash():
    result = read_uploads([("bad.zip", zipped({"x.png": GREY})[:-30])])
    assert not result.images
    assert result.rejected and result.rejected[0][0] == "bad.zip"


@pytest.fixture(scope="module")
def features(demo_model):
    return load_workspace(Workspace())


def test_upload_scores_equal_the_cached_scores_of_the_same_images(features):
    """Uploading test digits must reproduce their cached scores (same transform, same statistics)."""
    from ood_core.inputs.datasets import DEMO_DATASETS

    images, _ = DEMO_DATASETS["digits"].load("test")
    rows = np.asarray(features.id_test["index"])[:6]
    files = []
    for row in rows:
        buffer = io.BytesIO()
        images.image(int(row)).save(buffer, "PNG")
        files.append((f"digit{row}.png", buffer.getvalue()))
    uploads = read_uploads(files)
    scored = in_memory_features(loaded_model("demo"), uploads.images)
    for name in ("energy", "nap", "knn", "featurenorm"):
        method = get_method(name)
        np.testing.assert_allclose(
            features.score_set(method, scored),
            features.score_set(method, features.id_test)[:6],
            rtol=1e-4,
            atol=1e-4,
        )
    table = placement(
        features, scored, list(uploads.images), [get_method("msp"), get_method("nap")]
    )
    assert len(table) == 12
    reference = np.sort(features.score_set(get_method("nap"), features.id_test))
    nap = table[table["method"] == "NAP"]
    expected = [100 * np.mean(reference < s) for s in nap["score"]]  # brute force
    np.testing.assert_allclose(nap["ID percentile"], expected)
    assert set(nap["verdict"]) <= {"ID-like", "OOD-like"}


def test_the_page_scores_uploads_flags_noise_and_lists_rejections(features):
    at = AppTest.from_file(APP, default_timeout=300).run()
    at.switch_page("pages/uploads.py").run()
    assert not at.exception
    noise = encode((RNG.random((32, 32)) * 255).astype(np.uint8))
    at.file_uploader(key="_uploader_0").set_value(
        [
            ("noise.png", noise, "image/png"),
            ("photo.jpg", JPEG, "image/jpeg"),
            ("evil.png", b"<script>alert(1)</script>", "image/png"),
        ]
    ).run()
    assert not at.exception, [e.value for e in at.exception]
    assert "1 file(s) were not used" in at.warning[0].value
    rejected = at.dataframe[0].value
    assert rejected["file"].tolist() == ["evil.png"]
    summary = at.dataframe[1].value
    assert summary["image"].tolist() == ["noise.png", "photo.jpg"]
    verdicts = at.dataframe[2].value  # one row per method, one column per image
    assert list(verdicts.columns) == ["noise.png", "photo.jpg"]
    assert verdicts.loc["NAP", "noise.png"] < 5  # noise is OOD-like for NAP
    flagged = (verdicts < 5).sum()
    assert summary["flagged OOD-like by"].tolist() == [
        f"{n} of {len(verdicts)} methods" for n in flagged
    ]
    pictures = at.get("image")[0].value
    assert len(pictures) == 2
    at.radio(key="upload_overlay").set_value("NAP peaks").run()
    assert not at.exception
    at.slider(key="upload_opacity").set_value(0.1).run()
    assert not at.exception
    assert at.get("image")[0].value != pictures


def test_sixteen_bit_png_is_scaled_not_clipped_to_white():
    values = np.array([[0, 16384, 32768, 65535]] * 4, np.uint16)
    buffer = io.BytesIO()
    Image.fromarray(values).save(buffer, "PNG")
    [image] = read_uploads([("deep.png", buffer.getvalue())]).images.values()
    assert image.mode == "L"
    assert np.asarray(image)[0].tolist() == [0, 64, 128, 255]


def test_phone_camera_mpo_is_accepted_and_exif_orientation_is_applied():
    wide = (RNG.random((20, 40, 3)) * 255).astype(np.uint8)
    mpo = io.BytesIO()
    Image.fromarray(wide).save(
        mpo, "MPO", save_all=True, append_images=[Image.fromarray(wide)]
    )
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    rotated = io.BytesIO()
    Image.fromarray(wide).save(rotated, "JPEG", exif=exif)
    result = read_uploads(
        [("phone.jpg", mpo.getvalue()), ("portrait.jpg", rotated.getvalue())]
    )
    assert result.rejected == []
    assert result.images["phone.jpg"].size == (40, 20)
    assert result.images["portrait.jpg"].size == (
        20,
        40,
    )  # displayed upright, as the camera meant


def test_duplicate_names_are_kept_apart_and_reasons_are_words():
    archive = zipped({"a/x.png": GREY, "b/x.png": RGBA})
    result = read_uploads(
        [
            ("x.png", GREY),
            ("x.png", RGBA),
            ("s.zip", archive),
            ("junk.png", b"\x00" * 50),
        ]
    )
    assert list(result.images) == [
        "x.png",
        "x.png (2)",
        "s.zip/a/x.png",
        "s.zip/b/x.png",
    ]
    [(name, reason)] = result.rejected
    assert (
        name == "junk.png"
        and reason == "not a readable image: not a recognised image format"
    )
    assert "<_io" not in reason and "object at" not in reason


def test_big_images_are_shrunk_after_decoding():
    big = io.BytesIO()
    Image.new("RGB", (3000, 1500), (10, 200, 30)).save(big, "PNG")
    [image] = read_uploads([("big.png", big.getvalue())]).images.values()
    assert image.size == (KEEP_SIDE, KEEP_SIDE // 2)


PEAK = """
import io, sys, zipfile
from pathlib import Path
from ood_core.inputs.uploads import KEEP_SIDE, read_uploads

def peak_mb():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024

data = Path(sys.argv[1]).read_bytes()
before = peak_mb()
result = read_uploads([("upload.zip", data)])
print(peak_mb() - before, len(result.images), len(result.rejected))
"""


def _peak_growth(tmp_path, archive: bytes) -> tuple[float, int, int]:
    """Peak resident memory added by reading ``archive`` in a fresh process (MB), images kept, files refused."""
    import subprocess
    import sys

    path = tmp_path / "upload.zip"
    path.write_bytes(archive)
    out = subprocess.run(
        [sys.executable, "-c", PEAK, str(path)],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parent.parent,
    ).stdout.split()
    return float(out[0]), int(out[1]), int(out[2])


def test_a_bzip2_zip_bomb_costs_bounded_memory(tmp_path):
    """60 bzip2 members of 10 MiB of zeros: an ~8 kB zip that used to be read whole (≈ 610 MB)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_BZIP2) as archive:
        for i in range(60):
            archive.writestr(f"m{i}.png", b"\0" * (10 * 2**20 - 1))
    assert len(buffer.getvalue()) < 50_000
    growth, images, refused = _peak_growth(tmp_path, buffer.getvalue())
    assert images == 0 and refused >= 1
    assert growth < 150, f"reading the bomb raised the peak RSS by {growth:.0f} MB"


def test_many_huge_images_in_a_small_zip_cost_bounded_memory(tmp_path):
    """12 images of 36 megapixels (1.7 MB zipped) used to be kept fully decoded (≈ 1.8 GB)."""
    picture = io.BytesIO()
    Image.new("RGB", (6000, 6000), (200, 120, 40)).save(picture, "PNG")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for i in range(12):
            archive.writestr(f"huge{i}.png", picture.getvalue())
    growth, images, refused = _peak_growth(tmp_path, buffer.getvalue())
    assert (
        images == 4 and refused == 8
    )  # the per-upload pixel budget stops decoding after four
    assert growth < 300, (
        f"reading the huge images raised the peak RSS by {growth:.0f} MB"
    )
