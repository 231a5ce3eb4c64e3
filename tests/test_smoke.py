import llmnotes
from llmnotes.utils import atomic_write_text, pick_device


def test_version():
    assert llmnotes.__version__


def test_pick_device_cpu():
    assert pick_device("cpu").type == "cpu"


def test_atomic_write(tmp_path):
    p = tmp_path / "a" / "b.txt"
    atomic_write_text(p, "héllo")
    assert p.read_text(encoding="utf-8") == "héllo"
    assert [x.name for x in p.parent.iterdir()] == ["b.txt"]
