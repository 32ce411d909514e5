"""Settings dataclasses: types, bounds and cross-field rules checked once; TOML loading names key and file."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from engine.core.config import Settings, from_mapping, load_toml, setting


@dataclass(frozen=True)
class Inner(Settings):
    k: int = setting(3, ge=1)


@dataclass(frozen=True)
class Example(Settings):
    ppm: float = setting(10.0, gt=0)
    share: float | None = setting(None, ge=0, le=1)
    mode: Literal["a", "b"] = "a"
    names: tuple[str, ...] = ()
    flag: bool = False
    inner: Inner = field(default_factory=Inner)

    def check(self) -> Iterable[str]:
        if self.flag and not self.names:
            yield "flag needs names"


def test_defaults_and_valid_values() -> None:
    assert Example().ppm == 10.0
    e = Example(ppm=5, share=0.5, mode="b", names=("x",), flag=True)
    assert e.ppm == 5 and e.replace(ppm=2.0).ppm == 2.0


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"ppm": 0.0}, "ppm must be > 0"),
    ({"share": 1.5}, "share must be <= 1"),
    ({"mode": "c"}, "mode must be one of 'a', 'b'"),
    ({"ppm": "10"}, "ppm must be float"),
    ({"ppm": True}, "ppm must be float"),
    ({"names": ("x", 1)}, "names must be"),
    ({"flag": True}, "flag needs names"),
])
def test_bad_values_name_class_field_and_value(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match="Example: ") as info:
        Example(**kwargs)  # type: ignore[arg-type]
    assert message in str(info.value)


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ValueError) as info:
        Example(ppm=-1.0, share=2.0)
    assert "ppm must be > 0" in str(info.value) and "share must be <= 1" in str(info.value)


def test_toml_with_nested_section_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "job.toml"
    path.write_text('ppm = 5\nnames = ["x", "y"]\n[inner]\nk = 7\n')
    e = load_toml(Example, path)
    assert (e.ppm, e.names, e.inner.k) == (5, ("x", "y"), 7)
    assert load_toml(Example, path, overrides={"ppm": 2.5}).ppm == 2.5


def test_unknown_key_names_the_key_and_the_file(tmp_path: Path) -> None:
    path = tmp_path / "job.toml"
    path.write_text("ppm = 5\nppmm = 3\n")
    with pytest.raises(ValueError) as info:
        load_toml(Example, path)
    assert str(path) in str(info.value) and "ppmm" in str(info.value)
    path.write_text("[inner]\nkk = 1\n")
    with pytest.raises(ValueError) as info:
        load_toml(Example, path)
    assert str(path) in str(info.value) and "[inner]" in str(info.value) and "kk" in str(info.value)


def test_bad_value_and_bad_toml_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "job.toml"
    path.write_text('mode = "z"\n')
    with pytest.raises(ValueError, match=f"{path}: Example: mode must be one of"):
        load_toml(Example, path)
    path.write_text("ppm = = 1\n")
    with pytest.raises(ValueError, match=f"{path}: not valid TOML"):
        load_toml(Example, path)


def test_from_mapping_refuses_non_dataclasses() -> None:
    with pytest.raises(TypeError):
        from_mapping(int, {})
