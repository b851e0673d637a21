"""Damaged and unusual TIFF inputs: a one-line error naming the file, before the model loads
(or read on purpose, as documented). Issue 13, "nothing lost, nothing mixed". No TensorFlow.

Every damaged file is made here, from a file tifffile wrote: cut short, its compressed
data corrupted, pages of two shapes appended, a palette image, unusual pixel types.
"""
from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

from stardist_v4d.host_api.base import HostError
from stardist_v4d.host_api.tiff import TiffHost
from stardist_v4d.host_api.tiff_reader import BadTiffError, TiffStack, file_size_text

PLANES, SHAPE = 5, (64, 48)


def stack(dtype="uint16", planes=PLANES, shape=SHAPE, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(1, 60000, size=(planes, *shape)).astype(dtype)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def cut(path: Path, fraction: float, name: str) -> Path:
    """A copy of ``path`` holding only its first ``fraction`` of bytes (an interrupted copy)."""
    data = path.read_bytes()
    out = path.with_name(name)
    out.write_bytes(data[: int(len(data) * fraction)])
    return out


def write(path: Path, array: np.ndarray, kind: str, compression=None) -> Path:
    """``kind``: imagej, ome, shaped (tifffile's JSON description) or plain (no description)."""
    options = {"imagej": dict(imagej=True, metadata={"axes": "ZYX"}),
               "ome": dict(ome=True, metadata={"axes": "ZYX"}),
               "shaped": dict(metadata={"axes": "ZYX"}),
               "plain": dict(metadata=None)}[kind]
    if kind == "plain":
        with tifffile.TiffWriter(path) as tif:
            for plane in array:
                tif.write(plane, photometric="minisblack", compression=compression, metadata=None)
        return path
    tifffile.imwrite(path, array, photometric="minisblack", compression=compression, **options)
    return path


def colormap() -> np.ndarray:
    ramp = np.arange(256, dtype=np.uint16) * 257
    return np.stack([ramp, ramp[::-1], np.full(256, 30000, np.uint16)])


@pytest.fixture(name="decodes")
def decodes_fixture(monkeypatch) -> list[int]:
    """Counts pages decoded (``asarray`` of a page or frame) from here on."""
    calls: list[int] = []
    for cls in (tifffile.TiffPage, tifffile.TiffFrame):
        original = cls.asarray

        def counted(self, *args, _original=original, **kwargs):
            calls.append(1)
            return _original(self, *args, **kwargs)
        monkeypatch.setattr(cls, "asarray", counted)
    return calls


def refused(path: Path, decodes: list[int], kind=BadTiffError) -> str:
    """Open ``path``; it must be refused with one line naming it, no page decoded, file unchanged."""
    before = sha256(path)
    with pytest.raises(kind) as error:
        TiffStack(path)
    message = str(error.value)
    assert "\n" not in message and str(path) in message
    assert not decodes, f"{len(decodes)} page(s) decoded while opening"
    assert sha256(path) == before
    return message


# ------------------------------------------------------------------ cut short
@pytest.mark.parametrize("kind, compression, fraction, expected", [
    ("imagej", None, 0.5, "declares 5 planes, 2 readable"),
    ("imagej", "zlib", 0.6, "declares 5 planes, 2 readable"),
    ("shaped", None, 0.6, "declares 5 planes, 3 readable"),
    ("shaped", "zlib", 0.3, "declares 5 planes, 1 readable"),
    # tifffile writes the OME-XML last: a cut OME file has lost its declaration
    ("ome", None, 0.5, "is damaged: its list of pages breaks off after 1 page (invalid page offset"),
    ("ome", "zlib", 0.6, "is damaged: its list of pages breaks off after 4 pages, 1 of them "
                         "incomplete; 3 planes readable"),
    ("plain", None, 0.5, "is damaged: its list of pages breaks off after 3 pages, 1 of them "
                         "incomplete; 2 planes readable"),
    ("plain", "zlib", 0.9, "is damaged: 1 of its 5 pages is incomplete; 4 planes readable"),
])
def test_a_cut_file_is_refused_with_declared_and_readable_planes(tmp_path, decodes, kind,
                                                                 compression, fraction, expected):
    whole = write(tmp_path / "whole.tif", stack(), kind, compression)
    bad = cut(whole, fraction, "in.tif")
    message = refused(bad, decodes)
    assert message.startswith(f"{bad} ")
    assert expected in message
    assert f"the file ends at {file_size_text(bad.stat().st_size)}; it may be cut short" in message
    assert message.endswith("copy or export the file again")


def test_the_same_files_whole_are_read_and_open_without_decoding(tmp_path, decodes):
    array = stack()
    for kind in ("imagej", "shaped", "ome", "plain"):
        for compression in (None, "zlib"):
            path = write(tmp_path / f"{kind}-{compression}.tif", array, kind, compression)
            decodes.clear()
            with TiffStack(path) as tif:
                assert not decodes
                assert tif.dataset_info().size_z == PLANES
                for z in range(PLANES):
                    np.testing.assert_array_equal(tif.read_plane(0, 0, z), array[z])


def test_a_cut_file_does_not_print_tifffiles_complaints(tmp_path, capfd):
    bad = cut(write(tmp_path / "whole.tif", stack(), "imagej"), 0.5, "in.tif")
    with pytest.raises(BadTiffError):
        TiffStack(bad)
    captured = capfd.readouterr()
    assert captured.err == "" and captured.out == ""


def test_planes_declared_but_absent_are_refused(tmp_path, decodes):
    """An OME-XML of 5 planes over 2 pages (a companion file lost, pages dropped)."""
    tifffile.imwrite(tmp_path / "whole.ome.tif", stack(), ome=True, metadata={"axes": "ZYX"})
    with tifffile.TiffFile(tmp_path / "whole.ome.tif") as tif:
        xml = tif.ome_metadata
    bad = tmp_path / "in.ome.tif"
    tifffile.imwrite(bad, stack(planes=2), description=xml, metadata=None, photometric="minisblack")
    message = refused(bad, decodes)
    assert "declares 5 planes, 2 readable (no page holds planes 2-4)" in message


def test_an_imagej_declaration_beyond_the_pages_is_refused(tmp_path, decodes):
    """ImageJ metadata of 5 images over 3 complete pages whose page list ends properly."""
    bad = tmp_path / "in.tif"
    description = "ImageJ=1.54f\nimages=5\nslices=5\nloop=false\n"
    with tifffile.TiffWriter(bad) as tif:
        for i, plane in enumerate(stack(planes=3)):
            tif.write(plane, photometric="minisblack", metadata=None,
                      description=description if i == 0 else None)
    message = refused(bad, decodes)
    assert "declares 5 planes, 3 readable" in message


def point_tag_past_the_end(path: Path, code: int, name: str) -> Path:
    """A copy of ``path`` whose tag ``code`` (on page 0) has its value offset past the file's end."""
    with tifffile.TiffFile(path) as tif:
        entry = tif.pages[0].tags[code].offset            # classic TIFF: value offset at +8
        assert not tif.is_bigtiff and tif.byteorder == "<"
    data = bytearray(path.read_bytes())
    data[entry + 8: entry + 12] = (2 ** 31).to_bytes(4, "little")
    out = path.with_name(name)
    out.write_bytes(bytes(data))
    return out


def test_an_unreadable_essential_tag_is_damage(tmp_path, decodes):
    whole = write(tmp_path / "whole.tif", stack(), "imagej")
    bad = point_tag_past_the_end(whole, 270, "in.tif")     # the ImageJ description
    message = refused(bad, decodes)
    assert "is damaged: its ImageDescription tag cannot be read (invalid value offset" in message


def test_an_unreadable_private_tag_is_not_damage(tmp_path, caplog):
    array = stack()
    whole = tmp_path / "whole.tif"
    tifffile.imwrite(whole, array, photometric="minisblack", metadata=None,
                     extratags=[(65000, "s", 0, "vendor notes " * 10, True)])
    odd = point_tag_past_the_end(whole, 65000, "in.tif")
    with TiffStack(odd) as tif:
        np.testing.assert_array_equal(tif.read_plane(0, 0, 0), array[0])
    assert "65000" in caplog.text          # tifffile's own complaint is passed on


def test_a_file_that_is_not_a_tiff_or_empty_is_refused(tmp_path, decodes):
    text = tmp_path / "notes.tif"
    text.write_text("not an image")
    assert "is not a readable TIFF file" in refused(text, decodes)
    empty = tmp_path / "empty.tif"
    empty.write_bytes(b"")
    assert "is empty (0 bytes)" in refused(empty, decodes)


# ----------------------------------------------------- undecodable when read
def corrupt_page(path: Path, page: int, name: str) -> Path:
    """A copy of ``path`` with the middle of page ``page``'s compressed data overwritten."""
    with tifffile.TiffFile(path) as tif:
        offset, count = tif.pages[page].dataoffsets[0], tif.pages[page].databytecounts[0]
    data = bytearray(path.read_bytes())
    data[offset + count // 2: offset + count // 2 + 64] = b"\xff" * 64
    out = path.with_name(name)
    out.write_bytes(bytes(data))
    return out


def test_a_corrupt_compressed_page_is_named_when_read(tmp_path, decodes):
    array = stack()
    bad = corrupt_page(write(tmp_path / "whole.tif", array, "imagej", "zlib"), 3, "in.tif")
    before = sha256(bad)
    with TiffStack(bad) as tif:                 # opening reads IFDs only: the damage is unseen
        assert not decodes
        for z in (0, 1, 2, 4):
            np.testing.assert_array_equal(tif.read_plane(0, 0, z), array[z])
        assert decodes                          # the counter counts: reading decodes pages
        with pytest.raises(BadTiffError) as error:
            tif.read_plane(0, 0, 3)
    message = str(error.value)
    assert isinstance(error.value, HostError)   # the launcher prints it as one line
    decoder = r"(zlib\.error|imagecodecs\.DeflateError)"       # tifffile's own zlib, or imagecodecs' where
    assert re.match(re.escape(f"{bad}: plane t=0 z=3 cannot be decoded (") + decoder + ": ", message)  # installed
    assert "\n" not in message and "the file is damaged there" in message
    assert sha256(bad) == before


def test_a_corrupt_page_of_a_hyperstack_names_time_point_z_and_channel(tmp_path):
    array = np.random.default_rng(1).integers(0, 4000, (2, 3, 2, 32, 24)).astype("uint16")
    whole = tmp_path / "whole.tif"
    tifffile.imwrite(whole, array, imagej=True, compression="zlib", metadata={"axes": "TZCYX"})
    bad = corrupt_page(whole, (1 * 3 + 2) * 2 + 1, "in.tif")     # ImageJ order: t, z, c
    with TiffHost(bad, tmp_path / "out.ome.tif", show_progress=False) as host:
        np.testing.assert_array_equal(host.read_plane(0, 1, 2), array[1, 2, 0])
        with pytest.raises(HostError, match=r"plane t=1 z=2 channel 1 cannot be decoded"):
            host.read_plane(1, 1, 2)


# ------------------------------------------------------------ pages that differ
@pytest.mark.parametrize("metadata", [{}, None], ids=["shaped", "plain"])
def test_pages_of_another_shape_are_refused_naming_the_first(tmp_path, decodes, metadata):
    bad = tmp_path / "in.tif"
    with tifffile.TiffWriter(bad) as tif:
        tif.write(stack(planes=3), photometric="minisblack", metadata=metadata)
        tif.write(stack(planes=2, shape=(32, 40)), photometric="minisblack", metadata=metadata)
    message = refused(bad, decodes)
    assert f"{bad}: page 3 is 32 x 40 uint16 but page 0 is 64 x 48 uint16" in message
    assert "save the pages of each size as their own TIFF" in message


def test_pages_of_another_pixel_type_are_refused(tmp_path, decodes):
    bad = tmp_path / "in.tif"
    with tifffile.TiffWriter(bad) as tif:
        tif.write(stack(planes=2), photometric="minisblack", metadata=None)
        tif.write(stack("float32", planes=1), photometric="minisblack", metadata=None)
    assert "page 2 is 64 x 48 float32 but page 0 is 64 x 48 uint16" in refused(bad, decodes)


def test_a_second_series_of_the_same_shape_is_refused(tmp_path, decodes):
    bad = tmp_path / "in.tif"
    with tifffile.TiffWriter(bad) as tif:
        tif.write(stack(planes=2), photometric="minisblack", metadata={"axes": "ZYX"})
        tif.write(stack(planes=3), photometric="minisblack", metadata={"axes": "ZYX"})
    message = refused(bad, decodes)
    assert "holds 2 image series (2 plane(s) in the first, 5 in all, the second from page 2)" in message


def test_reduced_resolution_levels_are_not_a_second_series(tmp_path):
    array = stack()
    path = tmp_path / "pyramid.ome.tif"
    with tifffile.TiffWriter(path) as tif:
        tif.write(array, subifds=1, photometric="minisblack", metadata={"axes": "ZYX"})
        tif.write(array[:, ::2, ::2], subfiletype=1, photometric="minisblack")
    with TiffStack(path) as tif:
        info = tif.dataset_info()
        assert (info.size_z, info.size_y, info.size_x) == (PLANES, *SHAPE)
        np.testing.assert_array_equal(tif.read_plane(0, 0, 4), array[4])


# --------------------------------------------------------------- end to end
def bad_inputs(folder: Path) -> dict[str, Path]:
    """One damaged or unusual file per family, each alone in its own folder."""
    made: dict[str, Path] = {}

    def place(name: str) -> Path:
        (folder / name).mkdir()
        return folder / name / "in.tif"

    whole = write(folder / "whole.tif", stack(), "imagej")
    made["cut"] = cut(whole, 0.5, "in.tif").replace(place("cut"))
    whole_z = write(folder / "whole_z.tif", stack(), "imagej", "zlib")
    made["cut-zlib"] = cut(whole_z, 0.6, "in.tif").replace(place("cut-zlib"))
    with tifffile.TiffWriter(place("two-shapes")) as tif:
        tif.write(stack(planes=2), photometric="minisblack", metadata=None)
        tif.write(stack(planes=1, shape=(32, 40)), photometric="minisblack", metadata=None)
    made["two-shapes"] = folder / "two-shapes" / "in.tif"
    made["palette"] = place("palette")
    tifffile.imwrite(made["palette"], stack("uint8"), photometric="palette", colormap=colormap())
    for dtype in ("int64", "uint64", "complex64"):
        made[dtype] = place(dtype)
        tifffile.imwrite(made[dtype], stack(dtype), photometric="minisblack")
    return made


EXPECTED = {"cut": "declares 5 planes, 2 readable", "cut-zlib": "declares 5 planes, 2 readable",
            "two-shapes": "page 2 is 32 x 40 uint16", "palette": "palette (indexed-colour)",
            "int64": "int64 pixels", "uint64": "uint64 pixels", "complex64": "complex pixels"}


def run_cli(bad: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "STARDIST_V4D_DEBUG"}
    return subprocess.run([sys.executable, "-m", "stardist_v4d", "run", "--input", str(bad),
                           "--output", str(bad.parent / "out.ome.tif")],
                          capture_output=True, text=True, timeout=120, env=env, cwd=bad.parent)


@pytest.fixture(scope="module", name="cli_runs")
def cli_runs_fixture(tmp_path_factory) -> dict[str, tuple[Path, str, subprocess.CompletedProcess]]:
    made = bad_inputs(tmp_path_factory.mktemp("bad"))
    return {family: (path, sha256(path), run_cli(path)) for family, path in made.items()}


@pytest.mark.parametrize("family", list(EXPECTED))
def test_cli_stops_with_one_line_before_the_model_loads(cli_runs, family):
    bad, before, result = cli_runs[family]
    lines = result.stderr.splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert EXPECTED[family] in lines[0]
    assert "Loading network weights" not in result.stdout + result.stderr   # no model loaded
    assert sorted(p.name for p in bad.parent.iterdir()) == ["in.tif"]   # no output, no .partial
    assert sha256(bad) == before


@pytest.mark.parametrize("family", [f for f in EXPECTED if f not in ("int64", "uint64")])
def test_cli_errors_name_the_file(cli_runs, family):
    bad, _, result = cli_runs[family]
    assert str(bad) in result.stderr


@pytest.mark.parametrize("family", ["int64", "uint64"])
def test_cli_64_bit_error_names_the_file(cli_runs, family):
    bad, _, result = cli_runs[family]
    assert str(bad) in result.stderr


def test_cli_folder_input_is_one_line(tmp_path):
    folder = tmp_path / "stack_folder"
    folder.mkdir()
    result = run_cli(folder)
    lines = result.stderr.splitlines()
    assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: ")
    assert str(folder) in lines[0] and "Traceback" not in result.stderr
    assert list(folder.iterdir()) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["stack_folder"]


def test_cli_folder_input_says_it_is_a_folder(tmp_path):
    folder = tmp_path / "stack_folder"
    folder.mkdir()
    assert "is a folder" in run_cli(folder).stderr
